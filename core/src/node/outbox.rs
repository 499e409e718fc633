//! What a core has yet to tell each other core with `/sync`.
//!
//! A core sends each peer core one `/sync` at a time. Whatever changes while
//! one is in flight waits here and is coalesced: the latest record of each
//! member, and each member's route updates folded into as few deltas as the
//! size cap allows. A broker that re-subscribes a hundred thousand sessions
//! at start therefore makes a few dozen requests per peer, not a hundred
//! thousand, and since a peer gets one request from this core at a time,
//! deltas cannot overtake each other and look like gaps (each gap costs a
//! snapshot of the member's routes).
//!
//! A request that fails goes back to the front of the queue, and the peer's
//! outbox holds until the next heartbeat tick, so a peer that is down costs
//! one attempt per tick instead of one per change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::id::{Incarnation, NodeId};
use crate::routing::Subscription;
use crate::wire::messages::{MemberRecord, RouteChange, RouteUpdate};

/// How many route changes (filters added or removed) one `/sync` carries at
/// most, unless a single snapshot is larger. Keeps bodies well under the
/// default `maxBodySize` for ordinary filters.
pub(super) const MAX_ROUTE_CHANGES_PER_SYNC: usize = 4096;

/// The pending syncs of every peer core.
#[derive(Debug, Default)]
pub(super) struct SyncOutbox {
    peers: BTreeMap<NodeId, PeerOutbox>,
}

/// What waits for one peer.
#[derive(Debug, Default)]
struct PeerOutbox {
    /// The latest record of each member to tell.
    members: BTreeMap<NodeId, MemberRecord>,
    /// Route updates per member, oldest first.
    routes: BTreeMap<NodeId, VecDeque<Queued>>,
    /// The request in flight, kept to requeue if it fails.
    in_flight: Option<SyncPayload>,
    /// Pages of the request in flight not yet answered: a payload larger
    /// than one body goes in several.
    pages_left: usize,
    /// A page of the request in flight failed: the whole goes again.
    page_failed: bool,
    /// A request failed: wait for the next tick.
    held: bool,
    /// How far this core's log of its own route changes is fed to the
    /// peer: every change up to here is queued here, in flight, or was
    /// taken by the peer, in the incarnation named here (a peer that
    /// restarted took nothing). `None` until a catch-up set it, and again
    /// once the outbox is forgotten.
    fed: Option<(Incarnation, u64)>,
}

/// A route update waiting, with sets so that merging is cheap.
#[derive(Debug, Clone)]
struct Queued {
    incarnation: Incarnation,
    seq: u64,
    /// `None` for a snapshot (`add` is then the whole list).
    prev: Option<u64>,
    add: BTreeSet<Subscription>,
    remove: BTreeSet<Subscription>,
}

impl Queued {
    /// `None` for a part of a snapshot: parts exist only on the wire, cut
    /// when a sync is paged; what is queued is always whole.
    fn from_update(update: RouteUpdate) -> Option<Queued> {
        Some(match update.change {
            RouteChange::SnapshotPart { .. } => return None,
            RouteChange::Delta { prev, add, remove } => Queued {
                incarnation: update.incarnation,
                seq: update.seq,
                prev: Some(prev),
                add: add.into_iter().collect(),
                remove: remove.into_iter().collect(),
            },
            RouteChange::Snapshot { routes } => Queued {
                incarnation: update.incarnation,
                seq: update.seq,
                prev: None,
                add: routes.into_iter().collect(),
                remove: BTreeSet::new(),
            },
        })
    }

    fn to_update(&self, node: &NodeId) -> RouteUpdate {
        let change = match self.prev {
            Some(prev) => RouteChange::Delta {
                prev,
                add: self.add.iter().cloned().collect(),
                remove: self.remove.iter().cloned().collect(),
            },
            None => RouteChange::Snapshot {
                routes: self.add.iter().cloned().collect(),
            },
        };
        RouteUpdate {
            node: node.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            change,
        }
    }

    fn size(&self) -> usize {
        self.add.len() + self.remove.len()
    }

    /// Folds `next`, a delta that follows this update, into it. Applying
    /// the result (removals, then additions) gives what applying both in
    /// turn gives.
    fn absorb(&mut self, next: Queued) {
        for route in &next.remove {
            self.add.remove(route);
        }
        match self.prev {
            // A snapshot lists what is held: removed routes just go.
            None => {}
            Some(_) => {
                self.remove.extend(next.remove);
                for route in &next.add {
                    self.remove.remove(route);
                }
            }
        }
        self.add.extend(next.add);
        self.seq = next.seq;
    }
}

