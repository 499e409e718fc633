//! End-to-end confirmation, kept by the origin.
//!
//! Per-hop acknowledgements only say that the next node took a message; a
//! core that dies after acknowledging takes what it held with it. So the
//! origin keeps every QoS 1 and 2 message it published until each
//! destination has confirmed taking it for local delivery (a
//! [`Confirmation`] travels back through the cores that relayed it), and
//! sends it again through whatever path exists then: after its own
//! failover at once, otherwise every `resend_after`. Destinations
//! deduplicate by (origin, incarnation, sequence number), so a copy sent
//! again is delivered once.
//!
//! Deduplication remembers [`WINDOW`] numbers below the newest it saw from
//! an origin; a copy further below would be refused as too late. The origin
//! therefore never sends a message (of any QoS) numbered [`WINDOW`] or more
//! above the oldest unconfirmed number towards the same destination: such a
//! message waits here, in publish order, and the node reports itself busy
//! until the window opens again. That same window bounds what the relaying
//! cores hold for a destination, which is why their queues never drop
//! QoS 1 and 2 messages by policy.
//!
//! ```
//! use mqtt_cluster_core::forward::confirm::{Admitted, Outstanding, PublishId};
//! use mqtt_cluster_core::wire::messages::{Confirmation, ForwardedMessage, Qos, Target};
//! use mqtt_cluster_core::{Incarnation, Instant, NodeId};
//! use std::time::Duration;
//!
//! let (me, w2) = (NodeId::new("w1").unwrap(), NodeId::new("w2").unwrap());
//! let mut outstanding = Outstanding::new(Duration::from_secs(10), Duration::from_secs(60));
//! let message = ForwardedMessage {
//!     origin: me.clone(),
//!     incarnation: Incarnation(1),
//!     topic: mqtt_cluster_core::routing::TopicName::new("a/b").unwrap(),
//!     payload: "x".into(),
//!     qos: Qos::AtLeastOnce,
//!     retain: false,
//!     properties: None,
//!     targets: vec![Target { node: w2.clone(), seq: 1 }],
//! };
//! let id = outstanding.next_id();
//! assert!(matches!(outstanding.admit(Instant::ZERO, Some(id), message), Admitted::Send(_)));
//! let settled = outstanding.confirm(&Confirmation {
//!     origin: me, incarnation: Incarnation(1), to: w2.clone(), from: 1, through: 1,
//! });
//! assert_eq!(settled[0].id, id);
//! assert_eq!(settled[0].confirmed, vec![w2]);
//! assert!(settled[0].failure.is_none());
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::auth::replay::WINDOW;
use crate::id::NodeId;

use crate::time::Instant;
use crate::wire::messages::{Confirmation, ForwardedMessage, Qos};

mod ledger;
use ledger::{ById, SentNumbers};

/// The number [`Node::publish`](crate::Node::publish) gives a QoS 1 or 2
/// publish; the event that settles it names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PublishId(pub u64);

impl fmt::Display for PublishId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why some destinations of a publish will never confirm it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConfirmFailure {
    /// `messageExpiry` passed before they confirmed.
    Expired,
    /// They died or left the cluster first.
    DestinationGone,
    /// This node left the cluster (or was refused by it) first.
    Left,
    /// The next hop refused the message as larger than its `maxBodySize`
    /// (a cluster whose nodes disagree on it): sending it again would not
    /// help.
    Refused,
}

impl ConfirmFailure {
    /// The snake_case name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmFailure::Expired => "expired",
            ConfirmFailure::DestinationGone => "destination_gone",
            ConfirmFailure::Left => "left",
            ConfirmFailure::Refused => "refused",
        }
    }
}

/// A publish whose every destination has either confirmed it or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The publish.
    pub id: PublishId,
    /// Destinations that confirmed it.
    pub confirmed: Vec<NodeId>,
    /// Destinations that will not, and why (the first reason met); `None`
    /// when every destination confirmed.
    pub failure: Option<(ConfirmFailure, Vec<NodeId>)>,
}

/// What [`Outstanding::admit`] did with a message.
#[derive(Debug)]
pub enum Admitted {
    /// Send it now.
    Send(ForwardedMessage),
    /// It waits for the window of one of its destinations to open.
    Held,
    /// A QoS 0 message the waiting line had no room for (`queueLength`).
    Dropped(ForwardedMessage),
}

