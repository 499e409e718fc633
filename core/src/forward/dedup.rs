//! Receiver-side deduplication of QoS ≥ 1 messages.
//!
//! Links retry until acknowledged, so a message whose ack was lost arrives
//! twice. Each forwarded message carries its origin, the origin's
//! incarnation and a sequence number counting the messages from that origin
//! incarnation to this destination (dense, from 1). The [`DeliveryLog`]
//! remembers, per origin, which sequence numbers were delivered, in a
//! [`ReplayWindow`](crate::auth::replay::ReplayWindow): mostly arrivals
//! are in order, and a failover reorders only a few, so a window of
//! [`WINDOW`] numbers below the highest one is enough as long as fewer than
//! [`WINDOW`] messages from one origin to this destination can be overtaken
//! by later ones.
//!
//! A number more than [`WINDOW`] below the highest delivered one cannot be
//! told apart from a duplicate: it is not new, and [`DeliveryLog::arrive`]
//! calls it [`Arrival::TooLate`] rather than a duplicate, since it may be a
//! message this node never had.

use crate::auth::replay::{Rejection, ReplayGuard, WINDOW};
use crate::id::{Incarnation, NodeId};

/// What a copy that arrives is, by [`DeliveryLog::arrive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Never delivered here: deliver it.
    New,
    /// Delivered here before (a retry whose acknowledgement was lost).
    Duplicate,
    /// More than [`WINDOW`] below the newest number delivered from its
    /// origin, or from an older incarnation of the origin than one
    /// delivered: it may be a duplicate or a message never delivered, and
    /// the log cannot tell which. Not delivered, and to be reported.
    TooLate,
}

/// Which messages from each origin were already delivered here.
///
/// At most `max_origins` origins are remembered; one more evicts the least
/// recently used. Recency is a logical tick, not time, and both maps are
/// ordered, so what gets evicted depends only on the sequence of calls.
/// Evicting an origin forgets what it delivered: a late duplicate from it
/// would then be delivered again, so size `max_origins` above the number of
/// members.
///
/// ```
/// use mqtt_cluster_core::forward::dedup::DeliveryLog;
/// use mqtt_cluster_core::{Incarnation, NodeId};
///
/// let mut log = DeliveryLog::new(64);
/// let origin = NodeId::new("w1").unwrap();
/// assert!(log.first_time(&origin, Incarnation(1), 1));
/// assert!(!log.first_time(&origin, Incarnation(1), 1), "a retry");
/// assert!(log.first_time(&origin, Incarnation(1), 3));
/// assert!(log.first_time(&origin, Incarnation(1), 2), "late, but new");
/// assert!(!log.is_new(&origin, Incarnation(0), 9), "older incarnation");
/// ```
#[derive(Clone, Debug)]
pub struct DeliveryLog {
    /// The same bookkeeping as the request replay guard: a window of seen
    /// numbers per sender, least recently used evicted first.
    seen: ReplayGuard,
}

impl DeliveryLog {
    /// A log remembering at most `max_origins` origins (at least one:
    /// remembering none would deliver every duplicate).
    pub fn new(max_origins: usize) -> Self {
        DeliveryLog {
            seen: ReplayGuard::new(max_origins),
        }
    }

    /// Whether this message is new; `true` means deliver it, and it is now
    /// recorded (and its origin the most recently used). A lower incarnation
    /// than the one known for the origin is never new; a higher one starts
    /// afresh, forgetting the old incarnation's numbers. Sequence number 0
    /// is never new: numbering starts at 1.
    pub fn first_time(&mut self, origin: &NodeId, incarnation: Incarnation, seq: u64) -> bool {
        self.seen.record(origin, incarnation, seq).is_ok()
    }

    /// What a copy that arrives now is: new (and now recorded, as
    /// [`first_time`](Self::first_time) does), a duplicate of one
    /// delivered, or too late to tell.
    pub fn arrive(&mut self, origin: &NodeId, incarnation: Incarnation, seq: u64) -> Arrival {
        match self.seen.record(origin, incarnation, seq) {
            Ok(()) => Arrival::New,
            Err(Rejection::StaleIncarnation { .. }) => Arrival::TooLate,
            Err(_) if self.seen.is_beyond_window(origin, incarnation, seq) => Arrival::TooLate,
            Err(_) => Arrival::Duplicate,
        }
    }

