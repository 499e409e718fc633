//! The node: one member of the cluster, as a state machine.
//!
//! [`Node`] ties the other modules together. Its methods fall in four groups:
//!
//! - **inputs**, each with the current [`Now`]: [`Node::handle_request`],
//!   [`Node::handle_response`], [`Node::handle_stream_data`],
//!   [`Node::handle_stream_end`], [`Node::handle_stream_closed`],
//!   [`Node::handle_timeout`];
//! - **host actions**: [`Node::leave`];
//! - **outputs**, drained until `None` after every input:
//!   [`Node::poll_transmit`], [`Node::poll_stream`], [`Node::poll_event`],
//!   [`Node::poll_timeout`];
//! - **getters**: [`Node::id`], [`Node::role`], [`Node::incarnation`],
//!   [`Node::status`], [`Node::stats`], [`Node::max_body_size`],
//!   [`Node::retained`].
//!
//! ## Retained messages
//!
//! Every node keeps a full copy of the cluster's retained set
//! ([`crate::retained`]). A host's [`Node::publish`] with `retain` set
//! stores the message in it (an empty payload clears the topic) and
//! replicates it to every member, whether or not anyone subscribes. When a
//! peer's write changes the copy, the host hears [`Event::RetainSet`] or
//! [`Event::RetainCleared`], and keeps its own retained store to match;
//! [`Node::retained`] lists the whole set, for a host that starts late.
//! Conflicting writes resolve by last writer wins, ordered by (Lamport
//! stamp, origin node id), the same on every node. The set holds at most
//! `retainedLimit` topics (default 10000; 0 keeps retained messages local);
//! what it refuses is counted in [`Stats::retained_refused`] and reported
//! as [`Event::RetainRefused`].
//!
//! The code is split by duty: `serve` answers requests on a core, `peers`
//! keeps a core in touch with the other cores, `session` keeps a worker
//! registered with a core, `watch` is the failure detector.

mod catch_up;
mod confirming;
mod convergence;
mod explain;
mod forwarding;
mod metrics;
mod outbox;
mod output;
mod paging;
mod peers;
mod retained;
mod routes;
mod serve;
mod session;
mod settling;
mod status;
mod watch;

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::auth::{Authenticator, Identity};
use crate::config::{Config, ConfigError};
use crate::forward::link::BatchId;
use crate::id::{Incarnation, NodeId, RequestId, Role, StreamId};
use crate::membership::{Change, Membership};
use crate::routing::{ClusterRoutes, Subscription};
use crate::time::{Instant, Now};
use crate::wire::endpoint::BaseUris;
use crate::wire::messages::RouteUpdate;
use crate::wire::messages::{MemberRecord, MemberState, Stamp};
use crate::wire::Endpoint;

pub use convergence::{ConvergenceStatus, Histogram};
pub use explain::{
    ExplainError, Explanation, Hop, HopLink, LinkError, MatchedFilter, MemberVerdict, RoutesLag,
    Unreached,
};
pub use forwarding::{Delivery, Message, PublishError, Routing, FORGOTTEN_PEERS};
pub use output::{DroppedCopy, Event, StreamOutput, Transmit, TransportError};
pub use serve::RequestError;
pub use settling::Settling;
pub use status::{Bookkeeping, DestinationState, MemberStatus, Phase, QueueDepth, Stats, Status};

use forwarding::Forwarding;
use outbox::SyncOutbox;
use peers::CoreDuty;
use routes::LocalRoutes;
use session::WorkerDuty;

/// How many requests the replay guard remembers senders for.
const MAX_TRACKED_SENDERS: usize = 4096;
/// How many heartbeats a node keeps in flight to one peer.
const MAX_HEARTBEATS_IN_FLIGHT: usize = 3;
/// How many tombstones a node keeps at most.
const MAX_TOMBSTONES: usize = 4096;

