//! The cluster's retained messages: one replicated set, a full copy on
//! every node.
//!
//! Each topic is a last-writer-wins register. A write carries a
//! [`RetainStamp`] (a Lamport clock and the node it was published on); the
//! highest stamp wins on every node, whatever order writes arrive in, so two
//! nodes that saw the same writes hold the same set. A node's clock starts
//! at its incarnation (wall-clock milliseconds at start, DESIGN §10.1) and
//! jumps past every stamp it merges, so a publish made after seeing another
//! one always wins over it, and a restarted node's writes outrank those of
//! its former life.
//!
//! An empty payload clears a topic. The clearing is kept as a tombstone with
//! its stamp, so that an older write arriving late cannot bring the message
//! back. Tombstones are forgotten after a while (ten `deadTimeout`s) and
//! beyond a bound (as many as `retainedLimit`), oldest first: a node cut off
//! for longer than that may bring a cleared message back when it returns.
//!
//! The set holds at most `retainedLimit` topics. When a write for a new
//! topic finds it full, the set keeps the topics with the *lowest* stamps:
//! the newcomer is refused if its stamp is higher than every held one (always
//! the case for a node's own publish), else the held topic with the highest
//! stamp makes room. Every node applies the same rule to the same writes, so
//! the choice is the same everywhere.

mod pages;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::id::NodeId;
use crate::node::Message;
use crate::routing::TopicName;
use crate::time::Instant;
pub use crate::wire::retained::{RetainStamp, RetainedEntry};

pub use pages::{page_budget, Pager, PAGE_ENVELOPE};

/// Why a retained message was not taken into the cluster's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetainRefusal {
    /// The set already holds `retainedLimit` topics with lower stamps.
    Limit,
    /// The entry alone would not fit a body of `maxBodySize`.
    TooLarge,
}

impl RetainRefusal {
    /// Short snake_case name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RetainRefusal::Limit => "limit",
            RetainRefusal::TooLarge => "too_large",
        }
    }
}

/// What merging one entry did to the visible set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// The topic now holds this message (new, or newer than the one held).
    Set(Message),
    /// The topic's message was cleared.
    Cleared(TopicName),
    /// Nothing changed: a duplicate or an older write.
    Unchanged,
    /// The clearing of a topic that showed nothing was remembered: nothing
    /// visible changed, but the write is news to pass on.
    Tombstone,
    /// The entry was refused; `evicted` is never set with a refusal.
    Refused(TopicName, RetainRefusal),
    /// The topic now holds this message, and `evicted` lost its place to
    /// it (its stamp was the highest of a full set).
    SetEvicting(Message, TopicName),
}

#[derive(Clone, Debug)]
struct Slot {
    stamp: RetainStamp,
    /// `None`: a tombstone.
    message: Option<Message>,
    /// When this node took the write (tombstones are forgotten by age).
    since: Instant,
}

/// One node's copy of the cluster's retained set.
///
/// ```
/// use bytes::Bytes;
/// use mqtt_cluster_core::retained::{Merged, RetainStamp, RetainedEntry, RetainedSet};
/// use mqtt_cluster_core::routing::TopicName;
/// use mqtt_cluster_core::{Instant, NodeId};
///
/// let write = |clock, origin: &str, payload: &'static str| RetainedEntry {
///     topic: TopicName::new("lights/kitchen").unwrap(),
///     stamp: RetainStamp { clock, origin: NodeId::new(origin).unwrap() },
///     payload: Bytes::from_static(payload.as_bytes()),
///     qos: Default::default(),
///     properties: None,
/// };
/// let mut set = RetainedSet::new(NodeId::new("w1").unwrap(), 1, 100, 4096);
/// set.merge(write(10, "w2", "on"), 1 << 20, Instant::ZERO);
/// // An older write arriving late changes nothing; a clear wins over both.
/// assert_eq!(set.merge(write(9, "w3", "off"), 1 << 20, Instant::ZERO), Merged::Unchanged);
/// assert!(matches!(set.merge(write(11, "w3", ""), 1 << 20, Instant::ZERO), Merged::Cleared(_)));
/// assert_eq!(set.retained().count(), 0);
/// ```
#[derive(Debug)]
pub struct RetainedSet {
    me: NodeId,
    clock: u64,
    limit: usize,
    max_tombstones: usize,
    slots: BTreeMap<TopicName, Slot>,
    live: usize,
    /// The digest, computed when first asked for after a change.
    digest: std::cell::OnceCell<String>,
}

