//! Catching peers up on the member list with the changes they lack, not the
//! whole list.
//!
//! Every node numbers the changes it installs in its member list
//! ([`crate::membership::Membership::version`]). A heartbeat quotes how far
//! the sender holds the receiver's log ([`LogPosition`]); when their digests
//! differ the receiver answers with the records changed after that position,
//! whose size depends on how much changed, not on the cluster. A core that
//! still holds something the peer lacks pushes its own changes after the
//! position the peer last quoted to it. Only a node that quotes no usable
//! position gets the whole list (it is new, it fell behind a record this
//! node has since forgotten, or this node restarted): that is a resync, and
//! [`Stats::member_resyncs`](super::Stats::member_resyncs) counts it.
//!
//! Why positions and not a version per member (scuttlebutt): every record
//! already carries its own order (incarnation and stamp), and merging is
//! idempotent, so a peer only needs to know where to start; one number per
//! pair of nodes does that.

use std::collections::BTreeMap;

use super::Node;
use crate::id::{Incarnation, NodeId, Role};
use crate::wire::messages::{LogPosition, MemberRecord};

/// Positions in other nodes' logs, both ways.
#[derive(Debug, Default)]
pub(super) struct MemberLogs {
    /// Per peer: the position in its log up to which this node merged
    /// every change (a worker holds one, for its core).
    held: BTreeMap<NodeId, LogPosition>,
    /// Per peer: the position in `held` it has heard this node quote (an
    /// answered heartbeat carried it). Heartbeats quote a position only
    /// when it moved past this one, which in a quiet cluster is never.
    told: BTreeMap<NodeId, LogPosition>,
    /// Per peer: how far it last said it holds this node's log.
    quoted: BTreeMap<NodeId, LogPosition>,
    /// A worker's core and that core's incarnation, for the positions its
    /// stream frames carry.
    stream_core: Option<(NodeId, Incarnation)>,
    /// Per peer core: the two digests of the last heartbeat answers that
    /// disagreed after merging, and how many answers in a row they stayed
    /// the same (see [`Node::push_missing_members`]).
    stuck: BTreeMap<NodeId, (String, String, u8)>,
}

/// Answers in a row that disagree in exactly the same way before a core
/// gives up on changes and sends its peer the whole list.
const STUCK_ANSWERS: u8 = 3;

impl MemberLogs {
    /// Forgets the positions of nodes `known` no longer names.
    pub(super) fn retain(&mut self, known: impl Fn(&NodeId) -> bool) {
        self.held.retain(|n, _| known(n));
        self.told.retain(|n, _| known(n));
        self.quoted.retain(|n, _| known(n));
        self.stuck.retain(|n, _| known(n));
    }

    /// How many peers positions are kept for (for the churn bounds).
    pub(super) fn len(&self) -> usize {
        self.held
            .len()
            .max(self.told.len())
            .max(self.quoted.len())
            .max(self.stuck.len())
    }
}

/// What a heartbeat answer carries of the member list.
pub(super) struct MemberAnswer {
    pub(super) members: Option<Vec<MemberRecord>>,
    pub(super) member_changes: Option<Vec<MemberRecord>>,
    pub(super) members_at: Option<LogPosition>,
}

impl Node {
    /// This node's current position in its own log.
    pub(super) fn member_position(&self) -> LogPosition {
        LogPosition {
            incarnation: self.incarnation(),
            version: self.membership.version(),
        }
    }

    /// The position to quote in a heartbeat to `peer`: none if the peer
    /// already heard it.
    pub(super) fn members_seen(&self, peer: &NodeId) -> Option<LogPosition> {
        let held = self.member_logs.held.get(peer)?;
        (self.member_logs.told.get(peer) != Some(held)).then_some(*held)
    }

    /// `peer` answered a heartbeat that quoted `seen`: it knows it now.
    pub(super) fn members_seen_heard(&mut self, peer: &NodeId, seen: Option<LogPosition>) {
        if let Some(seen) = seen {
            self.member_logs.told.insert(peer.clone(), seen);
        }
    }

    /// This node merged what `peer` sent, up to `at`.
    pub(super) fn members_reached(&mut self, peer: &NodeId, at: Option<LogPosition>) {
        match at {
            Some(at) => {
                self.member_logs.held.insert(peer.clone(), at);
            }
            None => {
                self.member_logs.held.remove(peer);
            }
        }
    }

