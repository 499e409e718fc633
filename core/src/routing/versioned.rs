//! The cluster's routes as one node holds them: a [`RouteTable`] plus, per
//! member, which of its route updates it reflects.
//!
//! Each member numbers its own route updates within an incarnation. A delta
//! applies only on top of the update it follows; anything else is a gap,
//! answered by asking for a snapshot. This keeps every copy of the table
//! exact even when updates are lost, duplicated or reordered on the way.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{FilterMatch, RouteTable, Subscription, TopicName};
use crate::id::{Incarnation, NodeId};
use crate::wire::messages::{RouteChange, RouteUpdate, RouteVersion};

/// What became of a route update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The table changed (or a snapshot confirmed it).
    Changed,
    /// Already reflected: a duplicate or an older update.
    Duplicate,
    /// It does not follow on from what this node holds: send a snapshot.
    Gap,
    /// From an older incarnation of the member.
    Stale,
}

/// The routing table of the whole cluster, versioned per member.
///
/// ```
/// use mqtt_cluster_core::routing::{ClusterRoutes, Subscription, TopicName};
/// use mqtt_cluster_core::wire::messages::{RouteChange, RouteUpdate};
/// use mqtt_cluster_core::{Incarnation, NodeId};
///
/// let w1 = NodeId::new("w1").unwrap();
/// let mut routes = ClusterRoutes::new();
/// let add = |prev, seq, filter: &str| RouteUpdate {
///     node: w1.clone(),
///     incarnation: Incarnation(1),
///     seq,
///     change: RouteChange::Delta { prev, add: vec![Subscription::parse(filter).unwrap()], remove: vec![] },
/// };
/// routes.apply(&add(0, 1, "sensors/+/temp"));
/// // Update 3 does not follow update 1: the sender must send a snapshot.
/// assert_eq!(routes.apply(&add(2, 3, "x")), mqtt_cluster_core::routing::Applied::Gap);
/// let mut out = Vec::new();
/// routes.matches(&TopicName::new("sensors/7/temp").unwrap(), &mut out);
/// assert_eq!(out, [w1]);
/// ```
#[derive(Default)]
pub struct ClusterRoutes {
    table: RouteTable,
    versions: BTreeMap<NodeId, (Incarnation, u64)>,
    /// Snapshots arriving in parts, per member, until their last part.
    parts: BTreeMap<NodeId, Parts>,
    /// The digest, computed when first asked for after a change.
    digest: std::cell::OnceCell<String>,
    /// Per member, the newest update heard of that could not be applied
    /// yet (it left a gap): how far behind the member this table is, until
    /// a snapshot catches it up. Kept only while ahead of `versions`.
    heard: BTreeMap<NodeId, (Incarnation, u64)>,
}

/// How far this node's copy of one member's routes lags what the member
/// has sent: from [`ClusterRoutes::lag_of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLag {
    /// The incarnation and update number held, if any.
    pub held: Option<(Incarnation, u64)>,
    /// The newest update heard of, which left a gap or is a snapshot still
    /// arriving in parts.
    pub heard: (Incarnation, u64),
}

impl RouteLag {
    /// Updates missing between what is held and what was heard of, when
    /// both are of one incarnation; `None` across incarnations (the held
    /// routes are of a life the member left).
    pub fn gap(&self) -> Option<u64> {
        match self.held {
            Some((incarnation, seq)) if incarnation == self.heard.0 => {
                Some(self.heard.1.saturating_sub(seq))
            }
            Some(_) => None,
            None => Some(self.heard.1),
        }
    }
}

impl std::fmt::Debug for ClusterRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRoutes")
            .field("routes", &self.table.len())
            .field("versions", &self.versions)
            .finish()
    }
}

/// The parts of one snapshot gathered so far.
#[derive(Debug)]
struct Parts {
    version: (Incarnation, u64),
    next: u32,
    routes: Vec<Subscription>,
}

