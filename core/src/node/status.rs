//! Snapshots for operators: the cluster as this node sees it, and counters.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Node;
use crate::forward::link::{DropReason, LinkStats};
use crate::id::{Incarnation, NodeId, Role};
use crate::time::Instant;
use crate::wire::messages::MemberState;

/// Where the node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Taking part in the cluster.
    Running,
    /// Telling the others it leaves.
    Leaving,
    /// Gone for good (this incarnation).
    Left,
    /// Refused by a core's credentials check; does nothing more.
    Rejected,
}

impl Phase {
    /// Left or rejected: the node takes no more inputs.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Left | Phase::Rejected)
    }
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The member.
    pub id: NodeId,
    /// Core or worker.
    pub role: Role,
    /// Alive, suspect, dead or left.
    pub state: MemberState,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// The core watching it.
    pub home: NodeId,
    /// Where it is reached (cores only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When this node last heard from it directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heard: Option<Instant>,
}

/// The cluster as one node sees it: what `GET /status` answers.
///
/// A refused request never changes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// This node.
    pub node: NodeId,
    /// Its role.
    pub role: Role,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// Where it is in its life.
    pub phase: Phase,
    /// For a worker: the core it is registered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<NodeId>,
    /// Digest of the live member list; equal digests mean equal views.
    pub members_digest: String,
    /// Every member, tombstones included, ordered by id.
    pub members: Vec<MemberStatus>,
    /// For a core: the workers' push streams it feeds.
    pub streams: usize,
    /// Routes in this node's copy of the cluster's routing table.
    pub routes: usize,
    /// Digest of the route versions held; equal digests mean equal tables.
    pub routes_digest: String,
    /// Distinct subscriptions of this node's own clients.
    pub local_subscriptions: usize,
    /// Topics in this node's copy of the cluster's retained set.
    pub retained: usize,
    /// Digest of the retained set; equal digests mean equal sets (empty
    /// for an empty set).
    pub retained_digest: String,
    /// Outbound queues per peer.
    pub queues: BTreeMap<String, QueueDepth>,
    /// Destinations this node waits on for confirmations.
    pub destinations: BTreeMap<NodeId, DestinationState>,
    /// Publishes held back because a destination's window is full; see
    /// [`Event::Ready`](crate::Event::Ready).
    pub held: usize,
    /// Whether this node's view agrees with every core's, since when, and
    /// which cores differ.
    pub convergence: super::ConvergenceStatus,
    /// How long the oldest unconfirmed QoS 1/2 publish has waited, in
    /// milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unconfirmed_ms: Option<u64>,
}

/// How full one peer's outbound link is. Its drops, by reason, are in
/// [`Stats::links`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Waiting in the queue.
    pub queued: usize,
    /// Of those, QoS 0 messages: the only ones `queueLength` bounds and
    /// `queuePolicy` drops. QoS 1 and 2 messages take a full queue over its
    /// bound rather than being dropped; their origins' confirmation windows
    /// bound them.
    pub queued_at_most_once: usize,
    /// Sent and not yet acknowledged, or waiting for a retry.
    pub in_flight: usize,
    /// How long the oldest message on the link has waited, in
    /// milliseconds (`None` when the link holds nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
}

/// What this node, as an origin, waits for from one destination: the
/// state a broker acts on to throttle its clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationState {
    /// Copies of QoS 1 and 2 publishes sent to it and not yet confirmed.
    pub unconfirmed: usize,
    /// Its confirmation window is full and publishes wait at this node
    /// for it ([`Routing::busy`](crate::node::Routing::busy)).
    pub busy: bool,
}

