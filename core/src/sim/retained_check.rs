//! The convergence of retained sets: once faults stop, every running node
//! holds, per topic, the last write (by stamp) of all retained publishes
//! the cluster accepted, and never a value no one published.
//!
//! A write whose origin crashed or left afterwards may have died with it
//! before reaching anyone: such writes are allowed to be missing, but a
//! node may also hold one (it did get out). Every other accepted write must
//! be reflected.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::id::NodeId;
use crate::retained::RetainedSet;
use crate::routing::TopicName;
use crate::wire::retained::RetainStamp;

/// One retained publish a node accepted into its set.
#[derive(Clone, Debug)]
pub(super) struct Write {
    pub(super) stamp: RetainStamp,
    /// Empty: a clear.
    pub(super) payload: Bytes,
    /// The origin and its life when it published.
    pub(super) life: (NodeId, u64),
}

/// Every accepted retained write, per topic.
#[derive(Debug, Default)]
pub(super) struct RetainedWrites {
    writes: BTreeMap<TopicName, Vec<Write>>,
}

impl RetainedWrites {
    pub(super) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub(super) fn accepted(&mut self, topic: TopicName, write: Write) {
        self.writes.entry(topic).or_default().push(write);
    }

    /// Whether `payload` was ever published as the retained message of
    /// `topic`.
    pub(super) fn was_published(&self, topic: &TopicName, payload: &Bytes) -> bool {
        self.writes.get(topic).is_some_and(|ws| {
            ws.iter()
                .any(|w| !w.payload.is_empty() && w.payload == *payload)
        })
    }

    /// Checks that every message a node holds was published, with the
    /// stamp and payload of its publish.
    pub(super) fn check_published(&self, node: &NodeId, set: &RetainedSet) -> Result<(), String> {
        for message in set.retained() {
            let stamp = set.stamp_of(&message.topic);
            let known = self.writes.get(&message.topic).is_some_and(|ws| {
                ws.iter()
                    .any(|w| Some(&w.stamp) == stamp && w.payload == message.payload)
            });
            if !known {
                return Err(format!(
                    "{node} holds {} with a value no one published",
                    message.topic.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Checks one running node's set; `durable` says whether a write's
    /// origin life is still running (its writes cannot have been lost).
    pub(super) fn check(
        &self,
        node: &NodeId,
        set: &RetainedSet,
        durable: impl Fn(&(NodeId, u64)) -> bool,
    ) -> Result<(), String> {
        for message in set.retained() {
            if !self.writes.contains_key(&message.topic) {
                return Err(format!(
                    "{node} holds {} which no one published as retained",
                    message.topic.as_str()
                ));
            }
        }
        for (topic, writes) in &self.writes {
            let held = set.get(topic);
            let newest_durable = writes
                .iter()
                .filter(|w| durable(&w.life))
                .max_by(|a, b| a.stamp.cmp(&b.stamp));
            match held {
                Some((message, stamp)) => {
                    let Some(write) = writes.iter().find(|w| w.stamp == *stamp) else {
                        return Err(format!(
                            "{node} holds {} with a stamp no publish had: {stamp:?}",
                            topic.as_str()
                        ));
                    };
                    if write.payload != message.payload {
                        return Err(format!(
                            "{node} holds {} with another payload than its publish",
                            topic.as_str()
                        ));
                    }
                    if let Some(newer) = newest_durable.filter(|w| w.stamp > *stamp) {
                        return Err(format!(
                            "{node} holds {} from {stamp:?}, not the newer write {:?}",
                            topic.as_str(),
                            newer.stamp
                        ));
                    }
                }
                None => {
                    let Some(newest) = newest_durable else {
                        continue;
                    };
                    if newest.payload.is_empty() {
                        continue;
                    }
                    // Only a clear newer than it, from a life that is gone,
                    // explains the message's absence.
                    let cleared = writes
                        .iter()
                        .any(|w| w.payload.is_empty() && w.stamp > newest.stamp);
                    if !cleared {
                        return Err(format!(
                            "{node} holds nothing for {}; the last write {:?} set it",
                            topic.as_str(),
                            newest.stamp
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