    /// A worker registered with `core`: positions in other cores' logs mean
    /// nothing to it any more.
    pub(super) fn members_reached_only(
        &mut self,
        core: &NodeId,
        incarnation: Incarnation,
        at: Option<u64>,
    ) {
        self.member_logs.held.clear();
        self.member_logs.told.clear();
        self.member_logs.stream_core = Some((core.clone(), incarnation));
        let at = at.map(|version| LogPosition {
            incarnation,
            version,
        });
        self.members_reached(core, at);
    }

    /// A worker's stream frame from its core carried `id`: the position in
    /// the core's log the stream has brought it to.
    pub(super) fn members_streamed_to(&mut self, id: Option<&str>) {
        let Some(version) = id.and_then(|id| id.parse::<u64>().ok()) else {
            return;
        };
        if let Some((core, incarnation)) = self.member_logs.stream_core.clone() {
            let at = LogPosition {
                incarnation,
                version,
            };
            self.members_reached(&core, Some(at));
        }
    }

    /// Where a position quoted by `sender` (now, or earlier if `seen` is
    /// none) starts in this node's log, if it is one of this incarnation's.
    fn own_version(&mut self, sender: &NodeId, seen: Option<LogPosition>) -> Option<u64> {
        if let Some(seen) = seen {
            self.member_logs.quoted.insert(sender.clone(), seen);
        }
        self.member_logs
            .quoted
            .get(sender)
            .filter(|p| p.incarnation == self.incarnation())
            .map(|p| p.version)
    }

    /// The member list part of the answer to a heartbeat from `sender`
    /// (`role`), which quoted `seen` and holds a list with digest `theirs`.
    pub(super) fn member_answer(
        &mut self,
        sender: &NodeId,
        role: Role,
        seen: Option<LogPosition>,
        theirs: &str,
    ) -> MemberAnswer {
        let since = self.own_version(sender, seen);
        // Sent only when it moved: most heartbeats of a quiet cluster then
        // carry no position back.
        let current = self.member_position();
        let at = Some(current).filter(|_| since != Some(current.version));
        if self.membership.digest() == theirs {
            return MemberAnswer {
                members: None,
                member_changes: None,
                members_at: at,
            };
        }
        // A worker this core streams to gets every change on its stream, in
        // order: behind the core's position, what it lacks is on its way,
        // and sending it again here would double what forming or churning
        // clusters send. (Caught up and still different, it is repaired
        // below.)
        let streamed = role == Role::Worker && self.core.stream_of(sender).is_some();
        if streamed && since.is_some_and(|v| v < current.version) {
            return MemberAnswer {
                members: None,
                member_changes: None,
                members_at: None,
            };
        }
        let changes = since.and_then(|v| self.membership.changes_since(v));
        match changes {
            // A worker mirrors its core: if it holds every change and still
            // differs, it went wrong somewhere, and only the whole list
            // repairs that. A core may just hold more than this one.
            Some(changes) if !changes.is_empty() || role == Role::Core => MemberAnswer {
                members: None,
                member_changes: Some(changes),
                members_at: at,
            },
            _ => {
                self.stats.member_resyncs += 1;
                MemberAnswer {
                    members: Some(self.membership.snapshot()),
                    member_changes: None,
                    members_at: at,
                }
            }
        }
    }

    /// A peer core's answer agreed with this node's list.
    pub(super) fn members_agree_with(&mut self, peer: &NodeId) {
        self.member_logs.stuck.remove(peer);
    }

    /// After merging a peer core's heartbeat answer (`theirs` its digest),
    /// this node's digest still differs from the peer's: the peer lacks
    /// something. Pushes the changes after the position the peer last
    /// quoted, or the whole list.
    ///
    /// A peer can lack a record older than that position: it forgot the
    /// member's tombstone while this node never heard of the death and
    /// still holds the member alive. No change brings it that record, and
    /// the two digests then stay exactly as they were, answer after answer
    /// (while changes still flow they move); after [`STUCK_ANSWERS`] such
    /// answers the whole list goes, counted as a resync.
    pub(super) fn push_missing_members(&mut self, peer: &NodeId, theirs: &str) {
        let ours = self.membership.digest();
        let same = match self.member_logs.stuck.get_mut(peer) {
            Some((a, b, count)) if *a == ours && *b == theirs => {
                *count = count.saturating_add(1);
                *count
            }
            _ => {
                self.member_logs
                    .stuck
                    .insert(peer.clone(), (ours, theirs.to_owned(), 1));
                1
            }
        };
        let quoted = self.member_logs.quoted.get(peer).copied();
        let changes = quoted
            .filter(|p| p.incarnation == self.incarnation())
            .filter(|_| same < STUCK_ANSWERS)
            .and_then(|p| self.membership.changes_since(p.version));
        if same >= STUCK_ANSWERS {
            self.member_logs.stuck.remove(peer);
        }
        let records = match changes {
            Some(changes) => changes,
            None => {
                self.stats.member_resyncs += 1;
                self.membership.snapshot()
            }
        };
        self.sync_outbox.push_members(peer, records);
    }
}

