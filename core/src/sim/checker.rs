//! The guarantees of DESIGN §7, checked while a simulation runs and once it
//! is quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::id::{Incarnation, NodeId};
use crate::node::{Delivery, DroppedCopy};
use crate::routing::{Subscription, TopicName};
use crate::time::Instant;
use crate::wire::messages::Qos;

/// One broken guarantee: where, when, and how to see it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The guarantee.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
    /// The seed of the run.
    pub seed: u64,
    /// The step at which it was seen.
    pub step: u64,
    /// The simulated time at which it was seen.
    pub at: Instant,
    /// One command that replays the run.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant `{}` broken at step {} ({}), seed {}: {}\nreplay: {}",
            self.invariant, self.step, self.at, self.seed, self.detail, self.replay
        )
    }
}

impl std::error::Error for Violation {}

/// Key of one copy of a message: origin, its incarnation, destination, seq.
type CopyKey = (NodeId, Incarnation, NodeId, u64);

/// What the checker remembers of a publish.
#[derive(Debug, Clone)]
pub(super) struct Published {
    pub(super) at: Instant,
    pub(super) qos: Qos,
}

/// Everything the checker tracks.
#[derive(Debug, Default)]
pub(super) struct Checker {
    /// Every copy routed, with its publish.
    copies: BTreeMap<CopyKey, Published>,
    /// How many times each copy was delivered.
    delivered: BTreeMap<CopyKey, u32>,
    /// Highest seq delivered per (destination, origin, incarnation).
    last_seq: BTreeMap<(NodeId, NodeId, Incarnation), u64>,
    /// Messages reported dropped, all reasons.
    pub(super) dropped: u64,
    /// Every copy a drop event named.
    named_drops: BTreeSet<CopyKey>,
    /// Publishes checked against the reference matcher.
    pub(super) routing_checks: u64,
    /// Deliveries seen.
    pub(super) deliveries: u64,
    /// Deliveries that came after a later one of the same origin, while a
    /// fault was recent enough to have changed their path.
    pub(super) reordered: u64,
}

impl Checker {
    pub(super) fn routed(
        &mut self,
        origin: &NodeId,
        incarnation: Incarnation,
        targets: &[(NodeId, u64)],
        published: Published,
    ) {
        for (node, seq) in targets {
            self.copies.insert(
                (origin.clone(), incarnation, node.clone(), *seq),
                published.clone(),
            );
        }
    }

    /// A delivery: it must be a routed copy, the first of its kind, and
    /// later in its origin's sequence than the ones before.
    /// `path_changed` says whether a fault was recent enough that this copy
    /// may have taken another path than the ones before it: order is
    /// guaranteed along one path, and a copy rerouted after a failover is
    /// delivered late rather than lost.
    pub(super) fn delivered(
        &mut self,
        dest: &NodeId,
        incarnation_of: Incarnation,
        d: &Delivery,
        path_changed: bool,
    ) -> Result<(), (&'static str, String)> {
        self.deliveries += 1;
        let key = (d.origin.clone(), incarnation_of, dest.clone(), d.seq);
        if !self.copies.contains_key(&key) {
            return Err((
                "exact routing",
                format!(
                    "{dest} got {} #{} from {} which was not routed to it",
                    d.topic.as_str(),
                    d.seq,
                    d.origin
                ),
            ));
        }
        let count = self.delivered.entry(key).or_insert(0);
        *count += 1;
        if *count > 1 {
            return Err((
                "delivered once",
                format!("{dest} got #{} from {} {} times", d.seq, d.origin, count),
            ));
        }
        let last = self
            .last_seq
            .entry((dest.clone(), d.origin.clone(), incarnation_of))
            .or_insert(0);
        if d.seq <= *last && *count == 1 && path_changed {
            self.reordered += 1;
        } else if d.seq <= *last && *count == 1 {
            return Err((
                "per-origin order",
                format!("{dest} got #{} from {} after #{}", d.seq, d.origin, last),
            ));
        }
        *last = (*last).max(d.seq);
        Ok(())
    }

    /// Remembers the copies a drop event named.
    pub(super) fn dropped_copies(&mut self, copies: &[DroppedCopy]) {
        for copy in copies {
            self.named_drops.insert((
                copy.origin.clone(),
                copy.incarnation,
                copy.to.clone(),
                copy.seq,
            ));
        }
    }

    /// QoS 1 and 2 copies that never arrived and that no drop event named,
    /// among those whose loss nothing excuses: origin and destination are
    /// running now, and `crashed_since(node, at)` holds for none of the
    /// origin, the destination and `cores` (a crash takes with it what the
    /// node held and had not passed on).
    pub(super) fn lost_silently(
        &self,
        running: &BTreeSet<NodeId>,
        cores: &BTreeSet<NodeId>,
        crashed_since: impl Fn(&NodeId, Instant) -> bool,
    ) -> Vec<CopyKey> {
        self.copies
            .iter()
            .filter(|(key, p)| {
                let (origin, _, dest, _) = key;
                p.qos != Qos::AtMostOnce
                    && running.contains(dest)
                    && running.contains(origin)
                    && !self.delivered.contains_key(*key)
                    && !self.named_drops.contains(*key)
                    && !crashed_since(origin, p.at)
                    && !crashed_since(dest, p.at)
                    && !cores.iter().any(|core| crashed_since(core, p.at))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// Nodes that must receive a message: every holder of a matching plain
/// filter, and, per matching (group, filter), the holders one of which must.
pub(super) type ReferenceTargets = (
    BTreeSet<NodeId>,
    BTreeMap<(String, String), BTreeSet<NodeId>>,
);

/// What a message on `topic` must reach, from what each running host
/// subscribed (borrowed: a publish is checked against it, and copying every
/// host's subscriptions for each would cost more than the check).
pub(super) fn reference_targets<'a>(
    topic: &TopicName,
    truth: impl IntoIterator<Item = (&'a NodeId, &'a BTreeMap<Subscription, usize>)>,
) -> ReferenceTargets {
    let mut plain = BTreeSet::new();
    let mut groups: BTreeMap<(String, String), BTreeSet<NodeId>> = BTreeMap::new();
    for (node, subs) in truth {
        for sub in subs.keys() {
            if !sub.filter().matches(topic) {
                continue;
            }
            match sub.share_group() {
                None => {
                    plain.insert(node.clone());
                }
                Some(group) => {
                    groups
                        .entry((group.to_owned(), sub.filter().as_str().to_owned()))
                        .or_default()
                        .insert(node.clone());
                }
            }
        }
    }
    (plain, groups)
}