impl ClusterRoutes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an update if it follows on from what this node holds.
    ///
    /// A [`RouteChange::SnapshotPart`] is taken ([`Applied::Changed`]) if
    /// it is the next part of the snapshot being gathered (or a first
    /// part); the table changes when the last part is in.
    pub fn apply(&mut self, update: &RouteUpdate) -> Applied {
        let verdict = match &update.change {
            RouteChange::SnapshotPart { part, last, routes } => {
                self.apply_part(update, *part, *last, routes)
            }
            _ => self.apply_whole(update),
        };
        self.note_heard(update, verdict);
        verdict
    }

    /// Keeps [`ClusterRoutes::heard`] ahead of the versions held, or
    /// drops it once caught up.
    fn note_heard(&mut self, update: &RouteUpdate, verdict: Applied) {
        let version = (update.incarnation, update.seq);
        if verdict == Applied::Gap {
            let newest = self.heard.entry(update.node.clone()).or_insert(version);
            *newest = (*newest).max(version);
        }
        let caught_up = match (
            self.heard.get(&update.node),
            self.versions.get(&update.node),
        ) {
            (Some(heard), Some(held)) => heard <= held,
            _ => false,
        };
        if caught_up {
            self.heard.remove(&update.node);
        }
    }

    fn apply_whole(&mut self, update: &RouteUpdate) -> Applied {
        let have = self.versions.get(&update.node).copied();
        let verdict = match (&update.change, have) {
            (_, Some((incarnation, _))) if update.incarnation < incarnation => Applied::Stale,
            (RouteChange::Snapshot { .. }, Some(version))
                if (update.incarnation, update.seq) <= version =>
            {
                Applied::Duplicate
            }
            (RouteChange::Snapshot { .. }, _) => Applied::Changed,
            (RouteChange::Delta { prev, .. }, None) => gap_unless(*prev == 0),
            (RouteChange::Delta { prev, .. }, Some((incarnation, _)))
                if update.incarnation > incarnation =>
            {
                gap_unless(*prev == 0)
            }
            (RouteChange::Delta { .. }, Some((_, seq))) if update.seq <= seq => Applied::Duplicate,
            (RouteChange::Delta { prev, .. }, Some((_, seq))) => {
                gap_unless(*prev == seq && update.seq > seq)
            }
            // Parts are gathered by `apply_part`, never applied here.
            (RouteChange::SnapshotPart { .. }, _) => Applied::Gap,
        };
        if verdict != Applied::Changed {
            return verdict;
        }
        let fresh = have.is_none_or(|(incarnation, _)| incarnation < update.incarnation);
        match &update.change {
            RouteChange::Snapshot { routes } => {
                self.table.remove_node(&update.node);
                for route in routes {
                    self.table.insert(&update.node, route);
                }
            }
            RouteChange::Delta { add, remove, .. } => {
                if fresh {
                    self.table.remove_node(&update.node);
                }
                for route in remove {
                    self.table.remove(&update.node, route);
                }
                for route in add {
                    self.table.insert(&update.node, route);
                }
            }
            RouteChange::SnapshotPart { .. } => return Applied::Gap,
        }
        self.parts.remove(&update.node);
        self.versions
            .insert(update.node.clone(), (update.incarnation, update.seq));
        self.digest = std::cell::OnceCell::new();
        Applied::Changed
    }

    /// Gathers one part of a snapshot; the last applies the whole.
    fn apply_part(
        &mut self,
        update: &RouteUpdate,
        part: u32,
        last: bool,
        routes: &[Subscription],
    ) -> Applied {
        let version = (update.incarnation, update.seq);
        match self.versions.get(&update.node) {
            Some(&(incarnation, _)) if update.incarnation < incarnation => return Applied::Stale,
            Some(&held) if version <= held => return Applied::Duplicate,
            _ => {}
        }
        let mut gathered = match self.parts.remove(&update.node) {
            Some(g) if part > 0 && g.version == version && g.next == part => g,
            _ if part == 0 => Parts {
                version,
                next: 0,
                routes: Vec::new(),
            },
            _ => return Applied::Gap,
        };
        gathered.routes.extend(routes.iter().cloned());
        gathered.next = part.saturating_add(1);
        if !last {
            self.parts.insert(update.node.clone(), gathered);
            return Applied::Changed;
        }
        self.apply_whole(&RouteUpdate {
            node: update.node.clone(),
            incarnation: update.incarnation,
            seq: update.seq,
            change: RouteChange::Snapshot {
                routes: gathered.routes,
            },
        })
    }

    /// How many members this table holds a version of.
    pub fn owners(&self) -> usize {
        self.versions.len()
    }

    /// Forgets every route of a member that died or left. Returns how many.
    pub fn remove_member(&mut self, node: &NodeId) -> usize {
        self.parts.remove(node);
        self.heard.remove(node);
        self.versions.remove(node);
        self.digest = std::cell::OnceCell::new();
        self.table.remove_node(node)
    }

    /// A snapshot update of one member's routes, at the version held.
    pub fn snapshot_of(&self, node: &NodeId) -> Option<RouteUpdate> {
        let (incarnation, seq) = *self.versions.get(node)?;
        Some(RouteUpdate {
            node: node.clone(),
            incarnation,
            seq,
            change: RouteChange::Snapshot {
                routes: self.table.routes_of(node),
            },
        })
    }

    /// Snapshots of every member's routes.
    pub fn snapshots(&self) -> Vec<RouteUpdate> {
        self.versions
            .keys()
            .filter_map(|node| self.snapshot_of(node))
            .collect()
    }

    /// Which update of each member this node holds.
    pub fn versions(&self) -> Vec<RouteVersion> {
        self.versions
            .iter()
            .map(|(node, (incarnation, seq))| RouteVersion {
                node: node.clone(),
                incarnation: *incarnation,
                seq: *seq,
            })
            .collect()
    }

    /// The version held for one member.
    pub fn version_of(&self, node: &NodeId) -> Option<(Incarnation, u64)> {
        self.versions.get(node).copied()
    }

    /// A digest of [`ClusterRoutes::versions`]: equal digests, equal tables.
    pub fn digest(&self) -> String {
        self.digest.get_or_init(|| self.compute_digest()).clone()
    }

    fn compute_digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (node, (incarnation, seq)) in &self.versions {
            hasher.update(node.as_str().as_bytes());
            hasher.update([0]);
            hasher.update(incarnation.0.to_be_bytes());
            hasher.update(seq.to_be_bytes());
        }
        crate::auth::hex(hasher.finalize().get(..8).unwrap_or_default())
    }

    /// Every node a message on `topic` must reach (see [`RouteTable::matches`]).
    pub fn matches(&mut self, topic: &TopicName, out: &mut Vec<NodeId>) {
        self.table.matches(topic, out);
    }

    /// Every filter matching `topic`, explained (see
    /// [`RouteTable::matching_filters`]).
    pub fn matching_filters(&self, topic: &TopicName) -> Vec<FilterMatch> {
        self.table.matching_filters(topic)
    }

    /// How far the routes held for `node` lag the updates heard of: after
    /// an update that left a gap, until a snapshot catches up, and while a
    /// snapshot arrives in parts. `None` when nothing newer was heard of.
    pub fn lag_of(&self, node: &NodeId) -> Option<RouteLag> {
        let held = self.versions.get(node).copied();
        let gathering = self.parts.get(node).map(|p| p.version);
        let heard = match (self.heard.get(node).copied(), gathering) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        (held.is_none_or(|held| heard > held)).then_some(RouteLag { held, heard })
    }

    /// Whether `node` holds `route`.
    pub fn contains(&self, node: &NodeId, route: &Subscription) -> bool {
        self.table.contains(node, route)
    }

    /// The subscriptions of one member.
    pub fn routes_of(&self, node: &NodeId) -> Vec<Subscription> {
        self.table.routes_of(node)
    }

    /// Number of (member, subscription) routes.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no member holds any route.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