// ----- routes -----
//
// Each core speaks for the routes of its own subscriptions and its workers'
// and pushes their changes to the other cores with `/sync`. It numbers those
// changes in a log of its own; a sync that leaves nothing waiting behind it
// carries the position it brings the peer to (`routesAt`), and the peer's
// heartbeat answers say how far it holds the log (`routesHeld`). A core
// whose peer holds less than it has sent, and for which nothing is on its
// way, pushes snapshots of the members changed after that position: the
// repair costs what changed, not the routing table. A peer that holds
// nothing of this incarnation's log gets every member's snapshot, counted
// in [`Stats::route_resyncs`](super::Stats::route_resyncs).

/// A core's log of its own route changes: which members it spoke for last
/// at which position.
#[derive(Debug, Default)]
pub(super) struct RouteLog {
    version: u64,
    by_version: BTreeMap<u64, NodeId>,
    at: BTreeMap<NodeId, u64>,
    /// Per peer core: how far this node holds that core's log, from the
    /// syncs it took whole.
    held: BTreeMap<NodeId, LogPosition>,
    /// Members whose routes this node dropped when they died or left, by
    /// incarnation: should one come back in that same incarnation (its
    /// home core let it in again before hearing of its death), no change
    /// in any log brings its routes back, so this node asks for them.
    dropped: BTreeMap<NodeId, Incarnation>,
    /// Members revived that way whose routes this node asks their home
    /// core for, in its heartbeat answers, until they arrive.
    wanted: BTreeMap<NodeId, Incarnation>,
    /// Live workers whose home is this core, as the member list last said.
    ours: std::collections::BTreeSet<NodeId>,
}

impl RouteLog {
    /// The log's last position.
    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// Logs a change of `member`'s routes.
    fn log(&mut self, member: &NodeId) {
        self.version += 1;
        if let Some(old) = self.at.insert(member.clone(), self.version) {
            self.by_version.remove(&old);
        }
        self.by_version.insert(self.version, member.clone());
    }

    /// Members changed after `version`, oldest change first; every member
    /// ever logged for `None`.
    fn changed_after(&self, version: Option<u64>) -> Vec<NodeId> {
        let from = version.map_or(0, |v| v.saturating_add(1));
        self.by_version
            .range(from..)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Forgets members and peers `known` no longer names.
    pub(super) fn retain(&mut self, known: impl Fn(&NodeId) -> bool) {
        let by_version = &mut self.by_version;
        self.at.retain(|n, v| {
            let keep = known(n);
            if !keep {
                by_version.remove(v);
            }
            keep
        });
        self.held.retain(|n, _| known(n));
        self.dropped.retain(|n, _| known(n));
        self.wanted.retain(|n, _| known(n));
        self.ours.retain(|n| known(n));
    }

    /// Members logged and peers tracked (for the churn bounds).
    pub(super) fn len(&self) -> usize {
        self.at
            .len()
            .max(self.held.len())
            .max(self.dropped.len())
            .max(self.wanted.len())
    }
}

impl Node {
    /// Route updates this core speaks for leave for every other core:
    /// each is a change in its log, and each peer fed up to the log's end
    /// stays fed to its new end.
    pub(super) fn log_own_route_changes(&mut self, updates: &[crate::wire::messages::RouteUpdate]) {
        let from = self.route_log.version;
        for update in updates {
            self.route_log.log(&update.node);
        }
        let to = self.route_log.version;
        if to != from {
            let peers: Vec<(NodeId, Incarnation)> = self
                .membership
                .peer_cores()
                .map(|r| (r.id.clone(), r.incarnation))
                .collect();
            for (peer, incarnation) in peers {
                self.sync_outbox.fed_on(&peer, incarnation, from, to);
            }
        }
    }

