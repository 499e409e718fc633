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
}

impl MemberLogs {
    /// Forgets the positions of nodes `known` no longer names.
    pub(super) fn retain(&mut self, known: impl Fn(&NodeId) -> bool) {
        self.held.retain(|n, _| known(n));
        self.told.retain(|n, _| known(n));
        self.quoted.retain(|n, _| known(n));
    }

    /// How many peers positions are kept for (for the churn bounds).
    pub(super) fn len(&self) -> usize {
        self.held.len().max(self.told.len()).max(self.quoted.len())
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

    /// After merging a peer core's heartbeat answer, this node's digest
    /// still differs from the peer's: the peer lacks something. Pushes the
    /// changes after the position the peer last quoted, or the whole list.
    pub(super) fn push_missing_members(&mut self, peer: &NodeId) {
        let quoted = self.member_logs.quoted.get(peer).copied();
        let changes = quoted
            .filter(|p| p.incarnation == self.incarnation())
            .and_then(|p| self.membership.changes_since(p.version));
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