impl RetainedSet {
    /// An empty set for node `me`, whose clock starts at `clock` (its
    /// incarnation), holding at most `limit` topics and `max_tombstones`
    /// clearings.
    pub fn new(me: NodeId, clock: u64, limit: usize, max_tombstones: usize) -> Self {
        RetainedSet {
            me,
            clock: clock.max(1),
            limit,
            max_tombstones,
            slots: BTreeMap::new(),
            live: 0,
            digest: std::cell::OnceCell::new(),
        }
    }

    /// The most topics the set holds; 0 means retained messages stay local.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the cluster's set is kept at all (`retainedLimit` > 0).
    pub fn is_enabled(&self) -> bool {
        self.limit > 0
    }

    /// Every retained message, sorted by topic.
    pub fn retained(&self) -> impl Iterator<Item = &Message> {
        self.slots.values().filter_map(|s| s.message.as_ref())
    }

    /// The message retained for `topic`, and its stamp.
    pub fn get(&self, topic: &TopicName) -> Option<(&Message, &RetainStamp)> {
        self.slots
            .get(topic)
            .and_then(|s| s.message.as_ref().map(|m| (m, &s.stamp)))
    }

    /// The stamp held for `topic`, of a message or of its clearing.
    pub fn stamp_of(&self, topic: &TopicName) -> Option<&RetainStamp> {
        self.slots.get(topic).map(|s| &s.stamp)
    }

    /// How many topics hold a message.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no topic holds a message.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// How many clearings are remembered.
    pub fn tombstones(&self) -> usize {
        self.slots.len() - self.live
    }

    /// This node's Lamport clock for retained writes.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Digest of the visible set (topics and stamps of the messages held):
    /// equal digests mean equal sets. Empty for an empty set, so nodes
    /// without retained messages send nothing new in their heartbeats.
    pub fn digest(&self) -> String {
        self.digest
            .get_or_init(|| {
                if self.live == 0 {
                    return String::new();
                }
                let mut hash = Sha256::new();
                for (topic, slot) in self.slots.iter().filter(|(_, s)| s.message.is_some()) {
                    hash.update(topic.as_str().as_bytes());
                    hash.update([0]);
                    hash.update(slot.stamp.clock.to_be_bytes());
                    hash.update(slot.stamp.origin.as_str().as_bytes());
                    hash.update([0]);
                }
                let mut out = String::with_capacity(64);
                for byte in hash.finalize() {
                    out.push(char::from(HEX[usize::from(byte >> 4)]));
                    out.push(char::from(HEX[usize::from(byte & 15)]));
                }
                out
            })
            .clone()
    }