    /// Whether [`first_time`](Self::first_time) would report this message
    /// as new. Records nothing.
    pub fn is_new(&self, origin: &NodeId, incarnation: Incarnation, seq: u64) -> bool {
        self.seen.check(origin, incarnation, seq).is_ok()
    }

    /// How many origins are remembered.
    pub fn origins(&self) -> usize {
        self.seen.len()
    }

    /// The incarnation remembered for `origin`, if it is remembered.
    pub fn incarnation(&self, origin: &NodeId) -> Option<Incarnation> {
        self.seen.incarnation(origin)
    }

    /// How far below the highest delivered sequence number of an origin a
    /// late message can still be recognised as new.
    pub const fn window() -> u64 {
        WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    #[test]
    fn dedup_in_order_arrivals_are_new_once() {
        let mut log = DeliveryLog::new(4);
        let a = node("a");
        for seq in 1..=3_000 {
            assert!(log.is_new(&a, Incarnation(1), seq));
            assert!(log.first_time(&a, Incarnation(1), seq));
            assert!(!log.first_time(&a, Incarnation(1), seq));
        }
        assert_eq!(log.origins(), 1);
    }

    #[test]
    fn dedup_is_new_records_nothing() {
        let mut log = DeliveryLog::new(4);
        let a = node("a");
        assert!(log.is_new(&a, Incarnation(1), 1));
        assert!(log.is_new(&a, Incarnation(1), 1));
        assert_eq!(log.origins(), 0);
        assert!(log.first_time(&a, Incarnation(1), 1));
        assert!(!log.is_new(&a, Incarnation(1), 1));
    }

    #[test]
    fn dedup_seq_zero_is_never_new() {
        let mut log = DeliveryLog::new(4);
        assert!(!log.first_time(&node("a"), Incarnation(1), 0));
        assert_eq!(log.origins(), 0);
    }

    #[test]
    fn dedup_lower_incarnation_is_never_new_and_higher_starts_afresh() {
        let mut log = DeliveryLog::new(4);
        let a = node("a");
        assert!(log.first_time(&a, Incarnation(5), 1));
        assert!(log.first_time(&a, Incarnation(5), 2));
        assert!(!log.first_time(&a, Incarnation(4), 100));
        assert!(log.first_time(&a, Incarnation(6), 1));
        assert_eq!(log.incarnation(&a), Some(Incarnation(6)));
        assert!(!log.first_time(&a, Incarnation(6), 1));
        assert!(log.first_time(&a, Incarnation(6), 2));
        assert!(!log.first_time(&a, Incarnation(5), 3));
    }

    #[test]
    fn dedup_origins_are_independent() {
        let mut log = DeliveryLog::new(4);
        assert!(log.first_time(&node("a"), Incarnation(1), 1));
        assert!(log.first_time(&node("b"), Incarnation(1), 1));
        assert_eq!(log.origins(), 2);
    }

    #[test]
    fn dedup_too_old_to_tell_is_not_new() {
        let mut log = DeliveryLog::new(4);
        let a = node("a");
        assert!(log.first_time(&a, Incarnation(1), DeliveryLog::window() + 10));
        assert!(log.first_time(&a, Incarnation(1), 11));
        assert!(!log.is_new(&a, Incarnation(1), 10));
    }

    #[test]
    fn dedup_tells_a_duplicate_from_a_copy_too_late_to_tell() {
        let mut log = DeliveryLog::new(4);
        let a = node("a");
        assert_eq!(log.arrive(&a, Incarnation(2), 5), Arrival::New);
        assert_eq!(log.arrive(&a, Incarnation(2), 5), Arrival::Duplicate);
        assert_eq!(log.arrive(&a, Incarnation(2), 0), Arrival::Duplicate);
        let far = DeliveryLog::window() + 10;
        assert_eq!(log.arrive(&a, Incarnation(2), far), Arrival::New);
        assert_eq!(log.arrive(&a, Incarnation(2), 9), Arrival::TooLate);
        assert_eq!(log.arrive(&a, Incarnation(2), 5), Arrival::TooLate);
        assert_eq!(log.arrive(&a, Incarnation(1), far + 1), Arrival::TooLate);
        assert_eq!(log.arrive(&a, Incarnation(2), far + 1), Arrival::New);
    }

    #[test]
    fn dedup_evicts_the_least_recently_used_origin() {
        let mut log = DeliveryLog::new(2);
        let (a, b, c) = (node("a"), node("b"), node("c"));
        assert!(log.first_time(&a, Incarnation(1), 1));
        assert!(log.first_time(&b, Incarnation(1), 1));
        assert!(log.first_time(&a, Incarnation(1), 2));
        // A duplicate is not a use: b stays least recently used.
        assert!(!log.first_time(&b, Incarnation(1), 1));
        assert!(log.first_time(&c, Incarnation(1), 1));
        assert_eq!(log.origins(), 2);
        assert_eq!(log.incarnation(&b), None);
        assert!(log.incarnation(&a).is_some());
        assert!(!log.is_new(&a, Incarnation(1), 2));
        assert_eq!(log.origins(), 2);
    }

    #[test]
    fn dedup_zero_capacity_still_remembers_one() {
        let mut log = DeliveryLog::new(0);
        let a = node("a");
        assert!(log.first_time(&a, Incarnation(1), 1));
        assert!(!log.first_time(&a, Incarnation(1), 1));
    }

    /// Arrivals of seqs `1..=n` from up to three origins, interleaved, each
    /// seq once or more. Each copy is sorted by `4 * seq + offset` with
    /// `offset < spread`, so it arrives at most `spread / 4` (< 75) seqs away
    /// from its place: reordered, but well within the window.
    fn arb_arrivals() -> impl Strategy<Value = Vec<(usize, u64)>> {
        (1..4usize, 1..800u64, 1..300u64).prop_flat_map(|(origins, n, spread)| {
            let all: Vec<(usize, u64)> = (0..origins)
                .flat_map(|o| (1..=n).map(move |s| (o, s)))
                .collect();
            let len = all.len();
            (
                Just(all),
                prop::collection::vec(0..spread, len),
                prop::collection::vec(prop::collection::vec(0..spread, 0..3), len),
            )
                .prop_map(|(all, offsets, copies)| {
                    let mut keyed: Vec<(u64, usize, (usize, u64))> = Vec::new();
                    for (i, ((arrival, offset), extra)) in
                        all.into_iter().zip(offsets).zip(copies).enumerate()
                    {
                        let base = arrival.1 * 4;
                        keyed.push((base + offset, i, arrival));
                        for e in extra {
                            keyed.push((base + offset + e, i, arrival));
                        }
                    }
                    keyed.sort();
                    keyed.into_iter().map(|(_, _, arrival)| arrival).collect()
                })
        })
    }

    proptest! {
        #[test]
        fn dedup_reports_each_seq_new_exactly_once(arrivals in arb_arrivals()) {
            let names = [node("a"), node("b"), node("c")];
            let mut log = DeliveryLog::new(3);
            let mut delivered: BTreeMap<(usize, u64), u32> = BTreeMap::new();
            for &(origin, seq) in &arrivals {
                let name = &names[origin];
                let expected = log.is_new(name, Incarnation(7), seq);
                let new = log.first_time(name, Incarnation(7), seq);
                prop_assert_eq!(new, expected);
                if new {
                    *delivered.entry((origin, seq)).or_insert(0) += 1;
                }
            }
            let distinct: BTreeSet<(usize, u64)> = arrivals.iter().copied().collect();
            prop_assert_eq!(delivered.len(), distinct.len(), "a seq was never reported new");
            prop_assert!(delivered.values().all(|&n| n == 1), "a seq was reported new twice");
        }
    }
}
