//! The guarantees of DESIGN §7, checked while a simulation runs and once it
//! is quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::forward::confirm::PublishId;
use crate::forward::link::DropReason;
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

/// Key of one QoS 1/2 publish: origin, its incarnation, the id the origin
/// gave it.
type PublishKey = (NodeId, Incarnation, PublishId);

/// What the checker knows of one QoS 1/2 publish's confirmation.
#[derive(Debug, Clone, Default)]
struct Confirming {
    /// Its copies: destination and seq.
    copies: Vec<(NodeId, u64)>,
    /// When it was published.
    at: Option<Instant>,
    /// The origin told its host how it ended (once, and only once).
    settled: bool,
}

/// Everything the checker tracks.
#[derive(Debug, Default)]
pub(super) struct Checker {
    /// Every copy routed, with its publish.
    copies: BTreeMap<CopyKey, Published>,
    /// How many times each copy was delivered, to which process of its
    /// destination (the last one that got it).
    delivered: BTreeMap<CopyKey, (u32, u64)>,
    /// Highest seq delivered per (destination, its process, origin,
    /// incarnation).
    last_seq: BTreeMap<(NodeId, u64, NodeId, Incarnation), u64>,
    /// Copies a destination's new process got after its old one had: in
    /// flight to the old one when it crashed (see [`Checker::delivered`]).
    pub(super) delivered_again_after_restart: u64,
    /// Messages reported dropped, all reasons.
    pub(super) dropped: u64,
    /// Every QoS 1/2 publish, by the id its origin gave it.
    publishes: BTreeMap<PublishKey, Confirming>,
    /// Copies whose origin reported that their destination will never
    /// confirm them (gone, expired, the origin left).
    not_confirmed: BTreeSet<CopyKey>,
    /// Publishes settled as confirmed.
    pub(super) confirmed: u64,
    /// Publishes settled as not confirmed.
    pub(super) unconfirmed: u64,
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
        id: Option<PublishId>,
        targets: &[(NodeId, u64)],
        published: Published,
    ) {
        if let Some(id) = id {
            let entry = self
                .publishes
                .entry((origin.clone(), incarnation, id))
                .or_default();
            entry.copies = targets.to_vec();
            entry.at = Some(published.at);
        }
        for (node, seq) in targets {
            self.copies.insert(
                (origin.clone(), incarnation, node.clone(), *seq),
                published.clone(),
            );
        }
    }

    /// The origin told its host how publish `id` ended: `confirmed` took
    /// it, `failed` never will. Each publish ends once; every destination
    /// is named once, on one side; a destination said to have confirmed
    /// has had the copy delivered (a confirmation is never made ahead of
    /// the delivery it stands for).
    pub(super) fn settled(
        &mut self,
        origin: &NodeId,
        incarnation: Incarnation,
        id: PublishId,
        confirmed: &[NodeId],
        failed: &[NodeId],
    ) -> Result<(), (&'static str, String)> {
        let key = (origin.clone(), incarnation, id);
        let Some(entry) = self.publishes.get_mut(&key) else {
            return Err((
                "confirmations name publishes",
                format!("{origin} settled publish {} it never made", id.0),
            ));
        };
        if entry.settled {
            return Err((
                "each publish settled once",
                format!("{origin} settled publish {} twice", id.0),
            ));
        }
        entry.settled = true;
        let mut named: Vec<&NodeId> = confirmed.iter().chain(failed).collect();
        named.sort();
        let mut destinations: Vec<&NodeId> = entry.copies.iter().map(|(n, _)| n).collect();
        destinations.sort();
        if named != destinations {
            return Err((
                "confirmations name every destination",
                format!(
                    "{origin} settled publish {} naming {named:?}; its destinations were \
                     {destinations:?}",
                    id.0
                ),
            ));
        }
        for (dest, seq) in &entry.copies {
            let copy = (origin.clone(), incarnation, dest.clone(), *seq);
            if confirmed.contains(dest) {
                if !self.delivered.contains_key(&copy) {
                    return Err((
                        "confirmed means delivered",
                        format!(
                            "{origin} was told {dest} took publish {} (#{seq}), which {dest} \
                             never delivered",
                            id.0
                        ),
                    ));
                }
            } else {
                self.not_confirmed.insert(copy);
            }
        }
        if failed.is_empty() {
            self.confirmed += 1;
        } else {
            self.unconfirmed += 1;
        }
        Ok(())
    }

    /// A delivery: it must be a routed copy, the first of its kind, and
    /// later in its origin's sequence than the ones before.
    /// `path_changed` says whether a fault was recent enough that this copy
    /// may have taken another path than the ones before it: order is
    /// guaranteed along one path, and a copy rerouted after a failover is
    /// delivered late rather than lost.
    ///
    /// Once is per process of the destination: a destination that restarts
    /// may get, once more, a copy that was on its way to its old process
    /// (no message says which process of a destination a copy is for).
    pub(super) fn delivered(
        &mut self,
        dest: &NodeId,
        dest_life: u64,
        incarnation_of: Incarnation,
        d: &Delivery,
        path_changed: bool,
        origin_resent_at: Option<Instant>,
    ) -> Result<(), (&'static str, String)> {
        self.deliveries += 1;
        let key = (d.origin.clone(), incarnation_of, dest.clone(), d.seq);
        let Some(published) = self.copies.get(&key) else {
            return Err((
                "exact routing",
                format!(
                    "{dest} got {} #{} from {} which was not routed to it",
                    d.topic.as_str(),
                    d.seq,
                    d.origin
                ),
            ));
        };
        let path_changed =
            path_changed || origin_resent_at.is_some_and(|resent| resent >= published.at);
        let (count, life) = self.delivered.entry(key).or_insert((0, dest_life));
        if *life != dest_life {
            *life = dest_life;
            *count = 0;
            self.delivered_again_after_restart += 1;
        }
        *count += 1;
        let count = *count;
        if count > 1 {
            return Err((
                "delivered once",
                format!("{dest} got #{} from {} {} times", d.seq, d.origin, count),
            ));
        }
        let last = self
            .last_seq
            .entry((dest.clone(), dest_life, d.origin.clone(), incarnation_of))
            .or_insert(0);
        if d.seq <= *last && path_changed {
            self.reordered += 1;
        } else if d.seq <= *last {
            return Err((
                "per-origin order",
                format!("{dest} got #{} from {} after #{}", d.seq, d.origin, last),
            ));
        }
        *last = (*last).max(d.seq);
        Ok(())
    }

    /// Checks the copies a drop event named: a full queue never drops a
    /// QoS 1 or 2 copy, since its origin holds it back instead.
    pub(super) fn dropped_copies(
        &mut self,
        reason: DropReason,
        copies: &[DroppedCopy],
    ) -> Result<(), (&'static str, String)> {
        for copy in copies {
            if reason == DropReason::QueueFull && copy.qos != Qos::AtMostOnce {
                return Err((
                    "no QoS 1 dropped by queue policy",
                    format!(
                        "a full queue dropped {}@{} -> {} #{} (QoS {})",
                        copy.origin,
                        copy.incarnation,
                        copy.to,
                        copy.seq,
                        copy.qos.as_u8()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// QoS 1 and 2 copies that never arrived although their origin and
    /// their destination ran from the publish to now, and their origin did
    /// not report that the destination will never confirm them. Nothing
    /// else excuses a loss: not a drop on the way (the origin sends again),
    /// not the crash of a core that relayed the copy.
    pub(super) fn lost_silently(
        &self,
        running: &BTreeSet<NodeId>,
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
                    && !self.not_confirmed.contains(*key)
                    && !crashed_since(origin, p.at)
                    && !crashed_since(dest, p.at)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// QoS 1 and 2 publishes whose origin ran from the publish to now and
    /// never told its host how they ended.
    pub(super) fn unsettled(
        &self,
        running: &BTreeSet<NodeId>,
        crashed_since: impl Fn(&NodeId, Instant) -> bool,
    ) -> Vec<PublishKey> {
        self.publishes
            .iter()
            .filter(|((origin, _, _), c)| {
                !c.settled
                    && running.contains(origin)
                    && c.at.is_some_and(|at| !crashed_since(origin, at))
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