    /// Workers that registered with this core, or moved to it, are members
    /// it now speaks for: their routes may have reached the other cores
    /// from their former core, or not at all, so they count as changes
    /// that no peer is yet known to hold (unlike
    /// [`Node::log_own_route_changes`], no peer's outbox carries them).
    pub(super) fn log_members_now_ours(&mut self, changes: &[crate::membership::Change]) {
        for change in changes {
            let record = change.record();
            let ours = record.home == self.id && record.id != self.id && !record.state.is_gone();
            if !ours {
                self.route_log.ours.remove(&record.id);
            } else if self.route_log.ours.insert(record.id.clone()) {
                self.route_log.log(&record.id);
            }
        }
    }

    /// The routes of `member` (in `incarnation`) were dropped: it died or
    /// left.
    pub(super) fn routes_dropped(&mut self, member: &NodeId, incarnation: Incarnation) {
        self.route_log.dropped.insert(member.clone(), incarnation);
    }

    /// Members back in the incarnation whose routes were dropped: their
    /// routes are wanted from their home core.
    pub(super) fn want_routes_of_revived(&mut self, changes: &[crate::membership::Change]) {
        for change in changes {
            let crate::membership::Change::Joined(record) = change else {
                continue;
            };
            if self.route_log.dropped.get(&record.id) == Some(&record.incarnation) {
                self.route_log.dropped.remove(&record.id);
                self.route_log
                    .wanted
                    .insert(record.id.clone(), record.incarnation);
            }
        }
    }

    /// The members whose routes this node wants from `home`: revived ones
    /// it still holds no routes of. Those that got them, or died again, or
    /// moved to a new life, are no longer wanted.
    pub(super) fn routes_wanted_from(&mut self, home: &NodeId) -> Vec<NodeId> {
        let membership = &self.membership;
        let routes = &self.routes;
        self.route_log.wanted.retain(|member, incarnation| {
            let record = membership.get(member);
            record.is_some_and(|r| r.incarnation == *incarnation && !r.state.is_gone())
                && routes.version_of(member).is_none()
        });
        self.route_log
            .wanted
            .keys()
            .filter(|m| membership.get(m).is_some_and(|r| r.home == *home))
            .cloned()
            .collect()
    }

    /// A sync from `sender` (in `incarnation`) was taken without a gap and
    /// said it brings this node to `at` in the sender's log.
    pub(super) fn routes_synced_to(
        &mut self,
        sender: &NodeId,
        incarnation: Incarnation,
        at: Option<u64>,
    ) {
        let Some(version) = at else { return };
        let position = LogPosition {
            incarnation,
            version,
        };
        let held = self
            .route_log
            .held
            .entry(sender.clone())
            .or_insert(position);
        // A sync that arrives late never takes the position back.
        if held.incarnation != incarnation || held.version < version {
            *held = position;
        }
    }

    /// How far this node holds the log of `sender` (in `incarnation`).
    pub(super) fn routes_held_of(&self, sender: &NodeId, incarnation: Incarnation) -> Option<u64> {
        self.route_log
            .held
            .get(sender)
            .filter(|p| p.incarnation == incarnation)
            .map(|p| p.version)
    }

    /// A peer core's heartbeat answer said it holds this core's log up to
    /// `held`: what it lacks and nothing brings it goes now, as snapshots.
    pub(super) fn catch_up_routes(
        &mut self,
        peer: &NodeId,
        held: Option<u64>,
        wanted: Vec<NodeId>,
    ) {
        let end = self.route_log.version;
        let Some(incarnation) = self.membership.get(peer).map(|r| r.incarnation) else {
            return;
        };
        let fed = self.sync_outbox.fed(peer, incarnation);
        let mut candidates = wanted;
        // Unless it holds it all, or all it lacks is queued or on its way.
        let covered = held == Some(end) || (held.is_some() && fed == Some(end));
        if !covered {
            candidates.extend(self.route_log.changed_after(held));
        }
        if candidates.is_empty() {
            return;
        }
        let lagging: Vec<NodeId> = candidates
            .into_iter()
            .filter(|member| {
                // Only the members this core speaks for: another core's
                // reach the peer from that core.
                let ours = *member == self.id || self.route_log.ours.contains(member);
                ours && self
                    .routes
                    .version_of(member)
                    .is_some_and(|version| !self.sync_outbox.covers(peer, member, version))
            })
            .collect();
        if held.is_none() && !lagging.is_empty() {
            self.stats.route_resyncs += 1;
        }
        self.resend_route_snapshots(peer, &lagging);
        self.sync_outbox.fed_to(peer, incarnation, end);
    }
}
