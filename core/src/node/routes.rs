//! Keeping the routing table the same on every node.
//!
//! The host reports its clients' subscriptions; only the first subscribe and
//! the last unsubscribe of a subscription change the cluster. Each node
//! numbers its own route updates. A worker sends them to its core
//! (`POST /routes`, one in flight, a snapshot after every registration or
//! when the core finds a gap); a core applies them and passes them on, to
//! the other cores with `/sync` (one request in flight per core, what changes
//! meanwhile coalesced: see `outbox`) and to its workers over their
//! streams. Every node applies its own updates to its own copy at once, so
//! `publish` can decide where a message goes without asking anyone.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use http::StatusCode;

use super::outbox::SyncPayload;
use super::{Node, Pending, Phase, TransportError};
use crate::id::{NodeId, Role};
use crate::routing::{Applied, Subscription, TopicError};
use crate::time::Now;
use crate::wire::messages::{RouteChange, RouteUpdate, RoutesRequest, RoutesResponse};
use crate::wire::{decode_response, encode_json, Endpoint};

/// This node's own subscriptions.
#[derive(Debug, Default)]
pub(super) struct LocalRoutes {
    /// How many local clients hold each subscription.
    counts: BTreeMap<Subscription, usize>,
    /// Number of this node's last route update.
    seq: u64,
    /// For a worker: what its core has confirmed, and at which update.
    confirmed: BTreeSet<Subscription>,
    confirmed_seq: u64,
    /// For a worker: the core must be sent a snapshot (new registration, or
    /// it found a gap).
    needs_snapshot: bool,
}

impl LocalRoutes {
    fn current(&self) -> BTreeSet<Subscription> {
        self.counts.keys().cloned().collect()
    }

    /// Number of distinct local subscriptions.
    pub(super) fn len(&self) -> usize {
        self.counts.len()
    }
}

impl Node {
    /// A local client subscribed to `filter` (`$share/{group}/{filter}` for a
    /// shared subscription). Returns `true` if this was the first local
    /// subscriber, which changes the cluster's routes.
    pub fn subscribe(&mut self, now: Now, filter: &str) -> Result<bool, TopicError> {
        let subscription = Subscription::parse(filter)?;
        let now = self.advance(now);
        let count = self
            .local_routes
            .counts
            .entry(subscription.clone())
            .or_insert(0);
        *count += 1;
        if *count > 1 {
            return Ok(false);
        }
        self.own_route_change(now, vec![subscription], vec![]);
        Ok(true)
    }

    /// A local client unsubscribed from `filter`. Returns `true` if it was
    /// the last local subscriber, which changes the cluster's routes, and
    /// `false` if others remain or none held it.
    pub fn unsubscribe(&mut self, now: Now, filter: &str) -> Result<bool, TopicError> {
        let subscription = Subscription::parse(filter)?;
        let now = self.advance(now);
        let Some(count) = self.local_routes.counts.get_mut(&subscription) else {
            return Ok(false);
        };
        *count -= 1;
        if *count > 0 {
            return Ok(false);
        }
        self.local_routes.counts.remove(&subscription);
        self.own_route_change(now, vec![], vec![subscription]);
        Ok(true)
    }