/// One `/sync` body's contents.
#[derive(Debug, Clone, Default)]
pub(super) struct SyncPayload {
    /// Member records.
    pub(super) members: Vec<MemberRecord>,
    /// Route updates, at most one per member.
    pub(super) routes: Vec<RouteUpdate>,
    /// The position in the sender's log of its own route changes that the
    /// peer, in the incarnation named, holds once it took these (set only
    /// when nothing else waits).
    pub(super) routes_at: Option<(Incarnation, u64)>,
}

impl SyncPayload {
    /// Route snapshots it carries.
    pub(super) fn snapshots(&self) -> usize {
        self.routes
            .iter()
            .filter(|u| matches!(u.change, RouteChange::Snapshot { .. }))
            .count()
    }
}

impl SyncOutbox {
    /// Queues member records for `peer`; a later record of a member replaces
    /// an earlier one still waiting.
    pub(super) fn push_members(
        &mut self,
        peer: &NodeId,
        records: impl IntoIterator<Item = MemberRecord>,
    ) {
        let outbox = self.peers.entry(peer.clone()).or_default();
        for record in records {
            outbox.members.insert(record.id.clone(), record);
        }
    }

    /// Queues route updates for `peer`, merged into those waiting.
    pub(super) fn push_routes(
        &mut self,
        peer: &NodeId,
        updates: impl IntoIterator<Item = RouteUpdate>,
    ) {
        let outbox = self.peers.entry(peer.clone()).or_default();
        for update in updates {
            let node = update.node.clone();
            let Some(queued) = Queued::from_update(update) else {
                continue;
            };
            let queue = outbox.routes.entry(node).or_default();
            push_route(queue, queued);
        }
    }

    /// The log of this core's own route changes went from `from` to `to`,
    /// and the changes were queued for `peer`: if it was fed up to `from`,
    /// it is now up to `to`.
    pub(super) fn fed_on(&mut self, peer: &NodeId, incarnation: Incarnation, from: u64, to: u64) {
        if let Some(outbox) = self.peers.get_mut(peer) {
            if outbox.fed == Some((incarnation, from)) {
                outbox.fed = Some((incarnation, to));
            }
        }
    }

    /// Every change of this core's route log up to `to` is queued for
    /// `peer` (in `incarnation`), in flight, or taken.
    pub(super) fn fed_to(&mut self, peer: &NodeId, incarnation: Incarnation, to: u64) {
        self.peers.entry(peer.clone()).or_default().fed = Some((incarnation, to));
    }

    /// How far `peer`, in `incarnation`, is fed ([`SyncOutbox::fed_to`]).
    pub(super) fn fed(&self, peer: &NodeId, incarnation: Incarnation) -> Option<u64> {
        self.peers
            .get(peer)
            .and_then(|o| o.fed)
            .filter(|(i, _)| *i == incarnation)
            .map(|(_, v)| v)
    }

    /// Whether `peer` is waiting for, or being sent, routes of `member`
    /// that reach at least `version`.
    pub(super) fn covers(
        &self,
        peer: &NodeId,
        member: &NodeId,
        version: (Incarnation, u64),
    ) -> bool {
        let Some(outbox) = self.peers.get(peer) else {
            return false;
        };
        let queued = outbox
            .routes
            .get(member)
            .and_then(|q| q.back())
            .is_some_and(|q| (q.incarnation, q.seq) >= version);
        let sent = outbox.in_flight.as_ref().is_some_and(|p| {
            p.routes
                .iter()
                .any(|u| u.node == *member && (u.incarnation, u.seq) >= version)
        });
        queued || sent
    }

    /// The next request for `peer`, if one may go now: nothing in flight,
    /// not held, something waiting. It counts as in flight until
    /// [`SyncOutbox::answered`].
    pub(super) fn take(&mut self, peer: &NodeId) -> Option<SyncPayload> {
        let outbox = self.peers.get_mut(peer)?;
        if outbox.in_flight.is_some() || outbox.held {
            return None;
        }
        if outbox.members.is_empty() && outbox.routes.is_empty() {
            return None;
        }
        let members: Vec<MemberRecord> =
            std::mem::take(&mut outbox.members).into_values().collect();
        let mut routes = Vec::new();
        let mut changes = 0;
        let mut emptied = Vec::new();
        for (node, queue) in outbox.routes.iter_mut() {
            let Some(front) = queue.front() else {
                emptied.push(node.clone());
                continue;
            };
            if !routes.is_empty() && changes + front.size() > MAX_ROUTE_CHANGES_PER_SYNC {
                break;
            }
            changes += front.size();
            if let Some(front) = queue.pop_front() {
                routes.push(front.to_update(node));
            }
            if queue.is_empty() {
                emptied.push(node.clone());
            }
        }
        for node in emptied {
            outbox.routes.remove(&node);
        }
        let routes_at = outbox.fed.filter(|_| outbox.routes.is_empty());
        let payload = SyncPayload {
            members,
            routes,
            routes_at,
        };
        outbox.in_flight = Some(payload.clone());
        Some(payload)
    }