    /// Every entry, tombstones included, sorted by topic: what a node sends
    /// to bring another up to date.
    pub fn entries(&self) -> impl Iterator<Item = RetainedEntry> + '_ {
        self.slots.iter().map(|(topic, slot)| match &slot.message {
            Some(m) => RetainedEntry {
                topic: topic.clone(),
                stamp: slot.stamp.clone(),
                payload: m.payload.clone(),
                qos: m.qos,
                properties: m.properties.clone(),
            },
            None => RetainedEntry {
                topic: topic.clone(),
                stamp: slot.stamp.clone(),
                payload: Bytes::new(),
                qos: Default::default(),
                properties: None,
            },
        })
    }

    /// This node publishes `message` (retain flag set; an empty payload
    /// clears). Returns the entry to replicate, or why it was refused.
    /// `budget` is the largest entry a page may carry.
    pub fn publish(
        &mut self,
        message: &Message,
        budget: usize,
        now: Instant,
    ) -> Result<RetainedEntry, RetainRefusal> {
        let entry = RetainedEntry {
            topic: message.topic.clone(),
            stamp: RetainStamp {
                clock: self.clock.saturating_add(1),
                origin: self.me.clone(),
            },
            payload: message.payload.clone(),
            qos: message.qos,
            properties: if message.payload.is_empty() {
                None
            } else {
                message.properties.clone()
            },
        };
        match self.merge(entry.clone(), budget, now) {
            Merged::Refused(_, reason) => Err(reason),
            _ => Ok(entry),
        }
    }

    /// Merges one entry from anywhere (a peer, a snapshot, this node's own
    /// publish): last writer wins, within the limit.
    pub fn merge(&mut self, entry: RetainedEntry, budget: usize, now: Instant) -> Merged {
        self.clock = self.clock.max(entry.stamp.clock);
        if let Some(slot) = self.slots.get(&entry.topic) {
            if slot.stamp >= entry.stamp {
                return Merged::Unchanged;
            }
        }
        if !entry.is_clear() && pages::entry_len(&entry) > budget {
            return Merged::Refused(entry.topic, RetainRefusal::TooLarge);
        }
        let held = self
            .slots
            .get(&entry.topic)
            .is_some_and(|s| s.message.is_some());
        let topic = entry.topic.clone();
        if entry.is_clear() {
            self.slots.insert(
                topic.clone(),
                Slot {
                    stamp: entry.stamp,
                    message: None,
                    since: now,
                },
            );
            if self.tombstones() > self.max_tombstones {
                self.forget_tombstones(now, Duration::MAX);
            }
            if !held {
                // A new or newer tombstone: nothing visible changes.
                return Merged::Tombstone;
            }
            self.live -= 1;
            self.digest = std::cell::OnceCell::new();
            return Merged::Cleared(topic);
        }
        let mut evicted = None;
        if !held && self.live >= self.limit {
            // Full: keep the lowest stamps.
            let highest = self
                .slots
                .iter()
                .filter(|(_, s)| s.message.is_some())
                .max_by(|a, b| a.1.stamp.cmp(&b.1.stamp))
                .map(|(t, s)| (t.clone(), s.stamp.clone()));
            match highest {
                Some((victim, stamp)) if stamp > entry.stamp => {
                    self.slots.remove(&victim);
                    self.live -= 1;
                    evicted = Some(victim);
                }
                _ => return Merged::Refused(topic, RetainRefusal::Limit),
            }
        }
        let message = Message {
            topic: topic.clone(),
            payload: entry.payload,
            qos: entry.qos,
            retain: true,
            properties: entry.properties,
        };
        self.slots.insert(
            topic,
            Slot {
                stamp: entry.stamp,
                message: Some(message.clone()),
                since: now,
            },
        );
        if !held {
            self.live += 1;
        }
        self.digest = std::cell::OnceCell::new();
        match evicted {
            Some(victim) => Merged::SetEvicting(message, victim),
            None => Merged::Set(message),
        }
    }

    /// Forgets tombstones older than `keep`, and the oldest beyond the
    /// bound. Returns how many were forgotten.
    pub fn forget_tombstones(&mut self, now: Instant, keep: Duration) -> usize {
        let mut old: Vec<(Instant, TopicName)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.message.is_none())
            .map(|(t, s)| (s.since, t.clone()))
            .collect();
        old.sort();
        let excess = old.len().saturating_sub(self.max_tombstones);
        let mut forgotten = 0;
        for (i, (since, topic)) in old.into_iter().enumerate() {
            if i < excess || now.saturating_since(since) >= keep {
                self.slots.remove(&topic);
                forgotten += 1;
            }
        }
        forgotten
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests;