    /// Many local subscriptions at once, as a broker restoring its
    /// persistent sessions at start makes them: one route update for all,
    /// so the cluster hears of them in one delta instead of one per filter.
    /// Returns how many of them were the first local subscriber. Every
    /// filter is checked first: one invalid filter refuses the whole call
    /// and changes nothing.
    ///
    /// ```
    /// # use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
    /// # let config = Config::from_yaml_str("core: true\nnodeName: c1\nsecret: s3cret-s3cret\n").unwrap();
    /// # let now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1));
    /// # let mut node = Node::new(config, now, 1).unwrap();
    /// let sessions = ["sensors/1/#", "sensors/2/#", "sensors/1/#"];
    /// assert_eq!(node.subscribe_many(now, sessions)?, 2);
    /// assert!(node.subscribe_many(now, ["ok/#", "bad/#/x"]).is_err());
    /// assert_eq!(node.routes().len(), 2);
    /// # Ok::<(), mqtt_cluster_core::routing::TopicError>(())
    /// ```
    pub fn subscribe_many<'a>(
        &mut self,
        now: Now,
        filters: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize, TopicError> {
        let subscriptions = filters
            .into_iter()
            .map(Subscription::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.advance(now);
        let mut added = Vec::new();
        for subscription in subscriptions {
            let count = self
                .local_routes
                .counts
                .entry(subscription.clone())
                .or_insert(0);
            *count += 1;
            if *count == 1 {
                added.push(subscription);
            }
        }
        let first = added.len();
        if first > 0 {
            self.own_route_change(now, added, vec![]);
        }
        Ok(first)
    }

    /// Many local unsubscriptions at once: one route update for all.
    /// Returns how many of them were the last local subscriber. One invalid
    /// filter refuses the whole call and changes nothing.
    pub fn unsubscribe_many<'a>(
        &mut self,
        now: Now,
        filters: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize, TopicError> {
        let subscriptions = filters
            .into_iter()
            .map(Subscription::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.advance(now);
        let mut removed = Vec::new();
        for subscription in subscriptions {
            let Some(count) = self.local_routes.counts.get_mut(&subscription) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.local_routes.counts.remove(&subscription);
                removed.push(subscription);
            }
        }
        let last = removed.len();
        if last > 0 {
            self.own_route_change(now, vec![], removed);
        }
        Ok(last)
    }

    fn own_route_change(&mut self, now: Now, add: Vec<Subscription>, remove: Vec<Subscription>) {
        let prev = self.local_routes.seq;
        self.local_routes.seq += 1;
        let update = RouteUpdate {
            node: self.id.clone(),
            incarnation: self.incarnation(),
            seq: self.local_routes.seq,
            change: RouteChange::Delta { prev, add, remove },
        };
        if self.routes.apply(&update) == Applied::Gap {
            // Our own copy fell out of step (a new incarnation): rebuild it.
            let snapshot = self.own_snapshot();
            self.routes.apply(&snapshot);
        }
        match self.role {
            Role::Core => self.pass_on_routes(vec![update], None),
            Role::Worker => self.send_own_routes(now),
        }
        self.flush(now);
    }

    /// After a new incarnation, this node's routes are re-announced under it.
    pub(super) fn routes_after_reincarnation(&mut self) {
        let snapshot = self.own_snapshot();
        self.routes.apply(&snapshot);
        match self.role {
            Role::Core => self.pass_on_routes(vec![snapshot], None),
            Role::Worker => self.local_routes.needs_snapshot = true,
        }
    }

    fn own_snapshot(&self) -> RouteUpdate {
        RouteUpdate {
            node: self.id.clone(),
            incarnation: self.incarnation(),
            seq: self.local_routes.seq,
            change: RouteChange::Snapshot {
                routes: self.local_routes.current().into_iter().collect(),
            },
        }
    }

    /// A worker sends its core what the core has not confirmed yet.
    /// This worker's core acknowledged its routes as they are now. A
    /// snapshot re-announcing routes a core already confirmed (after a new
    /// registration) does not count: it changes nothing the core did not
    /// take before.
    pub(super) fn own_routes_in_step(&self) -> bool {
        let local = &self.local_routes;
        local.confirmed_seq == local.seq
    }

    pub(super) fn send_own_routes(&mut self, now: Now) {
        let Some(_) = self.worker.registered_core() else {
            return;
        };
        if self.phase != Phase::Running
            || self.is_pending(|p| matches!(p, Pending::WorkerRoutes { .. }))
        {
            return;
        }
        let local = &self.local_routes;
        let in_step = local.confirmed_seq == local.seq && !local.needs_snapshot;
        if in_step {
            return;
        }
        let current = local.current();
        let update = if local.needs_snapshot {
            self.own_snapshot()
        } else {
            RouteUpdate {
                node: self.id.clone(),
                incarnation: self.incarnation(),
                seq: local.seq,
                change: RouteChange::Delta {
                    prev: local.confirmed_seq,
                    add: current.difference(&local.confirmed).cloned().collect(),
                    remove: local.confirmed.difference(&current).cloned().collect(),
                },
            }
        };
        let pending = Pending::WorkerRoutes {
            seq: update.seq,
            routes: current,
        };
        self.send_to_core(
            now,
            Endpoint::Routes,
            encode_json(&RoutesRequest { update }),
            pending,
        );
    }

    pub(super) fn on_worker_routes(
        &mut self,
        now: Now,
        seq: u64,
        routes: BTreeSet<Subscription>,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let Ok(response) = result else { return };
        if response.status() == StatusCode::CONFLICT {
            return self.worker_reregister(now);
        }
        match decode_response::<RoutesResponse>(&response, self.config.max_body_size) {
            Ok(answer) if answer.resync => self.local_routes.needs_snapshot = true,
            Ok(_) => {
                self.local_routes.confirmed = routes;
                self.local_routes.confirmed_seq = seq;
                self.local_routes.needs_snapshot = false;
            }
            Err(error) => self.count_bad_response(error.kind()),
        }
        self.send_own_routes(now);
    }

    /// After a registration the core may hold nothing, or an old version.
    pub(super) fn routes_after_registration(&mut self, now: Now) {
        if self.local_routes.seq > 0 {
            self.local_routes.needs_snapshot = true;
            self.send_own_routes(now);
        }
    }

    /// Applies route updates received from a peer. Returns the members whose
    /// updates left a gap (they need a snapshot) and passes on what changed.
    pub(super) fn apply_route_updates(
        &mut self,
        updates: Vec<RouteUpdate>,
        from: Option<&NodeId>,
    ) -> Vec<NodeId> {
        let mut gaps = Vec::new();
        let mut changed = Vec::new();
        for update in updates {
            if update.node == self.id {
                continue;
            }
            // Routes of a member this node knows to be gone in that
            // incarnation must not come back, nor those of a life the
            // member has left behind: a snapshot that spent long on the way
            // would otherwise bring a restarted member's old routes back.
            let stale = self.membership.get(&update.node).is_some_and(|r| {
                r.incarnation > update.incarnation
                    || (r.incarnation == update.incarnation && r.state.is_gone())
            });
            if stale {
                continue;
            }
            match self.routes.apply(&update) {
                // A snapshot in parts is passed on whole once its last part
                // is in; each way on pages it again to fit.
                Applied::Changed => match &update.change {
                    RouteChange::SnapshotPart { last: false, .. } => {}
                    RouteChange::SnapshotPart { last: true, .. } => {
                        changed.extend(self.routes.snapshot_of(&update.node));
                    }
                    _ => changed.push(update),
                },
                Applied::Gap => gaps.push(update.node.clone()),
                Applied::Duplicate | Applied::Stale => {}
            }
        }
        if !changed.is_empty() {
            self.pass_on_routes(changed, from);
        }
        gaps
    }

    /// A core passes route updates on: to its workers' streams and, for the
    /// updates it is the source of (its own and its workers'), to the other
    /// cores.
    pub(super) fn pass_on_routes(&mut self, updates: Vec<RouteUpdate>, from: Option<&NodeId>) {
        if self.role != Role::Core {
            return;
        }
        let streams: Vec<_> = self.core.streams().collect();
        if !streams.is_empty() {
            self.push_route_frames(&streams, updates.clone());
        }
        let from_core =
            from.is_some_and(|n| self.membership.get(n).is_some_and(|r| r.role == Role::Core));
        if !from_core {
            self.outgoing_routes.extend(updates);
        }
    }

    /// Queues the route updates gathered during one input for every other
    /// core, and sends each peer whatever may go now.
    pub(super) fn flush_route_sync(&mut self, now: Now) {
        if !self.outgoing_routes.is_empty() {
            let routes = std::mem::take(&mut self.outgoing_routes);
            self.log_own_route_changes(&routes);
            let peers: Vec<NodeId> = self.membership.peer_cores().map(|r| r.id.clone()).collect();
            for peer in peers {
                self.sync_outbox.push_routes(&peer, routes.iter().cloned());
            }
        }
        for peer in self.sync_outbox.waiting() {
            // A core declared dead hears nothing until it registers again.
            let live = self
                .membership
                .get(&peer)
                .is_some_and(|r| !r.state.is_gone());
            if !live {
                continue;
            }
            if let Some(payload) = self.sync_outbox.take(&peer) {
                self.send_sync(now, &peer, payload);
            }
        }
    }

    /// Queues snapshots of the named members for a peer that found gaps;
    /// each replaces the deltas of its member still waiting.
    pub(super) fn resend_route_snapshots(&mut self, peer: &NodeId, nodes: &[NodeId]) {
        let snapshots: Vec<RouteUpdate> = nodes
            .iter()
            .filter_map(|n| self.routes.snapshot_of(n))
            .collect();
        if !snapshots.is_empty() {
            self.sync_outbox.push_routes(peer, snapshots);
        }
    }

    /// The routes of members that died or left disappear at once, and so
    /// do those of an older incarnation once a member comes back with a new
    /// one (a restarted node starts with no routes; one that only refuted
    /// its death announces its routes again under the new incarnation).
    pub(super) fn forget_routes_of_gone(
        &mut self,
        records: &[crate::wire::messages::MemberRecord],
    ) {
        let me = self.id.clone();
        for record in records.iter().filter(|r| r.id != me) {
            let Some((held, _)) = self.routes.version_of(&record.id) else {
                continue;
            };
            let outdated = held < record.incarnation;
            let gone = record.state.is_gone() && held <= record.incarnation;
            if outdated || gone {
                self.routes.remove_member(&record.id);
            }
            if outdated && !record.state.is_gone() {
                // The events this change raised come first, as the host
                // gets them.
                self.follow_own_events();
                self.settling
                    .routes_replaced(&record.id, record.incarnation, self.latest.instant);
            }
            if gone && !outdated && self.role == Role::Core {
                self.routes_dropped(&record.id, record.incarnation);
            }
        }
    }

    /// A worker's hello: the stream's complete picture of the routes.
    pub(super) fn replace_routes(&mut self, snapshots: Vec<RouteUpdate>) -> bool {
        let listed: BTreeSet<NodeId> = snapshots.iter().map(|s| s.node.clone()).collect();
        let stale: Vec<NodeId> = self
            .routes
            .versions()
            .into_iter()
            .map(|v| v.node)
            .filter(|n| *n != self.id && !listed.contains(n))
            .collect();
        for node in stale {
            self.routes.remove_member(&node);
        }
        self.apply_route_updates(snapshots, None).is_empty()
    }

    pub(super) fn serve_routes_update(&mut self, request: RoutesRequest) -> RoutesResponse {
        let node = request.update.node.clone();
        let gaps = self.apply_route_updates(vec![request.update], Some(&node));
        RoutesResponse {
            seq: self.routes.version_of(&node).map_or(0, |(_, seq)| seq),
            resync: !gaps.is_empty(),
        }
    }

    /// Sends one coalesced `/sync` to a peer core, in as many pages as it
    /// takes for each to fit one body; the outbox counts them as one request
    /// in flight until every page is answered.
    fn send_sync(&mut self, now: Now, peer: &NodeId, payload: SyncPayload) {
        let snapshots = payload.snapshots() as u64;
        let pages = self.send_sync_pages(now, peer, payload);
        if pages == 0 {
            // Nowhere to send it yet: it waits for the next tick.
            self.sync_outbox.answered(peer, false);
            return;
        }
        self.stats.route_snapshots_sent += snapshots;
        self.sync_outbox.pages_sent(peer, pages);
    }
}