#[derive(Debug)]
struct Entry {
    /// The message, with only the targets that have not confirmed yet.
    message: ForwardedMessage,
    published_at: Instant,
    /// Sent at least once (not waiting for a window).
    sent: bool,
    confirmed: Vec<NodeId>,
    failure: Option<(ConfirmFailure, Vec<NodeId>)>,
}

/// A message waiting for a window, in publish order.
#[derive(Debug)]
enum Waiting {
    /// A QoS 1 or 2 message, kept in its entry.
    Tracked(PublishId),
    /// A QoS 0 message: not kept once sent.
    Untracked(ForwardedMessage),
}

/// The origin's unconfirmed messages and the windows they hold open.
#[derive(Debug)]
pub struct Outstanding {
    resend_after: Duration,
    expiry: Duration,
    /// How many QoS 0 messages may wait for a window.
    waiting_limit: usize,
    next_id: u64,
    entries: ById<Entry>,
    /// Per destination, the unconfirmed numbers sent to it.
    by_destination: BTreeMap<NodeId, SentNumbers>,
    waiting: VecDeque<Waiting>,
    waiting_untracked: usize,
    /// Sent entries by the time they were last sent (stale ids skipped).
    sends: VecDeque<(Instant, PublishId)>,
}

impl Outstanding {
    /// Nothing outstanding. Unconfirmed messages are sent again every
    /// `resend_after` and given up `expiry` after they were published.
    pub fn new(resend_after: Duration, expiry: Duration) -> Self {
        Outstanding {
            resend_after,
            expiry,
            waiting_limit: usize::MAX,
            next_id: 0,
            entries: ById::new(),
            by_destination: BTreeMap::new(),
            waiting: VecDeque::new(),
            waiting_untracked: 0,
            sends: VecDeque::new(),
        }
    }

    /// Caps how many QoS 0 messages may wait for a window; more are
    /// dropped ([`Admitted::Dropped`]).
    pub fn with_waiting_limit(mut self, limit: usize) -> Self {
        self.waiting_limit = limit.max(1);
        self
    }

    /// A fresh publish id.
    pub fn next_id(&mut self) -> PublishId {
        self.next_id += 1;
        PublishId(self.next_id)
    }

    /// Takes a message just numbered. `id` is `Some` for QoS 1 and 2: the
    /// message is kept until settled.
    pub fn admit(
        &mut self,
        now: Instant,
        id: Option<PublishId>,
        message: ForwardedMessage,
    ) -> Admitted {
        let goes = self.waiting.is_empty() && self.fits(&message);
        match id {
            Some(id) => {
                let entry = Entry {
                    message,
                    published_at: now,
                    sent: goes,
                    confirmed: Vec::new(),
                    failure: None,
                };
                let sent = goes.then(|| entry.message.clone());
                if let Err(entry) = self.entries.insert(id, entry) {
                    // Ids come from `next_id`, newest last; an older one
                    // cannot be kept in order, so its message goes on
                    // untracked rather than being lost.
                    if goes {
                        return Admitted::Send(entry.message);
                    }
                    self.waiting_untracked += 1;
                    self.waiting.push_back(Waiting::Untracked(entry.message));
                    return Admitted::Held;
                }
                match &sent {
                    Some(message) => {
                        self.index(id, message);
                        self.sends.push_back((now, id));
                    }
                    None => self.waiting.push_back(Waiting::Tracked(id)),
                }
                sent.map_or(Admitted::Held, Admitted::Send)
            }
            None if goes => Admitted::Send(message),
            None if self.waiting_untracked >= self.waiting_limit => Admitted::Dropped(message),
            None => {
                self.waiting_untracked += 1;
                self.waiting.push_back(Waiting::Untracked(message));
                Admitted::Held
            }
        }
    }

    /// Whether every target's number is inside its window.
    fn fits(&self, message: &ForwardedMessage) -> bool {
        message.targets.iter().all(|t| {
            self.by_destination
                .get(&t.node)
                .and_then(SentNumbers::oldest)
                .is_none_or(|oldest| t.seq < oldest.saturating_add(WINDOW))
        })
    }

    fn index(&mut self, id: PublishId, message: &ForwardedMessage) {
        for target in &message.targets {
            self.by_destination
                .entry(target.node.clone())
                .or_default()
                .push(target.seq, id);
        }
    }