/// One cluster member: a core or a worker, decided by [`Config::core`].
///
/// Feed it inputs, then drain its outputs until each `poll_*` returns `None`:
///
/// ```
/// use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
///
/// let config = Config::from_yaml_str(
///     "core: true\nport: 8884\nsecret: correct-horse-battery\nnodeName: core1\n",
/// ).unwrap();
/// let start = Now::new(Instant::ZERO, WallTime::from_unix_millis(1_700_000_000_000));
/// let mut node = Node::new(config, start, 7).unwrap();
///
/// let deadline = node.poll_timeout().unwrap();
/// node.handle_timeout(start.after(deadline - start.instant));
/// while let Some(transmit) = node.poll_transmit() {
///     // send transmit.request to transmit.to, then call node.handle_response
///     let _ = transmit;
/// }
/// while let Some(event) = node.poll_event() {
///     println!("{event:?}");
/// }
/// ```
#[derive(Debug)]
pub struct Node {
    config: Config,
    id: NodeId,
    role: Role,
    /// The incarnation this process started with. Forwarded messages carry
    /// it: their per-destination sequence numbers run for the life of the
    /// process, across any later refutation, and restart with a new one.
    first_incarnation: Incarnation,
    auth: Authenticator,
    /// What requests are signed as; replaced when the incarnation changes.
    identity: Identity,
    /// Request URIs by base, each base parsed once.
    base_uris: BaseUris,
    /// Counter of signed requests: the replay guard's key on the other side.
    signed: u64,
    next_request: u64,
    latest: Now,
    phase: Phase,
    next_tick: Instant,
    membership: Membership,
    pending: BTreeMap<RequestId, Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// What this node's own events say of its routes (see `settling`).
    settling: settling::Settling,
    /// How many events at the front of `events` `settling` has followed.
    settling_observed: usize,
    stream_output: VecDeque<StreamOutput>,
    core: CoreDuty,
    worker: WorkerDuty,
    routes: ClusterRoutes,
    local_routes: LocalRoutes,
    /// Route updates to pass to the other cores at the end of this input.
    outgoing_routes: Vec<RouteUpdate>,
    /// What waits for each other core's next `/sync`.
    sync_outbox: SyncOutbox,
    /// How far this node holds other nodes' logs of member changes, and
    /// how far they hold its own.
    member_logs: catch_up::MemberLogs,
    /// This core's log of its own route changes, and how far it holds the
    /// other cores'.
    route_log: catch_up::RouteLog,
    convergence: convergence::Convergence,
    /// [`Membership::removals`] when what is kept per member was last
    /// swept of the members forgotten.
    swept_removals: u64,
    forwarding: Forwarding,
    /// This node's QoS 1 and 2 publishes until each destination confirmed.
    outstanding: crate::forward::confirm::Outstanding,
    /// Confirmations on their way back to origins.
    confirm_outbox: confirming::ConfirmOutbox,
    /// The host was told a publish waits for a window, and has not yet
    /// been told there is room again.
    busy: bool,
    /// A path changed: unconfirmed messages go again at the end of this
    /// input.
    resend_due: bool,
    /// Reused by `publish` so a lookup allocates nothing.
    match_buffer: Vec<NodeId>,
    /// This node's copy of the cluster's retained set.
    retained: crate::retained::RetainedSet,
    retained_pushes: retained::RetainedPushes,
    stats: Stats,
}

/// What a request the node sent was for, so its response can be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// A core registering with the URL of slot `slot` (a [`peers`] slot id,
    /// stable while slots come and go).
    CoreRegister { slot: u64 },
    /// A core's heartbeat to another core, and the position in the peer's
    /// member log it quoted.
    CoreHeartbeat {
        peer: NodeId,
        seen: Option<crate::wire::messages::LogPosition>,
    },
    /// Member records pushed to another core.
    CoreSync { peer: NodeId },
    /// A core telling another it leaves.
    CoreLeave,
    /// A worker registering with `clusters[candidate]`.
    WorkerRegister { candidate: usize },
    /// A worker's heartbeat to its core, and the position in the core's
    /// member log it quoted.
    WorkerHeartbeat {
        seen: Option<crate::wire::messages::LogPosition>,
    },
    /// A worker's push stream.
    WorkerStream,
    /// A worker telling its core it leaves.
    WorkerLeave,
    /// A worker's own route update, with the routes it brings the core to.
    WorkerRoutes {
        seq: u64,
        routes: std::collections::BTreeSet<Subscription>,
    },
    /// A batch of messages to a core (`None`: a worker's uplink).
    Forward {
        peer: Option<NodeId>,
        batch: BatchId,
    },
    /// A worker acknowledging stream batches.
    WorkerAck { stream: RequestId, through: u64 },
    /// Retained entries to a core (`None`: a worker's core).
    Retained { peer: Option<NodeId> },
    /// Confirmations passed on to another core.
    Confirm { peer: NodeId },
}