    /// The request in flight to `peer` was answered. A failed one goes
    /// back in front of what waits, and the peer is held until
    /// [`SyncOutbox::release`]. Returns the failed payload.
    pub(super) fn answered(&mut self, peer: &NodeId, ok: bool) -> Option<SyncPayload> {
        let outbox = self.peers.get_mut(peer)?;
        outbox.in_flight.as_ref()?;
        if outbox.pages_left > 1 {
            outbox.pages_left -= 1;
            outbox.page_failed |= !ok;
            return None;
        }
        let ok = ok && !std::mem::take(&mut outbox.page_failed);
        outbox.pages_left = 0;
        let payload = outbox.in_flight.take()?;
        if ok {
            return None;
        }
        outbox.held = true;
        for record in &payload.members {
            // A record queued since is newer.
            outbox
                .members
                .entry(record.id.clone())
                .or_insert_with(|| record.clone());
        }
        for update in &payload.routes {
            let queue = outbox.routes.entry(update.node.clone()).or_default();
            let superseded = queue
                .front()
                .is_some_and(|q| q.prev.is_none() && q.incarnation >= update.incarnation);
            if let Some(queued) = Queued::from_update(update.clone()).filter(|_| !superseded) {
                queue.push_front(queued);
            }
        }
        Some(payload)
    }

    /// The request in flight to `peer` went in `pages` bodies, each
    /// answered on its own; it is answered once all of them are.
    pub(super) fn pages_sent(&mut self, peer: &NodeId, pages: usize) {
        if let Some(outbox) = self.peers.get_mut(peer) {
            outbox.pages_left = pages;
            outbox.page_failed = false;
        }
    }

    /// The request in flight to `peer`, while some of its pages are still
    /// unanswered.
    pub(super) fn sending(&self, peer: &NodeId) -> Option<&SyncPayload> {
        self.peers.get(peer)?.in_flight.as_ref()
    }

    /// Lets held peers send again (every heartbeat tick).
    pub(super) fn release(&mut self) {
        for outbox in self.peers.values_mut() {
            outbox.held = false;
        }
    }

    /// Everything this core's route log holds up to `end` was taken by
    /// `peer` (in `incarnation`): fed that far, and nothing waits, is in
    /// flight or failed.
    pub(super) fn delivered_through(
        &self,
        peer: &NodeId,
        incarnation: Incarnation,
        end: u64,
    ) -> bool {
        self.peers.get(peer).is_some_and(|o| {
            o.fed == Some((incarnation, end))
                && o.members.is_empty()
                && o.routes.is_empty()
                && o.in_flight.is_none()
                && !o.held
        })
    }

    /// Peers with something waiting.
    pub(super) fn waiting(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, o)| !o.members.is_empty() || !o.routes.is_empty())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Forgets the outboxes of peers `keep` rejects.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        self.peers.retain(|peer, _| keep(peer));
    }

    /// Syncs in flight to `peer` (zero or one).
    #[cfg(test)]
    pub(super) fn in_flight(&self, peer: &NodeId) -> usize {
        self.peers
            .get(peer)
            .map_or(0, |o| usize::from(o.in_flight.is_some()))
    }

    /// Peers with an outbox.
    pub(super) fn len(&self) -> usize {
        self.peers.len()
    }
}