fn gap_unless(follows: bool) -> Applied {
    if follows {
        Applied::Changed
    } else {
        Applied::Gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn sub(s: &str) -> Subscription {
        Subscription::parse(s).unwrap()
    }

    fn delta(
        node: &str,
        inc: u64,
        prev: u64,
        seq: u64,
        add: &[&str],
        remove: &[&str],
    ) -> RouteUpdate {
        RouteUpdate {
            node: id(node),
            incarnation: Incarnation(inc),
            seq,
            change: RouteChange::Delta {
                prev,
                add: add.iter().map(|s| sub(s)).collect(),
                remove: remove.iter().map(|s| sub(s)).collect(),
            },
        }
    }

    #[test]
    fn deltas_apply_in_order_and_duplicates_and_gaps_are_told_apart() {
        let mut routes = ClusterRoutes::new();
        assert_eq!(
            routes.apply(&delta("a", 1, 0, 1, &["x/#"], &[])),
            Applied::Changed
        );
        assert_eq!(
            routes.apply(&delta("a", 1, 0, 1, &["x/#"], &[])),
            Applied::Duplicate
        );
        assert_eq!(
            routes.apply(&delta("a", 1, 2, 3, &["y"], &[])),
            Applied::Gap
        );
        assert_eq!(
            routes.apply(&delta("a", 1, 1, 2, &["y"], &["x/#"])),
            Applied::Changed
        );
        assert_eq!(routes.routes_of(&id("a")), vec![sub("y")]);
        assert_eq!(
            routes.apply(&delta("a", 0, 0, 9, &["z"], &[])),
            Applied::Stale
        );
    }

    #[test]
    fn a_snapshot_replaces_and_a_new_incarnation_starts_empty() {
        let mut routes = ClusterRoutes::new();
        routes.apply(&delta("a", 1, 0, 1, &["x", "y"], &[]));
        let snap = RouteUpdate {
            change: RouteChange::Snapshot {
                routes: vec![sub("z")],
            },
            ..delta("a", 1, 0, 5, &[], &[])
        };
        assert_eq!(routes.apply(&snap), Applied::Changed);
        assert_eq!(routes.routes_of(&id("a")), vec![sub("z")]);
        assert_eq!(
            routes.apply(&delta("a", 2, 0, 1, &["w"], &[])),
            Applied::Changed
        );
        assert_eq!(routes.routes_of(&id("a")), vec![sub("w")]);
    }

    #[test]
    fn snapshots_rebuild_an_equal_table() {
        let mut one = ClusterRoutes::new();
        one.apply(&delta("a", 1, 0, 1, &["x", "$share/g/y"], &[]));
        one.apply(&delta("b", 3, 0, 2, &["+/+"], &[]));
        let mut two = ClusterRoutes::new();
        for snap in one.snapshots() {
            assert_eq!(two.apply(&snap), Applied::Changed);
        }
        assert_eq!(one.digest(), two.digest());
        assert_eq!(one.routes_of(&id("a")), two.routes_of(&id("a")));
        one.remove_member(&id("a"));
        assert!(one.routes_of(&id("a")).is_empty());
        assert_ne!(one.digest(), two.digest());
    }

    fn part(node: &str, seq: u64, part: u32, last: bool, routes: &[&str]) -> RouteUpdate {
        RouteUpdate {
            node: id(node),
            incarnation: Incarnation(1),
            seq,
            change: RouteChange::SnapshotPart {
                part,
                last,
                routes: routes.iter().map(|s| sub(s)).collect(),
            },
        }
    }

    #[test]
    fn a_snapshot_in_parts_applies_whole_when_its_last_part_is_in() {
        let mut routes = ClusterRoutes::new();
        routes.apply(&delta("a", 1, 0, 1, &["old"], &[]));
        let before = routes.digest();
        assert_eq!(
            routes.apply(&part("a", 5, 0, false, &["x"])),
            Applied::Changed
        );
        assert_eq!(
            routes.apply(&part("a", 5, 1, false, &["y"])),
            Applied::Changed
        );
        // Nothing changes before the last part.
        assert_eq!(routes.routes_of(&id("a")), [sub("old")]);
        assert_eq!(routes.digest(), before);
        assert_eq!(
            routes.apply(&part("a", 5, 2, true, &["z"])),
            Applied::Changed
        );
        assert_eq!(routes.routes_of(&id("a")), [sub("x"), sub("y"), sub("z")]);
        assert_eq!(routes.version_of(&id("a")), Some((Incarnation(1), 5)));
        // The same parts again are duplicates; a later delta follows on.
        assert_eq!(
            routes.apply(&part("a", 5, 0, false, &["x"])),
            Applied::Duplicate
        );
        assert_eq!(
            routes.apply(&delta("a", 1, 5, 6, &["w"], &[])),
            Applied::Changed
        );
    }

    #[test]
    fn a_gap_is_remembered_as_lag_until_a_snapshot_catches_up() {
        let mut routes = ClusterRoutes::new();
        let w1 = id("w1");
        assert_eq!(routes.lag_of(&w1), None);
        assert_eq!(
            routes.apply(&delta("w1", 1, 0, 1, &["a"], &[])),
            Applied::Changed
        );
        assert_eq!(routes.lag_of(&w1), None);
        assert_eq!(
            routes.apply(&delta("w1", 1, 3, 4, &["b"], &[])),
            Applied::Gap
        );
        assert_eq!(
            routes.apply(&delta("w1", 1, 2, 3, &["c"], &[])),
            Applied::Gap
        );
        let lag = routes.lag_of(&w1).unwrap();
        assert_eq!(lag.held, Some((Incarnation(1), 1)));
        assert_eq!(lag.heard, (Incarnation(1), 4));
        assert_eq!(lag.gap(), Some(3));
        // A snapshot in parts is heard of before it is held.
        assert_eq!(
            routes.apply(&part("w1", 5, 0, false, &["a"])),
            Applied::Changed
        );
        assert_eq!(routes.lag_of(&w1).unwrap().heard, (Incarnation(1), 5));
        assert_eq!(
            routes.apply(&part("w1", 5, 1, true, &["b"])),
            Applied::Changed
        );
        assert_eq!(routes.lag_of(&w1), None);
        // A new incarnation's gap is no number of updates.
        assert_eq!(
            routes.apply(&delta("w1", 2, 1, 2, &["d"], &[])),
            Applied::Gap
        );
        assert_eq!(routes.lag_of(&w1).unwrap().gap(), None);
        routes.remove_member(&w1);
        assert_eq!(routes.lag_of(&w1), None);
    }

    #[test]
    fn a_part_out_of_turn_is_a_gap_and_changes_nothing() {
        let mut routes = ClusterRoutes::new();
        assert_eq!(routes.apply(&part("a", 2, 1, true, &["y"])), Applied::Gap);
        assert_eq!(
            routes.apply(&part("a", 2, 0, false, &["x"])),
            Applied::Changed
        );
        // A part of another version, or a skipped part, breaks the gathering.
        assert_eq!(routes.apply(&part("a", 3, 1, true, &["y"])), Applied::Gap);
        assert_eq!(routes.apply(&part("a", 2, 1, true, &["y"])), Applied::Gap);
        assert!(routes.routes_of(&id("a")).is_empty());
        assert_eq!(routes.version_of(&id("a")), None);
        // Started again from part 0, it completes.
        assert_eq!(
            routes.apply(&part("a", 2, 0, false, &["x"])),
            Applied::Changed
        );
        assert_eq!(
            routes.apply(&part("a", 2, 1, true, &["y"])),
            Applied::Changed
        );
        assert_eq!(routes.routes_of(&id("a")), [sub("x"), sub("y")]);
    }
}