/// How much a node keeps per peer beyond its member list: each of these is
/// pruned when the member list forgets a member, so members that come and
/// go (a node started without `nodeName` gets a new id at every restart)
/// do not make them grow. For operators and tests that check it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bookkeeping {
    /// Records in the member list, tombstones included: the bound of the
    /// others.
    pub members: usize,
    /// Destinations with a message sequence counter.
    pub sequence_counters: usize,
    /// Closed links whose counters are kept by peer.
    pub closed_links: usize,
    /// Addresses a core registers with (from `clusters`, or learnt).
    pub core_slots: usize,
    /// Members with routes in the routing table.
    pub route_owners: usize,
    /// Peer cores with a `/sync` outbox.
    pub sync_outboxes: usize,
    /// Peers whose member-log positions are kept (how far this node holds
    /// theirs, how far they hold this node's).
    pub member_log_positions: usize,
}

/// Counters since the node started. Unlike [`Status`], refused requests
/// count here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests answered with `200`.
    pub requests_accepted: u64,
    /// Requests refused, by error kind.
    pub requests_refused: BTreeMap<String, u64>,
    /// Requests this node sent.
    pub requests_sent: u64,
    /// Sent requests that got no HTTP response.
    pub transport_errors: u64,
    /// Peer responses that could not be used, by error kind.
    pub bad_responses: BTreeMap<String, u64>,
    /// Responses reported for ids the node did not know.
    pub unknown_responses: u64,
    /// Stream frames this node received.
    pub stream_frames_received: u64,
    /// Stream frames this core sent.
    pub stream_frames_sent: u64,
    /// Push streams that broke with a framing or decoding error.
    pub stream_errors: u64,
    /// Times this node failed over to another core.
    pub failovers: u64,
    /// Messages the host published.
    pub published: u64,
    /// Messages a worker published while it did not yet hold its core's
    /// routing table (before [`Event::Synced`](crate::Event::Synced), after
    /// each registration): they reached only the nodes it knew of then,
    /// none for a worker that just started.
    pub published_unsynced: u64,
    /// Messages [`Node::publish`] refused because they take more bytes than
    /// one body carries ([`PublishError::TooLarge`](super::PublishError::TooLarge)).
    pub publish_refused: u64,
    /// Messages from other nodes handed to the host.
    pub delivered: u64,
    /// Copies that arrived again and were not handed over twice.
    pub duplicates: u64,
    /// Targets that could not be reached (gone, or behind a second core).
    pub unroutable: u64,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Route snapshots this core sent other cores with `/sync` (a peer
    /// found a gap, or lagged behind at a heartbeat).
    pub route_snapshots_sent: u64,
    /// Whole member lists this core sent in heartbeat answers or syncs
    /// because the peer quoted no position to send only changes from (it
    /// was new, it fell behind a record since forgotten, or this core
    /// restarted). Every other member-list repair sends changes only.
    pub member_resyncs: u64,
    /// Times this core pushed every route it speaks for to a peer core that
    /// held none of its log of route changes (the peer was new, restarted,
    /// or this core did). Every other route repair sends what changed only.
    pub route_resyncs: u64,
    /// Per-peer link counters.
    pub links: BTreeMap<String, LinkStats>,
    /// Messages received, by the peer that sent them here (the last hop,
    /// not the origin): a `/forward` body's messages by its signed sender,
    /// a worker's stream batches by its core. A member's count goes when
    /// the member list forgets it.
    pub received_from: BTreeMap<String, u64>,
    /// Retained messages not taken into the cluster's set (at this node:
    /// its own publishes and writes from peers), all reasons.
    pub retained_refused: u64,
    /// The same, by reason.
    pub retained_refusals: BTreeMap<crate::retained::RetainRefusal, u64>,
    /// QoS 1 and 2 publishes every destination confirmed
    /// ([`Event::Confirmed`](crate::Event::Confirmed)).
    pub confirmed: u64,
    /// QoS 1 and 2 publishes some destination will never confirm, by the
    /// first reason met ([`Event::NotConfirmed`](crate::Event::NotConfirmed)).
    pub not_confirmed: BTreeMap<crate::forward::confirm::ConfirmFailure, u64>,
    /// Copies this node sent again because their destinations had not
    /// confirmed them (at once after a path changed, otherwise after three
    /// `deadTimeout`s without a confirmation).
    pub resent: u64,
    /// Confirmations that found no way back to their origin (gone, no
    /// stream, a full outbox, a failed `/confirm`): their origins send the
    /// messages again.
    pub confirmations_lost: u64,
}