/// Adds `next` behind what waits for one member, folding it into the last
/// update when it follows on from it.
fn push_route(queue: &mut VecDeque<Queued>, next: Queued) {
    if next.prev.is_none() {
        // A snapshot is taken from the current table: it supersedes
        // everything waiting of the same or an older incarnation.
        queue.retain(|q| q.incarnation > next.incarnation);
        queue.push_back(next);
        return;
    }
    if let Some(last) = queue.back_mut() {
        let follows = last.incarnation == next.incarnation && next.prev == Some(last.seq);
        if follows && last.size() + next.size() <= MAX_ROUTE_CHANGES_PER_SYNC {
            last.absorb(next);
            return;
        }
    }
    queue.push_back(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn sub(filter: &str) -> Subscription {
        Subscription::parse(filter).unwrap()
    }

    fn delta(prev: u64, seq: u64, add: &[&str], remove: &[&str]) -> RouteUpdate {
        RouteUpdate {
            node: node("w"),
            incarnation: Incarnation(1),
            seq,
            change: RouteChange::Delta {
                prev,
                add: add.iter().map(|f| sub(f)).collect(),
                remove: remove.iter().map(|f| sub(f)).collect(),
            },
        }
    }

    /// Applies updates to a set the way the routing table does.
    fn apply(held: &mut BTreeSet<Subscription>, update: &RouteUpdate) {
        match &update.change {
            RouteChange::Delta { add, remove, .. } => {
                for r in remove {
                    held.remove(r);
                }
                held.extend(add.iter().cloned());
            }
            RouteChange::Snapshot { routes } => *held = routes.iter().cloned().collect(),
            RouteChange::SnapshotPart { .. } => unreachable!("the outbox queues whole snapshots"),
        }
    }

    #[test]
    fn consecutive_deltas_become_one_that_leaves_the_same_routes() {
        let updates = [
            delta(0, 1, &["a", "b"], &[]),
            delta(1, 2, &["c"], &["a"]),
            delta(2, 3, &["a"], &["b"]),
            delta(3, 4, &[], &["c", "z"]),
        ];
        let mut one_by_one = BTreeSet::from([sub("z")]);
        for u in &updates {
            apply(&mut one_by_one, u);
        }
        let mut outbox = SyncOutbox::default();
        let peer = node("c2");
        outbox.push_routes(&peer, updates.clone());
        let payload = outbox.take(&peer).unwrap();
        assert_eq!(payload.routes.len(), 1);
        let merged = &payload.routes[0];
        assert_eq!(merged.seq, 4);
        assert!(matches!(merged.change, RouteChange::Delta { prev: 0, .. }));
        let mut at_once = BTreeSet::from([sub("z")]);
        apply(&mut at_once, merged);
        assert_eq!(at_once, one_by_one);
    }

    #[test]
    fn one_request_in_flight_and_a_failed_one_goes_first_after_the_tick() {
        let mut outbox = SyncOutbox::default();
        let peer = node("c2");
        outbox.push_routes(&peer, [delta(0, 1, &["a"], &[])]);
        let first = outbox.take(&peer).unwrap();
        outbox.push_routes(&peer, [delta(1, 2, &["b"], &[])]);
        assert!(outbox.take(&peer).is_none(), "one in flight");
        assert_eq!(outbox.in_flight(&peer), 1);
        outbox.answered(&peer, false);
        assert!(outbox.take(&peer).is_none(), "held until the tick");
        outbox.release();
        let again = outbox.take(&peer).unwrap();
        assert_eq!(
            again.routes, first.routes,
            "the failed delta first, unmerged"
        );
        outbox.answered(&peer, true);
        let next = outbox.take(&peer).unwrap();
        assert_eq!(next.routes[0].seq, 2);
    }

    #[test]
    fn a_snapshot_replaces_the_deltas_waiting() {
        let mut outbox = SyncOutbox::default();
        let peer = node("c2");
        outbox.push_routes(&peer, [delta(0, 1, &["a"], &[]), delta(1, 2, &["b"], &[])]);
        let snapshot = RouteUpdate {
            node: node("w"),
            incarnation: Incarnation(1),
            seq: 2,
            change: RouteChange::Snapshot {
                routes: vec![sub("a"), sub("b")],
            },
        };
        outbox.push_routes(&peer, [snapshot.clone()]);
        assert!(outbox.covers(&peer, &node("w"), (Incarnation(1), 2)));
        let payload = outbox.take(&peer).unwrap();
        assert_eq!(payload.routes, vec![snapshot]);
        assert_eq!(payload.snapshots(), 1);
    }

    #[test]
    fn large_changes_are_cut_at_the_cap() {
        let mut outbox = SyncOutbox::default();
        let peer = node("c2");
        let total = MAX_ROUTE_CHANGES_PER_SYNC * 2 + 10;
        let filters: Vec<String> = (0..total).map(|i| format!("t/{i}")).collect();
        for (i, f) in filters.iter().enumerate() {
            let seq = i as u64 + 1;
            outbox.push_routes(&peer, [delta(seq - 1, seq, &[f], &[])]);
        }
        let mut held = BTreeSet::new();
        let mut requests = 0;
        while let Some(payload) = outbox.take(&peer) {
            requests += 1;
            let changes: usize = payload
                .routes
                .iter()
                .map(|u| match &u.change {
                    RouteChange::Delta { add, remove, .. } => add.len() + remove.len(),
                    RouteChange::Snapshot { routes } => routes.len(),
                    RouteChange::SnapshotPart { routes, .. } => routes.len(),
                })
                .sum();
            assert!(changes <= MAX_ROUTE_CHANGES_PER_SYNC);
            for u in &payload.routes {
                apply(&mut held, u);
            }
            outbox.answered(&peer, true);
        }
        assert_eq!(requests, 3);
        assert_eq!(held.len(), total);
    }
}