    /// Applies a destination's confirmation (the caller checked that it is
    /// for this node's messages and incarnation). Returns the publishes it
    /// settled.
    pub fn confirm(&mut self, confirmation: &Confirmation) -> Vec<Settled> {
        let mut settled = Vec::new();
        let Some(sent) = self.by_destination.get_mut(&confirmation.to) else {
            return settled;
        };
        if confirmation.from > confirmation.through {
            return settled;
        }
        let numbers = sent.take_range(confirmation.from, confirmation.through);
        if sent.is_empty() {
            self.by_destination.remove(&confirmation.to);
        }
        for (seq, id) in numbers {
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            let before = entry.message.targets.len();
            entry
                .message
                .targets
                .retain(|t| !(t.node == confirmation.to && t.seq == seq));
            if entry.message.targets.len() < before {
                entry.confirmed.push(confirmation.to.clone());
            }
            if entry.message.targets.is_empty() {
                settled.extend(self.settle(id));
            }
        }
        settled
    }

    fn settle(&mut self, id: PublishId) -> Option<Settled> {
        let entry = self.entries.remove(id)?;
        Some(Settled {
            id,
            confirmed: entry.confirmed,
            failure: entry.failure,
        })
    }

    /// Gives up on the targets of `id` that `gone` names, for `reason`.
    fn fail_targets(
        &mut self,
        id: PublishId,
        reason: ConfirmFailure,
        gone: impl Fn(&NodeId) -> bool,
    ) -> Option<Settled> {
        let entry = self.entries.get_mut(id)?;
        let mut failed = Vec::new();
        entry.message.targets.retain(|t| {
            let keep = !gone(&t.node);
            if !keep {
                failed.push(t.clone());
            }
            keep
        });
        if failed.is_empty() {
            return None;
        }
        let (_, nodes) = entry.failure.get_or_insert((reason, Vec::new()));
        nodes.extend(failed.iter().map(|t| t.node.clone()));
        let done = entry.message.targets.is_empty();
        for target in failed {
            if let Some(sent) = self.by_destination.get_mut(&target.node) {
                sent.remove(target.seq);
                if sent.is_empty() {
                    self.by_destination.remove(&target.node);
                }
            }
        }
        if done {
            self.waiting
                .retain(|w| !matches!(w, Waiting::Tracked(waiting) if *waiting == id));
            self.settle(id)
        } else {
            None
        }
    }

    /// Messages whose windows opened, in publish order, to send now.
    pub fn release(&mut self, now: Instant) -> Vec<ForwardedMessage> {
        let mut out = Vec::new();
        while let Some(front) = self.waiting.front() {
            let message = match front {
                Waiting::Tracked(id) => match self.entries.get(*id) {
                    Some(entry) => &entry.message,
                    None => {
                        self.waiting.pop_front();
                        continue;
                    }
                },
                Waiting::Untracked(message) => message,
            };
            if !self.fits(message) {
                break;
            }
            match self.waiting.pop_front() {
                Some(Waiting::Tracked(id)) => {
                    let Some(entry) = self.entries.get_mut(id) else {
                        continue;
                    };
                    entry.sent = true;
                    let message = entry.message.clone();
                    self.index(id, &message);
                    self.sends.push_back((now, id));
                    out.push(message);
                }
                Some(Waiting::Untracked(message)) => {
                    self.waiting_untracked -= 1;
                    out.push(message);
                }
                None => break,
            }
        }
        out
    }

    /// The periodic work: publishes past `expiry` fail, targets `gone`
    /// names fail, and what waited `resend_after` for its confirmations
    /// goes again. Returns the messages to send and the publishes settled.
    pub fn tick(
        &mut self,
        now: Instant,
        gone: impl Fn(&NodeId) -> bool,
    ) -> (Vec<ForwardedMessage>, Vec<Settled>) {
        let mut settled = Vec::new();
        // Ids grow with time, so the expired ones come first.
        let expired: Vec<PublishId> = self
            .entries
            .iter()
            .take_while(|(_, e)| e.published_at + self.expiry <= now)
            .map(|(id, _)| id)
            .collect();
        for id in expired {
            settled.extend(self.fail_targets(id, ConfirmFailure::Expired, |_| true));
        }
        let mut resend = Vec::new();
        while let Some(&(at, id)) = self.sends.front() {
            if at + self.resend_after > now {
                break;
            }
            self.sends.pop_front();
            if !self.entries.get(id).is_some_and(|e| e.sent) {
                continue;
            }
            settled.extend(self.fail_targets(id, ConfirmFailure::DestinationGone, &gone));
            if let Some(entry) = self.entries.get(id) {
                resend.push(entry.message.clone());
                self.sends.push_back((now, id));
            }
        }
        (resend, settled)
    }