impl Node {
    /// The cluster as this node sees it.
    pub fn status(&self) -> Status {
        Status {
            node: self.id.clone(),
            role: self.role,
            incarnation: self.incarnation(),
            phase: self.phase,
            core: self.worker.registered_core().cloned(),
            members_digest: self.membership.digest(),
            members: self
                .membership
                .records()
                .map(|r| MemberStatus {
                    id: r.id.clone(),
                    role: r.role,
                    state: r.state,
                    incarnation: r.incarnation,
                    home: r.home.clone(),
                    address: r.address.clone(),
                    last_heard: self.membership.last_heard(&r.id),
                })
                .collect(),
            streams: self.core.stream_count(),
            routes: self.routes.len(),
            routes_digest: self.routes.digest(),
            local_subscriptions: self.local_routes.len(),
            retained: self.retained.len(),
            retained_digest: self.retained.digest(),
            queues: self.queue_depths(),
            destinations: self.destinations(),
            held: self.outstanding.waiting(),
            convergence: self.convergence.status(),
            oldest_unconfirmed_ms: self
                .outstanding
                .oldest()
                .map(|at| millis(self.latest.instant.saturating_since(at))),
        }
    }

    /// Whether this node's view agrees with every core's (the part of
    /// [`Node::status`] that says so, without building the rest).
    pub fn convergence(&self) -> super::ConvergenceStatus {
        self.convergence.status()
    }

    /// The digest of this node's live member list ([`Status::members_digest`]).
    pub fn members_digest(&self) -> String {
        self.membership.digest()
    }

    /// The digest of the route versions this node holds
    /// ([`Status::routes_digest`]).
    pub fn routes_digest(&self) -> String {
        self.routes.digest()
    }

    /// Where the node is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Queue depth and in-flight messages per peer, without building the
    /// rest of [`Node::status`].
    pub fn queue_depths(&self) -> BTreeMap<String, QueueDepth> {
        self.forwarding
            .depths(self.worker.registered_core(), self.latest.instant)
    }

    /// Per destination, what this node waits on it to confirm.
    pub fn destinations(&self) -> BTreeMap<NodeId, DestinationState> {
        self.outstanding
            .per_destination()
            .map(|(node, unconfirmed, busy)| (node.clone(), DestinationState { unconfirmed, busy }))
            .collect()
    }

    /// The largest queue and the largest in-flight count over all of the
    /// node's links (each maximum may come from a different link): a bound
    /// check of every link at once, without naming them as
    /// [`queue_depths`](Self::queue_depths) does.
    pub fn deepest_queues(&self) -> QueueDepth {
        let (queued, in_flight) = self.forwarding.deepest();
        QueueDepth {
            queued,
            in_flight,
            ..QueueDepth::default()
        }
    }

    /// Which request counters of which senders this node has accepted: for
    /// tests and fuzzers that check a refused request left it unchanged.
    pub fn replay_guard(&self) -> &crate::auth::replay::ReplayGuard {
        self.auth.replay_guard()
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        Stats {
            links: self.forwarding.link_stats(),
            ..self.stats.clone()
        }
    }

    /// The sizes of what the node keeps per peer (see [`Bookkeeping`]).
    pub fn bookkeeping(&self) -> Bookkeeping {
        let (sequence_counters, closed_links) = self.forwarding.tracked();
        Bookkeeping {
            members: self.membership.len(),
            sequence_counters,
            closed_links,
            core_slots: self.core.slot_count(),
            route_owners: self.routes.owners(),
            sync_outboxes: self.sync_outbox.len(),
            member_log_positions: self.member_logs.len().max(self.route_log.len()),
        }
    }

    pub(super) fn count_bad_response(&mut self, kind: &str) {
        *self.stats.bad_responses.entry(kind.to_owned()).or_default() += 1;
    }
}

pub(super) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