/// The node could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Node {
    /// Creates a node from a validated configuration.
    ///
    /// `now` is the start time: the node's first incarnation is its wall-clock
    /// milliseconds, so a restarted node comes back with a higher one. `seed`
    /// is the node's only source of randomness; it names the node when the
    /// configuration gives no `nodeName`.
    pub fn new(config: Config, now: Now, seed: u64) -> Result<Node, NodeError> {
        config.validate()?;
        let role = if config.core {
            Role::Core
        } else {
            Role::Worker
        };
        let id = config
            .node_name
            .clone()
            .unwrap_or_else(|| NodeId::from_seed(seed));
        let incarnation = Incarnation(now.wall.as_unix_millis().max(1));
        let me = MemberRecord {
            id: id.clone(),
            role,
            incarnation,
            state: MemberState::Alive,
            home: id.clone(),
            address: config.advertise.as_ref().map(|u| u.to_string()),
            // A core's Lamport clock starts at its incarnation, so that after
            // a restart its decisions outrank those of its former life. A
            // worker stamps nothing: its core's records of it always win.
            stamp: Stamp {
                clock: if role == Role::Core { incarnation.0 } else { 0 },
                by: id.clone(),
            },
        };
        let auth = Authenticator::new(
            config.secret.clone(),
            config.freshness_window,
            MAX_TRACKED_SENDERS,
        );
        let core = CoreDuty::new(&config);
        let worker = WorkerDuty::new(&config);
        let identity = Identity::new(id.clone(), incarnation);
        let retained = crate::retained::RetainedSet::new(
            id.clone(),
            incarnation.0,
            config.retained_limit,
            config.retained_limit,
        );
        let mut node = Node {
            id,
            role,
            first_incarnation: incarnation,
            auth,
            identity,
            base_uris: BaseUris::default(),
            signed: 0,
            next_request: 0,
            latest: now,
            phase: Phase::Running,
            next_tick: now.instant + config.heartbeat_interval,
            membership: Membership::new(me, now.instant),
            pending: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            settling: settling::Settling::default(),
            settling_observed: 0,
            stream_output: VecDeque::new(),
            core,
            worker,
            routes: ClusterRoutes::new(),
            local_routes: LocalRoutes::default(),
            outgoing_routes: Vec::new(),
            sync_outbox: SyncOutbox::default(),
            member_logs: catch_up::MemberLogs::default(),
            route_log: catch_up::RouteLog::default(),
            convergence: convergence::Convergence::new(now),
            swept_removals: 0,
            forwarding: Forwarding::new(&config),
            outstanding: crate::forward::confirm::Outstanding::new(
                config.dead_timeout.saturating_mul(3),
                config.message_expiry,
            )
            .with_waiting_limit(config.queue_length),
            confirm_outbox: confirming::ConfirmOutbox::default(),
            busy: false,
            resend_due: false,
            match_buffer: Vec::new(),
            retained,
            retained_pushes: retained::RetainedPushes::default(),
            stats: Stats::default(),
            config,
        };
        match role {
            Role::Core => node.core_tick(now),
            Role::Worker => node.worker_start(now),
        }
        node.flush(now);
        Ok(node)
    }

    // ----- getters -----

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Core or worker.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.membership.my_incarnation()
    }

    /// The incarnation this process started with; the messages it publishes
    /// carry it, since their sequence numbers run for the process's life.
    pub fn first_incarnation(&self) -> Incarnation {
        self.first_incarnation
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The largest request or response body the node accepts; runtimes stop
    /// reading a body beyond it.
    pub fn max_body_size(&self) -> usize {
        self.config.max_body_size
    }

    /// This node's copy of the cluster's routing table.
    pub fn routes(&self) -> &ClusterRoutes {
        &self.routes
    }

    /// The record this node holds for `id`.
    pub fn member(&self, id: &NodeId) -> Option<&MemberRecord> {
        self.membership.get(id)
    }

    // ----- inputs -----

    /// Reports the fate of a [`Transmit`]. A streaming request reports its
    /// response head here (with an empty body) before its body arrives
    /// through [`Node::handle_stream_data`]. Unknown ids are ignored.
    pub fn handle_response(
        &mut self,
        now: Now,
        id: RequestId,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let now = self.advance(now);
        let Some(pending) = self.pending.remove(&id) else {
            self.stats.unknown_responses += 1;
            return;
        };
        if result.is_err() {
            self.stats.transport_errors += 1;
        }
        if self.phase.is_finished() {
            return;
        }
        match pending {
            Pending::CoreRegister { slot } => self.on_core_register(now, slot, result),
            Pending::CoreHeartbeat { peer, seen } => {
                self.on_core_heartbeat(now, &peer, seen, result)
            }
            Pending::CoreSync { peer } => {
                // An answered sync may complete what a peer holds.
                self.convergence.due = true;
                self.on_core_sync(now, &peer, result)
            }
            Pending::CoreLeave | Pending::WorkerLeave => self.on_leave_answered(),
            Pending::WorkerRegister { candidate } => {
                self.on_worker_register(now, candidate, result)
            }
            Pending::WorkerHeartbeat { seen } => self.on_worker_heartbeat(now, seen, result),
            Pending::WorkerStream => self.on_stream_head(now, id, result),
            Pending::WorkerRoutes { seq, routes } => {
                self.on_worker_routes(now, seq, routes, result)
            }
            Pending::Forward { peer, batch } => self.on_forward_answered(now, peer, batch, result),
            Pending::WorkerAck { stream, through } => {
                self.on_ack_answered(now, stream, through, result)
            }
            Pending::Retained { peer } => self.on_retained_answered(now, peer, result),
            Pending::Confirm { .. } => self.on_confirm_answered(result),
        }
        self.flush(now);
    }

    /// Feeds bytes of a worker's push stream, as they arrive, split anywhere.
    pub fn handle_stream_data(&mut self, now: Now, id: RequestId, data: &[u8]) {
        let now = self.advance(now);
        if !self.phase.is_finished() {
            self.on_stream_data(now, id, data);
        }
        self.flush(now);
    }

    /// Reports that a worker's push stream ended (closed, broken, or timed
    /// out). The worker opens a new one at its next heartbeat.
    pub fn handle_stream_end(&mut self, now: Now, id: RequestId) {
        let now = self.advance(now);
        self.pending.remove(&id);
        self.on_stream_end(now, id);
        self.flush(now);
    }

    /// Reports that the connection of a stream this core serves is gone.
    pub fn handle_stream_closed(&mut self, now: Now, stream: StreamId) {
        let now = self.advance(now);
        if let Some(worker) = self.core.forget_stream(stream) {
            self.rewind_stream_link(now, &worker);
        }
        self.flush(now);
    }

    /// Does the periodic work due at `now`: heartbeats, failure detection,
    /// registration retries. Calling it before [`Node::poll_timeout`] is
    /// harmless: it does nothing.
    pub fn handle_timeout(&mut self, now: Now) {
        let now = self.advance(now);
        if self.phase.is_finished() {
            return;
        }
        if now.instant >= self.next_tick {
            self.next_tick = now.instant + self.config.heartbeat_interval;
            self.convergence.due = true;
            match self.role {
                Role::Core => self.core_tick(now),
                Role::Worker => self.worker_tick(now),
            }
            self.retained_tick(now);
            self.confirm_tick(now);
        }
        self.flush(now);
    }

    // ----- host actions -----

    /// Leaves the cluster gracefully: tells the core(s), then does nothing
    /// more. [`Event::Left`] follows once the others were told.
    pub fn leave(&mut self, now: Now) {
        let now = self.advance(now);
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Leaving;
        match self.role {
            Role::Core => self.core_leave(now),
            Role::Worker => self.worker_leave(now),
        }
        if !self
            .pending
            .values()
            .any(|p| matches!(p, Pending::CoreLeave | Pending::WorkerLeave))
        {
            self.finish_leaving();
        }
    }

    /// The work every input ends with: route updates to the other cores,
    /// and whatever the links may send now.
    fn flush(&mut self, now: Now) {
        if self.phase.is_finished() {
            return;
        }
        if self.role == Role::Core {
            self.flush_route_sync(now);
        }
        self.flush_confirms(now);
        if self.resend_due {
            self.resend_unconfirmed(now);
        }
        self.flush_links(now);
        self.update_convergence(now);
    }

    // ----- outputs -----

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next bytes for (or end of) a stream this core serves.
    pub fn poll_stream(&mut self) -> Option<StreamOutput> {
        self.stream_output.pop_front()
    }

    /// The next event for the host.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        match self.settling_observed.checked_sub(1) {
            Some(left) => self.settling_observed = left,
            None => self.settling.observe(&event, self.latest.instant),
        }
        Some(event)
    }

    /// Follows the events not yet followed, in the order the host gets
    /// them: what [`Routing::settling`] answers from.
    fn follow_own_events(&mut self) {
        let at = self.latest.instant;
        for event in self.events.iter().skip(self.settling_observed) {
            self.settling.observe(event, at);
        }
        self.settling_observed = self.events.len();
    }

    /// Whether this node's routing table may lack members the cluster has
    /// right now: see [`Routing::settling`].
    pub fn is_settling(&mut self) -> bool {
        self.follow_own_events();
        let routes = &self.routes;
        self.settling.routes_arrived(|node, incarnation| {
            routes
                .version_of(node)
                .is_some_and(|(held, _)| held >= incarnation)
        });
        let bound = self.config.dead_timeout + self.config.request_timeout;
        self.settling.is_settling(self.latest.instant, bound)
    }

    /// When [`Node::handle_timeout`] next has work; `None` once the node has
    /// left or was rejected.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase.is_finished() {
            return None;
        }
        // A link deadline already passed is one `handle_timeout` could not
        // act on (no stream, not registered): the next tick retries it.
        Some(match self.forwarding.next_deadline() {
            Some(link) if link > self.latest.instant => link.min(self.next_tick),
            _ => self.next_tick,
        })
    }

    // ----- shared plumbing -----

    /// Monotonic time never goes backwards inside the node: an earlier
    /// instant counts as the latest one seen. Wall time is taken as given,
    /// jumps included: it only stamps signatures and checks peers' stamps,
    /// and keeping the largest one ever seen would make a node sign with a
    /// future time after its clock was stepped back (NTP, a resumed VM),
    /// refused by every peer until real time caught up.
    fn advance(&mut self, now: Now) -> Now {
        self.latest = Now::new(self.latest.instant.max(now.instant), now.wall);
        self.latest
    }

    /// Signs and queues a request.
    fn send(
        &mut self,
        now: Now,
        to: &str,
        peer: Option<NodeId>,
        endpoint: Endpoint,
        body: Bytes,
        pending: Pending,
    ) -> RequestId {
        self.next_request += 1;
        self.signed += 1;
        let id = RequestId(self.next_request);
        let mut request = self.base_uris.request(endpoint, to, body);
        let incarnation = self.incarnation();
        if self.identity.incarnation() != incarnation {
            self.identity = Identity::new(self.id.clone(), incarnation);
        }
        self.auth
            .sign_as(&mut request, &self.identity, self.signed, now.wall);
        self.pending.insert(id, pending);
        self.transmits.push_back(Transmit {
            id,
            to: to.to_owned(),
            peer,
            request,
            streaming: endpoint == Endpoint::Stream,
        });
        self.stats.requests_sent += 1;
        id
    }

    fn is_pending(&self, wanted: impl Fn(&Pending) -> bool) -> bool {
        self.pending.values().any(wanted)
    }

    fn count_pending(&self, wanted: impl Fn(&Pending) -> bool) -> usize {
        self.pending.values().filter(|p| wanted(p)).count()
    }

    /// Applies member changes: events for the host, frames for the streams
    /// this core feeds, and a refutation if the cluster gave up on this node.
    fn apply_changes(&mut self, now: Now, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        for change in &changes {
            let record = change.record();
            if record.id == self.id {
                continue;
            }
            let node = record.id.clone();
            let event = match change {
                Change::Joined(r) => Some(Event::MemberJoined {
                    node,
                    role: r.role,
                    incarnation: r.incarnation,
                }),
                Change::Suspect(_) => Some(Event::MemberSuspect { node }),
                Change::Recovered(_) => Some(Event::MemberAlive { node }),
                Change::Left(_) => Some(Event::MemberLeft { node }),
                Change::Dead(_) => Some(Event::MemberDead { node }),
                Change::Updated(_) => None,
            };
            self.events.extend(event);
        }
        // A path that may have lost what this node sent: a core died, left
        // or came back, or a worker moved to another core or went away.
        let paths_changed = changes.iter().any(|change| {
            let record = change.record();
            record.id != self.id
                && match change {
                    Change::Suspect(_) | Change::Recovered(_) => false,
                    Change::Joined(_) => record.role == Role::Core,
                    Change::Left(_) | Change::Dead(_) | Change::Updated(_) => true,
                }
        });
        if paths_changed && self.outstanding.unconfirmed() > 0 {
            self.resend_due = true;
        }
        for change in &changes {
            if let Change::Joined(record) = change {
                if record.id != self.id {
                    self.destination_restarted(now, &record.id);
                }
            }
        }
        if self.role == Role::Core {
            self.log_members_now_ours(&changes);
            self.want_routes_of_revived(&changes);
        }
        let records: Vec<MemberRecord> = changes.iter().map(|c| c.record().clone()).collect();
        self.forget_routes_of_gone(&records);
        self.close_stale_links(now, &records);
        if self.role == Role::Core {
            self.core_fan_out_to_streams(&records);
        }
        self.check_own_record(now);
    }

    /// Forgets what is kept per peer for members the member list no longer
    /// holds (their tombstones expired, or a worker's core dropped them):
    /// sequence counters, closed link counters, learnt core addresses,
    /// routes and `/sync` outboxes. Runs at every tick.
    fn forget_departed(&mut self) {
        let membership = &self.membership;
        self.sync_outbox
            .retain(|peer| membership.get(peer).is_some_and(|r| !r.state.is_gone()));
        // The rest names members by id; only a member forgotten since the
        // last sweep can have left an entry behind, and walking every
        // owner's routes at every tick cost a large cluster more than all
        // else it does.
        if membership.removals() == self.swept_removals {
            return;
        }
        self.swept_removals = membership.removals();
        let known = |n: &NodeId| membership.get(n).is_some();
        self.forwarding.forget_peers(known);
        self.core.forget_learnt(known);
        self.member_logs.retain(known);
        self.settling.retain(known);
        self.route_log.retain(known);
        self.convergence.retain(known);
        self.stats
            .received_from
            .retain(|peer, _| NodeId::new(peer).is_ok_and(|peer| known(&peer)));
        let stale: Vec<NodeId> = self
            .routes
            .versions()
            .into_iter()
            .map(|v| v.node)
            .filter(|n| *n != self.id && !known(n))
            .collect();
        for node in stale {
            self.routes.remove_member(&node);
        }
    }

    /// Encodes one SSE frame.
    fn frame(frame: &crate::wire::messages::StreamFrame) -> Bytes {
        frame.to_sse()
    }

    fn finish_leaving(&mut self) {
        if self.phase == Phase::Leaving {
            self.phase = Phase::Left;
            self.abandon_links();
            self.events.push_back(Event::Left);
        }
    }

    fn on_leave_answered(&mut self) {
        if !self.is_pending(|p| matches!(p, Pending::CoreLeave | Pending::WorkerLeave)) {
            self.finish_leaving();
        }
    }

    /// A new incarnation, higher than the current one and than the wall clock.
    fn next_incarnation(&self, now: Now) -> Incarnation {
        let current = self.incarnation().0;
        Incarnation(current.saturating_add(1).max(now.wall.as_unix_millis()))
    }
}
