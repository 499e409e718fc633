//! Which message a publisher's PUBACK confirms.
//!
//! The MQTT client reports only packet ids: `Outgoing::Publish(pkid)` when a
//! PUBLISH goes out (new, or sent again after a reconnect) and
//! `Incoming::PubAck(pkid)` when its acknowledgement comes. Numbers are
//! handed to the client in order, and the client gives each new PUBLISH the
//! next free packet id, so the numbers queued here pair with new packet
//! ids in order, except in one case that must be followed exactly: a
//! *collision*. When the next packet id is still held by an unacknowledged
//! message (after a reconnect, with a full window), the client parks the
//! new PUBLISH (`Outgoing::AwaitAck(pkid)`), and once the old message's
//! PUBACK comes it sends the parked one first and reports the PUBACK after
//! (`Outgoing::Publish(pkid)`, then `Incoming::PubAck(pkid)`). Read as a
//! resend, that order would leave the parked number queued and shift every
//! later PUBACK onto the wrong number: confirmed messages would then look
//! lost and lost ones confirmed. So each packet id keeps the messages
//! sent under it, oldest first, and an acknowledgement confirms the oldest.
//!
//! The client holds one parked message only. After a reconnect it sends
//! everything its request channel held past its in-flight window, so new
//! messages can collide again while one is parked: the second replaces the
//! first, which is never sent (`rumqttc` 0.24). Such a message never
//! reached a broker; it is recorded as dropped by the client, so that the
//! report can say so rather than lose track of it.

use std::collections::{BTreeMap, VecDeque};

/// Numbers handed to the client and not yet sent, and per packet id the
/// messages sent under it and not yet acknowledged.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Numbers in the order they were handed to the client.
    queued: VecDeque<u64>,
    /// The message the client parked on a packet id still in use.
    parked: Option<(u16, u64)>,
    /// Per packet id: (number, when it last went out), oldest first.
    sent: BTreeMap<u16, VecDeque<(u64, u64)>>,
    /// Parked messages the client replaced by a later one.
    dropped: Vec<u64>,
}

impl InFlight {
    /// Message `seq` was handed to the client.
    pub fn queued(&mut self, seq: u64) {
        self.queued.push_back(seq);
    }

    /// The client parked the next new message until `pkid` is acknowledged
    /// (`Outgoing::AwaitAck`).
    pub fn parked(&mut self, pkid: u16) {
        if let Some(seq) = self.queued.pop_front() {
            if let Some((_, replaced)) = self.parked.replace((pkid, seq)) {
                self.dropped.push(replaced);
            }
        }
    }

    /// The messages the client dropped: parked, then replaced by a later
    /// collision before they could go out.
    pub fn dropped(&self) -> &[u64] {
        &self.dropped
    }

    /// A PUBLISH went out under `pkid` at `now_unix_ms`
    /// (`Outgoing::Publish`). `collision_pending` says whether the client
    /// still holds a parked message: while it does, a PUBLISH on its packet
    /// id is the old message sent again.
    pub fn sent(&mut self, pkid: u16, now_unix_ms: u64, collision_pending: bool) {
        if let Some((parked_pkid, seq)) = self.parked {
            if parked_pkid == pkid && !collision_pending {
                self.parked = None;
                self.sent
                    .entry(pkid)
                    .or_default()
                    .push_back((seq, now_unix_ms));
                return;
            }
        }
        match self.sent.get_mut(&pkid).and_then(|q| q.back_mut()) {
            // Sent again after a reconnect: the message the client holds
            // under this id is the newest sent under it.
            Some(newest) => newest.1 = now_unix_ms,
            None => {
                if let Some(seq) = self.queued.pop_front() {
                    self.sent
                        .entry(pkid)
                        .or_default()
                        .push_back((seq, now_unix_ms));
                }
            }
        }
    }

    /// The PUBACK of `pkid` came: the number it confirms and when that
    /// message last went out.
    pub fn acked(&mut self, pkid: u16) -> Option<(u64, u64)> {
        let queue = self.sent.get_mut(&pkid)?;
        let oldest = queue.pop_front();
        if queue.is_empty() {
            self.sent.remove(&pkid);
        }
        oldest
    }

    /// The messages not acknowledged, by number, each with when it last
    /// went out (`None`: the client never sent it).
    pub fn unacknowledged(&self) -> BTreeMap<u64, Option<u64>> {
        let sent = self
            .sent
            .values()
            .flatten()
            .map(|&(seq, out)| (seq, Some(out)));
        let waiting = self
            .queued
            .iter()
            .chain(self.parked.as_ref().map(|(_, seq)| seq))
            .map(|&seq| (seq, None));
        sent.chain(waiting).collect()
    }

    /// Messages handed to the client and not acknowledged.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.parked.is_none() && self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_messages_pair_with_new_packet_ids_in_order() {
        let mut f = InFlight::default();
        (0..3).for_each(|seq| f.queued(seq));
        f.sent(1, 10, false);
        f.sent(2, 11, false);
        f.sent(1, 15, false); // sent again after a reconnect
        f.sent(3, 16, false);
        assert_eq!(f.acked(2), Some((1, 11)));
        assert_eq!(f.acked(1), Some((0, 15)));
        assert_eq!(f.acked(3), Some((2, 16)));
        assert_eq!(f.acked(3), None);
        assert!(f.is_empty());
    }

    #[test]
    fn a_parked_message_is_confirmed_by_its_own_puback_not_the_one_it_waited_for() {
        let mut f = InFlight::default();
        f.queued(0);
        f.sent(7, 10, false);
        f.queued(1);
        f.parked(7);
        // A reconnect sends message 0 again while message 1 stays parked.
        f.sent(7, 20, true);
        // Message 0's PUBACK: the client sends the parked message first and
        // reports the PUBACK after.
        f.sent(7, 30, false);
        assert_eq!(f.acked(7), Some((0, 20)));
        f.queued(2);
        f.sent(8, 31, false);
        assert_eq!(f.acked(7), Some((1, 30)));
        assert_eq!(f.acked(8), Some((2, 31)));
        assert!(f.is_empty());
    }

    #[test]
    fn what_is_unacknowledged_says_when_it_last_went_out() {
        let mut f = InFlight::default();
        (0..4).for_each(|seq| f.queued(seq));
        f.sent(1, 10, false);
        f.sent(2, 11, false);
        f.sent(1, 15, false);
        f.parked(1);
        assert_eq!(f.acked(2), Some((1, 11)));
        let left: Vec<_> = f.unacknowledged().into_iter().collect();
        assert_eq!(left, vec![(0, Some(15)), (2, None), (3, None)]);
    }

    #[test]
    fn a_parked_message_replaced_by_a_second_collision_is_dropped_by_the_client() {
        let mut f = InFlight::default();
        (0..4).for_each(|seq| f.queued(seq));
        f.sent(1, 10, false);
        f.sent(2, 11, false);
        // After a reconnect: message 2 collides on id 1, then message 3 on
        // id 2 replaces it in the client.
        f.parked(1);
        f.parked(2);
        assert_eq!(f.dropped(), &[2]);
        assert_eq!(f.acked(2), Some((1, 11)));
        // Message 3 goes out once id 2 is free, and is confirmed by its own
        // acknowledgement; message 0 is still in flight.
        f.sent(2, 20, false);
        assert_eq!(f.acked(2), Some((3, 20)));
        assert_eq!(f.acked(1), Some((0, 10)));
        assert!(f.is_empty());
    }
}