    /// Every sent and unconfirmed message, to send again at once (a path
    /// changed), after the targets `gone` names fail. Returns the messages
    /// and the publishes settled.
    pub fn resend_all(
        &mut self,
        now: Instant,
        gone: impl Fn(&NodeId) -> bool,
    ) -> (Vec<ForwardedMessage>, Vec<Settled>) {
        self.sends.clear();
        let sent: Vec<PublishId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.sent)
            .map(|(id, _)| id)
            .collect();
        let mut settled = Vec::new();
        let mut out = Vec::new();
        for id in sent {
            settled.extend(self.fail_targets(id, ConfirmFailure::DestinationGone, &gone));
            if let Some(entry) = self.entries.get(id) {
                out.push(entry.message.clone());
                self.sends.push_back((now, id));
            }
        }
        (out, settled)
    }

    /// `node` is another process now (it restarted under its name): the
    /// copies the old one had not confirmed never will be, and the new one
    /// must not take messages published before it subscribed. Every
    /// unsettled publish, sent or waiting, gives up on it.
    pub fn fail_destination(&mut self, node: &NodeId) -> Vec<Settled> {
        let ids: Vec<PublishId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.message.targets.iter().any(|t| t.node == *node))
            .map(|(id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.fail_targets(id, ConfirmFailure::DestinationGone, |n| n == node))
            .collect()
    }

    /// Gives up on the copies named by destination and number, for
    /// `reason`; copies not outstanding are ignored.
    pub fn fail_copies(
        &mut self,
        copies: &[(NodeId, u64)],
        reason: ConfirmFailure,
    ) -> Vec<Settled> {
        let mut settled = Vec::new();
        for (node, seq) in copies {
            let Some(id) = self
                .by_destination
                .get(node)
                .and_then(|sent| sent.get(*seq))
            else {
                continue;
            };
            settled.extend(self.fail_targets(id, reason, |n| n == node));
        }
        settled
    }

    /// Gives up on everything: the node stops. Returns the publishes
    /// settled and the QoS 0 messages that were waiting.
    pub fn abandon(&mut self) -> (Vec<Settled>, Vec<ForwardedMessage>) {
        let ids: Vec<PublishId> = self.entries.iter().map(|(id, _)| id).collect();
        let settled = ids
            .into_iter()
            .filter_map(|id| self.fail_targets(id, ConfirmFailure::Left, |_| true))
            .collect();
        let waiting = std::mem::take(&mut self.waiting)
            .into_iter()
            .filter_map(|w| match w {
                Waiting::Untracked(message) => Some(message),
                Waiting::Tracked(_) => None,
            })
            .collect();
        self.waiting_untracked = 0;
        self.sends.clear();
        (settled, waiting)
    }

    /// Publishes not yet settled.
    pub fn unconfirmed(&self) -> usize {
        self.entries.len()
    }

    /// Messages waiting for a window.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether messages wait for a window: the node is busy.
    pub fn is_busy(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// When the oldest unsettled publish was made.
    pub fn oldest(&self) -> Option<Instant> {
        self.entries.first().map(|e| e.published_at)
    }

    /// Per destination: its unconfirmed copies, and whether its window is
    /// full while messages wait (it holds them back).
    pub fn per_destination(&self) -> impl Iterator<Item = (&NodeId, usize, bool)> {
        let waiting = self.is_busy();
        self.by_destination.iter().map(move |(n, sent)| {
            let full = match (sent.oldest(), sent.newest()) {
                (Some(oldest), Some(newest)) => newest - oldest + 1 >= WINDOW,
                _ => false,
            };
            (n, sent.len(), waiting && full)
        })
    }

    /// Whether `qos` is kept until confirmed.
    pub fn tracks(qos: Qos) -> bool {
        qos != Qos::AtMostOnce
    }
}

#[cfg(test)]
mod tests;
