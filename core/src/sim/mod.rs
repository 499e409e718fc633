//! A deterministic whole-cluster simulator (feature `sim`).
//!
//! Any number of nodes built from ordinary [`Config`]s run in one thread on a
//! virtual clock that jumps from event to event: no sleeping, no ticking. A
//! seeded network delays, drops, duplicates and reorders requests, splits
//! stream bytes anywhere, and can partition nodes; nodes can crash (and come
//! back empty with a new incarnation) and readers can be slow. Host actions
//! (subscribe, publish, leave) are scheduled like any other event.
//!
//! Every step is checked against the guarantees of the design: exact
//! routing, each QoS 1/2 message delivered once (to each process of its
//! destination), per-origin order (a copy may arrive before an earlier one
//! only within the settle time after a fault or a failover moved it to
//! another path, or once its origin sent it again; never because
//! subscriptions changed), bounded queues (`queueLength` bounds QoS 0
//! messages; QoS 1/2 ones only by the origins' confirmation windows), no
//! QoS 1/2 message dropped by a queue's policy, every confirmation an
//! origin reports naming exactly its publish's destinations, each of which
//! delivered it, no retained message that no one published, and no panic;
//! [`Simulation::check_converged`] checks agreement (of members, routes and
//! retained sets, the latter against the last writer of every topic) and
//! [`Simulation::check_no_loss`] the promise of end-to-end confirmation:
//! every QoS 1/2 copy whose origin and destination ran throughout arrived,
//! unless the origin reported that destination in an
//! [`Event::NotConfirmed`], and every such publish was settled.
//! A broken guarantee stops the run with a [`Violation`] that names the
//! seed, the step and one command that replays it. The same seed gives the
//! same run, byte for byte: [`Simulation::transcript_hash`].
//!
//! ```
//! use std::time::Duration;
//! use mqtt_cluster_core::sim::{Action, NetworkModel, Simulation};
//! use mqtt_cluster_core::wire::messages::Qos;
//! use mqtt_cluster_core::Config;
//!
//! let yaml = |extra: &str| format!(
//!     "secret: s3cret-s3cret\nclusters: [http://core1:8884, http://core2:8884]\n\
//!      heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\nrequestTimeout: 300ms\n{extra}");
//! let mut sim = Simulation::new(42, NetworkModel::lossy(0.01, 0.01));
//! for core in ["core1", "core2"] {
//!     sim.add_node(Config::from_yaml_str(&yaml(&format!("core: true\nnodeName: {core}\n")))?);
//! }
//! let a = sim.add_node(Config::from_yaml_str(&yaml("nodeName: a\n"))?);
//! let b = sim.add_node(Config::from_yaml_str(&yaml("nodeName: b\n"))?);
//! sim.run_for(Duration::from_secs(2))?;
//!
//! sim.act(Action::Subscribe { node: b.clone(), filter: "alerts/#".into() })?;
//! sim.run_for(Duration::from_secs(1))?;
//! // Cut b off for a while; a publishes through the partition.
//! sim.act(Action::Partition { side_a: vec![b.clone()], side_b: sim.node_ids() })?;
//! sim.act(Action::Publish { node: a.clone(), topic: "alerts/fire".into(), payload: "!".into(), qos: Qos::AtLeastOnce })?;
//! sim.run_for(Duration::from_millis(500))?;
//! sim.act(Action::Heal)?;
//! sim.run_for(Duration::from_secs(10))?;
//!
//! sim.check_converged()?;
//! sim.check_no_loss()?;
//! assert_eq!(sim.deliveries_to(&b).len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod agenda;
mod checker;
mod network;
mod retained_check;
mod traffic;
mod transcript;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::id::{Incarnation, NodeId, RequestId, StreamId};
use crate::node::{Delivery, Event, Message, Node, Phase, StreamOutput, Transmit, TransportError};
use crate::routing::{Subscription, TopicName};
use crate::time::{Instant, Now, WallTime};
use crate::wire::messages::{MemberState, Qos};

pub use checker::Violation;
pub use network::NetworkModel;
pub use traffic::{Propagation, TrafficCount};

use agenda::Agenda;
use checker::{reference_targets, Checker, Published};
use network::{Dice, Partitions};
use retained_check::{RetainedWrites, Write};
use transcript::{debug_is_verbatim, qos_name, Part, Transcript};

/// Wall-clock time at the simulation's instant zero.
const EPOCH_WALL_MS: u64 = 1_700_000_000_000;
/// How often queue bounds are checked, in steps.
const QUEUE_CHECK_EVERY: u64 = 64;

/// Something that happens to the cluster: a host action or a fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A local client of `node` subscribes.
    Subscribe {
        /// The node.
        node: NodeId,
        /// Topic filter, or `$share/{group}/{filter}`.
        filter: String,
    },
    /// A local client of `node` unsubscribes.
    Unsubscribe {
        /// The node.
        node: NodeId,
        /// The filter.
        filter: String,
    },
    /// A local client of `node` publishes.
    Publish {
        /// The node.
        node: NodeId,
        /// The topic.
        topic: String,
        /// The payload.
        payload: String,
        /// Quality of service.
        qos: Qos,
    },
    /// A local client of `node` publishes a retained message (QoS 1); an
    /// empty payload clears the topic's retained message.
    Retain {
        /// The node.
        node: NodeId,
        /// The topic.
        topic: String,
        /// The payload.
        payload: String,
    },
    /// `node` leaves the cluster gracefully.
    Leave {
        /// The node.
        node: NodeId,
    },
    /// Nodes of `side_a` and `side_b` can no longer reach each other.
    Partition {
        /// One side.
        side_a: Vec<NodeId>,
        /// The other side.
        side_b: Vec<NodeId>,
    },
    /// Every link works again.
    Heal,
    /// `node` crashes: its process and everything it held are gone.
    Crash {
        /// The node.
        node: NodeId,
    },
    /// A crashed `node` starts again, empty, with a new incarnation.
    Restart {
        /// The node.
        node: NodeId,
    },
    /// Bytes of `node`'s stream reach it `delay` late (a slow reader).
    SlowReader {
        /// The reading worker.
        node: NodeId,
        /// Extra delay per chunk.
        delay: Duration,
    },
}

/// What a run did, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Events processed.
    pub steps: u64,
    /// Simulated time, in milliseconds.
    pub simulated_ms: u64,
    /// Messages published.
    pub published: u64,
    /// Messages delivered to hosts.
    pub delivered: u64,
    /// Messages reported dropped by the nodes (all reasons).
    pub dropped: u64,
    /// Dropped messages by reason, summed over nodes.
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Publishes compared with the reference matcher.
    pub routing_checks: u64,
    /// Deliveries out of per-origin order shortly after a fault changed
    /// their path (order is guaranteed along a stable path).
    pub reordered: u64,
    /// QoS 1/2 publishes every destination confirmed.
    pub confirmed: u64,
    /// QoS 1/2 publishes some destination will never confirm (it went
    /// away, the message expired, or the origin left).
    pub not_confirmed: u64,
    /// Copies a restarted destination's new process got after its old one
    /// had (in flight to the old process when it crashed).
    pub delivered_again_after_restart: u64,
    /// Requests answered and their body bytes (both ways), by sender and
    /// endpoint: keys `core /heartbeat`, `worker /routes`, …; `core
    /// /stream` counts the chunks and bytes cores wrote on push streams.
    pub traffic: BTreeMap<String, TrafficCount>,
    /// How long subscriptions took to reach every running core.
    pub route_propagation: Propagation,
    /// The transcript's hash.
    pub transcript_hash: String,
}

#[derive(Debug)]
enum SimEvent {
    Timer {
        node: NodeId,
        life: u64,
        token: u64,
    },
    Request {
        from: NodeId,
        life: u64,
        transmit: Transmit,
        answer: bool,
    },
    Response {
        node: NodeId,
        life: u64,
        id: RequestId,
        result: Result<http::Response<Bytes>, TransportError>,
    },
    StreamData {
        node: NodeId,
        life: u64,
        request: RequestId,
        bytes: Bytes,
    },
    StreamEnd {
        node: NodeId,
        life: u64,
        request: RequestId,
    },
    StreamClosed {
        node: NodeId,
        life: u64,
        stream: StreamId,
    },
    Act(Action),
}

struct SimNode {
    node: Option<Node>,
    config: Config,
    url: Option<String>,
    /// Bumped at every restart: events for an earlier life are void.
    life: u64,
    timer_token: u64,
    timer_at: Option<Instant>,
    subscriptions: BTreeMap<Subscription, usize>,
    slow: Duration,
}

/// One open `GET /stream`, as the network sees it.
#[derive(Clone, Debug)]
struct SimStream {
    core: NodeId,
    core_life: u64,
    stream: StreamId,
    worker: NodeId,
    worker_life: u64,
    request: RequestId,
    /// Arrival time of the last chunk: TCP keeps a stream's bytes in order.
    last_arrival: Instant,
}

/// A whole cluster on a virtual clock. See the module docs.
pub struct Simulation {
    seed: u64,
    replay_hint: String,
    model: NetworkModel,
    dice: Dice,
    now: Instant,
    step: u64,
    max_steps: u64,
    agenda: Agenda<SimEvent>,
    nodes: BTreeMap<NodeId, SimNode>,
    /// Which node serves each core URL (the smallest id, should two share
    /// one), so a request finds its target without a scan of all nodes.
    urls: BTreeMap<String, NodeId>,
    /// Buffers `after_input` drains a node into, kept between inputs to
    /// spare allocations on every event.
    drained: (Vec<Transmit>, Vec<StreamOutput>, Vec<Event>),
    streams: Vec<SimStream>,
    partitions: Partitions,
    checker: Checker,
    transcript: Transcript,
    /// The last fault or route change: routing is compared with the
    /// reference only once the cluster had time to settle after it.
    last_disturbance: Instant,
    /// The last fault the simulation made (network change, partition,
    /// heal, crash, restart, leave): unlike a subscription, one that can
    /// move messages to another path.
    last_fault: Instant,
    /// The last failover or membership change a node reported.
    last_path_change: Instant,
    /// When each origin last sent copies again, and how many it had sent
    /// again by then (its counter restarts with its process).
    resends: BTreeMap<NodeId, (Instant, u64)>,
    /// Since when each node has said it is converged while its member list
    /// or routing table differs from that of a core it counts (see
    /// [`Simulation::check_convergence_claim`]).
    claims: BTreeMap<NodeId, Instant>,
    traffic: traffic::TrafficLog,
    /// Each node's last crash: copies routed before it through that node
    /// may have died with it.
    crashes: BTreeMap<NodeId, Instant>,
    published: u64,
    deliveries: BTreeMap<NodeId, Vec<Delivery>>,
    dropped_by_reason: BTreeMap<String, u64>,
    /// Every retained publish a node accepted.
    retained_writes: RetainedWrites,
}

impl Simulation {
    /// An empty cluster on a network of `model`, all randomness from `seed`.
    pub fn new(seed: u64, model: NetworkModel) -> Self {
        Simulation {
            seed,
            replay_hint: String::from("(rerun with this seed)"),
            model,
            dice: Dice::new(seed),
            now: Instant::ZERO,
            step: 0,
            max_steps: 50_000_000,
            agenda: Agenda::new(),
            nodes: BTreeMap::new(),
            urls: BTreeMap::new(),
            drained: (Vec::new(), Vec::new(), Vec::new()),
            streams: Vec::new(),
            partitions: Partitions::default(),
            checker: Checker::default(),
            transcript: Transcript::new(),
            last_disturbance: Instant::ZERO,
            last_fault: Instant::ZERO,
            last_path_change: Instant::ZERO,
            resends: BTreeMap::new(),
            claims: BTreeMap::new(),
            traffic: traffic::TrafficLog::default(),
            crashes: BTreeMap::new(),
            published: 0,
            deliveries: BTreeMap::new(),
            dropped_by_reason: BTreeMap::new(),
            retained_writes: RetainedWrites::default(),
        }
    }

    /// The command a violation prints to replay the run, with the seed put
    /// in front as `MQTT_CLUSTER_SEED=…`.
    pub fn with_replay_hint(mut self, command: impl Into<String>) -> Self {
        self.replay_hint = command.into();
        self
    }

    /// Keeps the transcript's lines (for debugging; the hash is always kept).
    pub fn record_transcript(mut self) -> Self {
        self.transcript.keep_lines();
        self
    }

    /// Stops a run that takes more than `steps` events (a livelock).
    pub fn with_step_limit(mut self, steps: u64) -> Self {
        self.max_steps = steps;
        self
    }

    /// Adds a node from its configuration, started now. A core is reached at
    /// `http://{nodeName}:{port}`, so name cores after the hosts in
    /// `clusters`.
    pub fn add_node(&mut self, config: Config) -> NodeId {
        let seed = self.dice.seed();
        let now = self.now();
        let id = config
            .node_name
            .clone()
            .unwrap_or_else(|| NodeId::from_seed(seed));
        let url = config
            .core
            .then(|| format!("http://{}:{}", id, config.port));
        let node = Node::new(config.clone(), now, seed).ok();
        if let Some(url) = &url {
            self.urls
                .entry(url.clone())
                .and_modify(|holder| {
                    if id < *holder {
                        *holder = id.clone();
                    }
                })
                .or_insert_with(|| id.clone());
        }
        self.nodes.insert(
            id.clone(),
            SimNode {
                node,
                config,
                url,
                life: 0,
                timer_token: 0,
                timer_at: None,
                subscriptions: BTreeMap::new(),
                slow: Duration::ZERO,
            },
        );
        // A node that just started has delivered nothing, so draining it
        // cannot break a guarantee.
        let _ = self.after_input(&id);
        id
    }

    /// A running node, for host actions the [`Action`]s do not cover. What
    /// its host does through it is not seen by the checker.
    pub fn node_mut(&mut self, id: &NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(id).and_then(|n| n.node.as_mut())
    }

    /// Every node's id.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().cloned().collect()
    }

    /// A running node.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.get(id).and_then(|n| n.node.as_ref())
    }

    /// The current simulated time.
    pub fn now(&self) -> Now {
        Now::new(
            self.now,
            WallTime::from_unix_millis(EPOCH_WALL_MS + self.now.as_millis()),
        )
    }

    /// Messages delivered to `node`'s host so far.
    pub fn deliveries_to(&self, node: &NodeId) -> &[Delivery] {
        self.deliveries.get(node).map_or(&[], Vec::as_slice)
    }

    /// The hash of everything that happened, in order.
    pub fn transcript_hash(&self) -> String {
        self.transcript.hash()
    }

    /// The transcript's lines, if [`Simulation::record_transcript`] was set.
    pub fn transcript(&self) -> Option<&[String]> {
        self.transcript.lines()
    }

    /// What the run did so far.
    pub fn report(&self) -> Report {
        Report {
            seed: self.seed,
            steps: self.step,
            simulated_ms: self.now.as_millis(),
            published: self.published,
            delivered: self.checker.deliveries,
            dropped: self.checker.dropped,
            dropped_by_reason: self.dropped_by_reason.clone(),
            routing_checks: self.checker.routing_checks,
            reordered: self.checker.reordered,
            confirmed: self.checker.confirmed,
            not_confirmed: self.checker.unconfirmed,
            delivered_again_after_restart: self.checker.delivered_again_after_restart,
            traffic: self
                .traffic
                .counts()
                .into_iter()
                .map(|((core, path), count)| {
                    (
                        format!("{} {path}", if core { "core" } else { "worker" }),
                        count,
                    )
                })
                .collect(),
            route_propagation: self.traffic.propagation(),
            transcript_hash: self.transcript_hash(),
        }
    }

    /// Changes how the network behaves from now on (for instance, back to
    /// reliable once a scenario's faults should stop).
    pub fn set_network(&mut self, model: NetworkModel) {
        self.model = model;
        self.last_disturbance = self.now;
        self.last_fault = self.now;
    }

    /// Schedules `action` `after` from now.
    pub fn schedule(&mut self, after: Duration, action: Action) {
        let at = self.now + after;
        self.push(at, SimEvent::Act(action));
    }

    /// Performs `action` now.
    pub fn act(&mut self, action: Action) -> Result<(), Violation> {
        self.guarded(|sim| sim.perform(action))
    }

    /// Runs every event due within `duration`, then moves the clock to its
    /// end.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), Violation> {
        let until = self.now + duration;
        while let Some((at, event)) = self.agenda.pop_due(until) {
            self.now = self.now.max(at);
            self.step += 1;
            if self.step > self.max_steps {
                return Err(self.violation(
                    "bounded run",
                    format!("more than {} steps: livelock", self.max_steps),
                ));
            }
            self.guarded(|sim| sim.handle(event))?;
            if self.step % QUEUE_CHECK_EVERY == 0 {
                self.check_queues()?;
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    fn guarded(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                Err(self.violation("no panic", message))
            }
        }
    }

    fn violation(&self, invariant: &'static str, detail: String) -> Violation {
        Violation {
            invariant,
            detail,
            seed: self.seed,
            step: self.step,
            at: self.now,
            replay: format!("MQTT_CLUSTER_SEED={} {}", self.seed, self.replay_hint),
        }
    }

    fn push(&mut self, at: Instant, event: SimEvent) {
        self.agenda.push(at, event);
    }

    /// A transcript line for an event that happens on every step.
    fn log(&mut self, parts: &[Part<'_>]) {
        self.transcript.write(self.now.as_millis(), parts);
    }

    /// A transcript line for a rarer event, which may need formatting.
    fn log_formatted(&mut self, line: std::fmt::Arguments<'_>) {
        self.transcript.write_formatted(self.now.as_millis(), line);
    }

    /// The line `act {action:?}`. A publish, the most frequent action, is
    /// written from parts when its text needs no escaping: the same text,
    /// without formatting a payload character by character.
    fn log_action(&mut self, action: &Action) {
        match action {
            Action::Publish {
                node,
                topic,
                payload,
                qos,
            } if debug_is_verbatim(topic) && debug_is_verbatim(payload) => self.log(&[
                Part::Text("act Publish { node: \""),
                Part::Text(node.as_str()),
                Part::Text("\", topic: \""),
                Part::Text(topic),
                Part::Text("\", payload: \""),
                Part::Text(payload),
                Part::Text("\", qos: "),
                Part::Text(qos_name(*qos)),
                Part::Text(" }"),
            ]),
            other => self.log_formatted(format_args!("act {other:?}")),
        }
    }

    fn life_of(&self, id: &NodeId) -> Option<u64> {
        self.nodes
            .get(id)
            .filter(|n| n.node.is_some())
            .map(|n| n.life)
    }

    /// The incarnation the node's current process numbers its messages
    /// under.
    fn first_incarnation_of(&self, id: &NodeId) -> Incarnation {
        self.nodes
            .get(id)
            .and_then(|n| n.node.as_ref())
            .map(|n| n.first_incarnation())
            .unwrap_or_default()
    }

    fn handle(&mut self, event: SimEvent) -> Result<(), Violation> {
        match event {
            SimEvent::Timer { node, life, token } => {
                let now = self.now();
                let due = self
                    .nodes
                    .get_mut(&node)
                    .filter(|n| n.life == life && n.timer_token == token);
                if let Some(SimNode {
                    node: Some(inner),
                    timer_at,
                    ..
                }) = due
                {
                    *timer_at = None;
                    inner.handle_timeout(now);
                    self.log(&[Part::Text("timer "), Part::Text(node.as_str())]);
                    self.after_input(&node)?;
                }
            }
            SimEvent::Request {
                from,
                life,
                transmit,
                answer,
            } => self.deliver_request(from, life, transmit, answer)?,
            SimEvent::Response {
                node,
                life,
                id,
                result,
            } => {
                let status = result.as_ref().map_or(0, |r| r.status().as_u16());
                self.input_to(
                    &node,
                    life,
                    &[
                        Part::Text("response "),
                        Part::Text(node.as_str()),
                        Part::Text(" #"),
                        Part::Number(id.0),
                        Part::Text(" "),
                        Part::Number(u64::from(status)),
                    ],
                    |n, now| n.handle_response(now, id, result),
                )?;
            }
            SimEvent::StreamData {
                node,
                life,
                request,
                bytes,
            } => {
                self.input_to(
                    &node,
                    life,
                    &[
                        Part::Text("stream-data "),
                        Part::Text(node.as_str()),
                        Part::Text(" #"),
                        Part::Number(request.0),
                        Part::Text(" "),
                        Part::Number(bytes.len() as u64),
                        Part::Text("b"),
                    ],
                    |n, now| n.handle_stream_data(now, request, &bytes),
                )?;
            }
            SimEvent::StreamEnd {
                node,
                life,
                request,
            } => {
                self.input_to(
                    &node,
                    life,
                    &[
                        Part::Text("stream-end "),
                        Part::Text(node.as_str()),
                        Part::Text(" #"),
                        Part::Number(request.0),
                    ],
                    |n, now| n.handle_stream_end(now, request),
                )?;
            }
            SimEvent::StreamClosed { node, life, stream } => {
                self.input_to(
                    &node,
                    life,
                    &[
                        Part::Text("stream-closed "),
                        Part::Text(node.as_str()),
                        Part::Text(" "),
                        Part::Number(stream.0),
                    ],
                    |n, now| n.handle_stream_closed(now, stream),
                )?;
            }
            SimEvent::Act(action) => self.perform(action)?,
        }
        Ok(())
    }

    /// Hands one input to a node of the given life (a restarted node does
    /// not get what was meant for its former life), then drains it.
    fn input_to(
        &mut self,
        node: &NodeId,
        life: u64,
        line: &[Part<'_>],
        input: impl FnOnce(&mut Node, Now),
    ) -> Result<(), Violation> {
        let now = self.now();
        let Some(inner) = self
            .nodes
            .get_mut(node)
            .filter(|n| n.life == life)
            .and_then(|n| n.node.as_mut())
        else {
            return Ok(());
        };
        // The transcript, not `self.log`: the node is still borrowed.
        self.transcript.write(self.now.as_millis(), line);
        input(inner, now);
        self.after_input(node)
    }

    /// The node serving `url`: the first by id whose URL it is.
    fn target_of(&self, url: &str) -> Option<NodeId> {
        let url = url.trim_end_matches('/');
        let serves = |id: &NodeId| {
            self.nodes
                .get(id)
                .is_some_and(|n| n.url.as_deref() == Some(url))
        };
        // The index answers nearly every lookup; a node re-added under a
        // new URL may have left it stale, and then the scan decides.
        if let Some(id) = self.urls.get(url).filter(|id| serves(id)) {
            return Some(id.clone());
        }
        self.nodes
            .iter()
            .find(|(_, n)| n.url.as_deref() == Some(url))
            .map(|(id, _)| id.clone())
    }

    fn request_timeout(&self, node: &NodeId) -> Duration {
        self.nodes
            .get(node)
            .map_or(Duration::from_secs(5), |n| n.config.request_timeout)
    }

    /// Puts a request of `from`, in its `life`, on the wire; `timeout` is
    /// how long `from` waits for an answer.
    fn send(&mut self, from: &NodeId, life: u64, timeout: Duration, transmit: Transmit) {
        let id = transmit.id;
        if self.dice.chance(self.model.drop) {
            // Lost on the way: the sender waits out its timeout.
            self.log(&[
                Part::Text("lost "),
                Part::Text(from.as_str()),
                Part::Text(" #"),
                Part::Number(id.0),
                Part::Text(" "),
                Part::Text(transmit.request.uri().path()),
            ]);
            let at = self.now + timeout;
            self.push(
                at,
                SimEvent::Response {
                    node: from.clone(),
                    life,
                    id,
                    result: Err(TransportError::Timeout),
                },
            );
            return;
        }
        let duplicate = !transmit.streaming && self.dice.chance(self.model.duplicate);
        let at = self.now + self.dice.latency(&self.model);
        if duplicate {
            let copy = Transmit {
                request: transmit.request.clone(),
                ..transmit.clone()
            };
            let later = at + self.dice.latency(&self.model);
            self.push(
                later,
                SimEvent::Request {
                    from: from.clone(),
                    life,
                    transmit: copy,
                    answer: false,
                },
            );
        }
        self.push(
            at,
            SimEvent::Request {
                from: from.clone(),
                life,
                transmit,
                answer: true,
            },
        );
    }

    fn deliver_request(
        &mut self,
        from: NodeId,
        life: u64,
        transmit: Transmit,
        answer: bool,
    ) -> Result<(), Violation> {
        let Transmit {
            id, to, request, ..
        } = transmit;
        // Kept for the transcript once the request is gone; a request's
        // path is static, so this copies no text.
        let path = request.uri().path_and_query().cloned();
        let path = path.as_ref().map_or("/", |p| p.path());
        let target = self.target_of(&to);
        let reachable = target
            .as_ref()
            .is_some_and(|t| self.partitions.allows(&from, t));
        let up = target.as_ref().and_then(|t| self.life_of(t));
        let result = match (&target, up, reachable) {
            (Some(_), Some(_), false) => {
                // A partition swallows the request; the sender times out.
                if answer {
                    let at = self.now + self.request_timeout(&from);
                    self.push(
                        at,
                        SimEvent::Response {
                            node: from.clone(),
                            life,
                            id,
                            result: Err(TransportError::Timeout),
                        },
                    );
                }
                self.log(&[
                    Part::Text("partitioned "),
                    Part::Text(from.as_str()),
                    Part::Text(" -> "),
                    Part::Text(&to),
                    Part::Text(path),
                ]);
                return Ok(());
            }
            (Some(t), Some(target_life), true) => {
                let now = self.now();
                let request_bytes = request.body().len();
                let response = match self.nodes.get_mut(t).and_then(|n| n.node.as_mut()) {
                    Some(node) => node.handle_request(now, request),
                    None => return Ok(()),
                };
                let from_core = self.nodes.get(&from).is_some_and(|n| n.config.core);
                self.traffic
                    .exchange(from_core, path, request_bytes + response.body().len());
                if let Some(stream) = response.extensions().get::<StreamId>().copied() {
                    if answer {
                        self.streams.push(SimStream {
                            core: t.clone(),
                            core_life: target_life,
                            stream,
                            worker: from.clone(),
                            worker_life: life,
                            request: id,
                            last_arrival: self.now,
                        });
                    }
                }
                Ok(response)
            }
            _ => Err(TransportError::Connect(format!("{to} is down"))),
        };
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        self.log(&[
            Part::Text("request "),
            Part::Text(from.as_str()),
            Part::Text(" -> "),
            Part::Text(&to),
            Part::Text(path),
            Part::Text(" "),
            Part::Number(u64::from(status)),
            Part::Text(if answer { "" } else { " (duplicate)" }),
        ]);
        if answer {
            let lost = result.is_ok() && self.dice.chance(self.model.drop);
            let (at, result) = if lost {
                (
                    self.now + self.request_timeout(&from),
                    Err(TransportError::Timeout),
                )
            } else {
                (self.now + self.dice.latency(&self.model), result)
            };
            // The head of a stream travels on the stream's connection: its
            // bytes may not overtake it.
            if let Some(s) = self
                .streams
                .iter_mut()
                .rev()
                // Numbers first: comparing them is cheaper than comparing
                // names, and every answer searches every stream.
                .find(|s| s.request == id && s.worker == from)
            {
                s.last_arrival = s.last_arrival.max(at);
            }
            self.push(
                at,
                SimEvent::Response {
                    node: from.clone(),
                    life,
                    id,
                    result,
                },
            );
        }
        if let Some(t) = target.filter(|_| up.is_some() && reachable) {
            self.after_input(&t)?;
        }
        Ok(())
    }

    /// Drains a node after an input: its requests go on the wire, its stream
    /// bytes to their readers, its events to the checker; its timer is set.
    fn after_input(&mut self, id: &NodeId) -> Result<(), Violation> {
        if let Some(core) = self
            .nodes
            .get(id)
            .filter(|n| n.config.core)
            .and_then(|n| n.node.as_ref())
        {
            let now = self.now;
            self.traffic
                .core_changed(id, now, |owner, sub| core.routes().contains(owner, sub));
        }
        let Some(n) = self.nodes.get_mut(id) else {
            return Ok(());
        };
        let (life, timeout) = (n.life, n.config.request_timeout);
        let Some(node) = n.node.as_mut() else {
            return Ok(());
        };
        let (mut transmits, mut outputs, mut events) = std::mem::take(&mut self.drained);
        while let Some(t) = node.poll_transmit() {
            transmits.push(t);
        }
        while let Some(o) = node.poll_stream() {
            outputs.push(o);
        }
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        let deadline = node.poll_timeout();
        let resent = node.resent_for_checker();
        let seen = self.resends.get(id).map_or(0, |(_, n)| *n);
        if resent != seen {
            let now = self.now;
            self.resends.insert(id.clone(), (now, resent));
        }
        for transmit in transmits.drain(..) {
            self.send(id, life, timeout, transmit);
        }
        for output in outputs.drain(..) {
            self.carry_stream_output(id, output);
        }
        let mut observed = Ok(());
        for event in events.drain(..) {
            if observed.is_ok() {
                observed = self.observe(id, event);
            }
        }
        // Emptied, the buffers keep their capacity for the next input.
        self.drained = (transmits, outputs, events);
        observed?;
        self.set_timer(id, deadline);
        self.check_convergence_claim(id)
    }

    /// A node may say it is converged only while its member list and its
    /// routing table are those of every core it counts (alive or suspect),
    /// give or take how long news takes to reach it: a suspect timeout (a
    /// silent core turns suspect, which ends the claim), two heartbeat
    /// intervals (the next word from each core) and a request timeout, and
    /// for a worker, which hears about the other cores from its core, one
    /// heartbeat interval and request timeout more. Longer than that, the
    /// claim is false.
    fn check_convergence_claim(&mut self, id: &NodeId) -> Result<(), Violation> {
        let Some(n) = self.nodes.get(id) else {
            return Ok(());
        };
        let Some(node) = n.node.as_ref() else {
            self.claims.remove(id);
            return Ok(());
        };
        let differing = if node.phase() == Phase::Running && node.convergence().converged {
            let mine = (node.members_digest(), node.routes_digest());
            self.nodes
                .iter()
                .filter(|(other, o)| o.config.core && *other != id)
                .filter(|(other, _)| {
                    node.member(other).is_some_and(|r| {
                        matches!(r.state, MemberState::Alive | MemberState::Suspect)
                    })
                })
                .filter_map(|(other, o)| o.node.as_ref().map(|core| (other, core)))
                .find(|(_, core)| {
                    core.phase() == Phase::Running
                        && (core.members_digest(), core.routes_digest()) != mine
                })
                .map(|(other, _)| other.clone())
        } else {
            None
        };
        let Some(other) = differing else {
            self.claims.remove(id);
            return Ok(());
        };
        // A core's word about another core is as old as that core's last
        // answer; a worker hears its core's word one heartbeat later.
        let relay = if n.config.core {
            Duration::ZERO
        } else {
            n.config.heartbeat_interval + n.config.request_timeout
        };
        let grace = n.config.suspect_timeout
            + n.config.heartbeat_interval * 2
            + n.config.request_timeout
            + relay;
        let since = *self.claims.entry(id.clone()).or_insert(self.now);
        if self.now.saturating_since(since) > grace {
            let differences = self.differences([id, &other].into_iter());
            return Err(self.violation(
                "honest convergence",
                format!(
                    "{id} has said it is converged for {:?} while its member list or routing table differs from {other}'s{differences}",
                    self.now.saturating_since(since)
                ),
            ));
        }
        Ok(())
    }

    fn set_timer(&mut self, id: &NodeId, deadline: Option<Instant>) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.timer_at == deadline {
            return;
        }
        n.timer_at = deadline;
        n.timer_token += 1;
        let (life, token) = (n.life, n.timer_token);
        if let Some(at) = deadline {
            let at = at.max(self.now);
            self.push(
                at,
                SimEvent::Timer {
                    node: id.clone(),
                    life,
                    token,
                },
            );
        }
    }

    fn carry_stream_output(&mut self, core: &NodeId, output: StreamOutput) {
        let (stream, bytes) = match output {
            StreamOutput::Data { stream, bytes } => (stream, Some(bytes)),
            StreamOutput::Close { stream } => (stream, None),
        };
        let Some(index) = self
            .streams
            .iter()
            .position(|s| s.stream == stream && s.core == *core)
        else {
            return;
        };
        let slow = self
            .nodes
            .get(&self.streams[index].worker)
            .map_or(Duration::ZERO, |n| n.slow);
        let at = (self.now + self.dice.latency(&self.model) + slow)
            .max(self.streams[index].last_arrival);
        self.streams[index].last_arrival = at;
        let s = self.streams[index].clone();
        match bytes {
            Some(bytes) => {
                self.traffic.stream(bytes.len());
                // TCP may hand the reader any split of the bytes.
                let mut rest = bytes;
                while !rest.is_empty() {
                    let cut = if self.model.split_streams && rest.len() > 1 && self.dice.chance(0.5)
                    {
                        1 + self.dice.below(rest.len() as u64 - 1) as usize
                    } else {
                        rest.len()
                    };
                    let chunk = rest.split_to(cut);
                    self.push(
                        at,
                        SimEvent::StreamData {
                            node: s.worker.clone(),
                            life: s.worker_life,
                            request: s.request,
                            bytes: chunk,
                        },
                    );
                }
            }
            None => {
                self.streams.remove(index);
                self.push(
                    at,
                    SimEvent::StreamEnd {
                        node: s.worker,
                        life: s.worker_life,
                        request: s.request,
                    },
                );
            }
        }
    }

    /// Breaks the streams that `pred` selects: both ends learn of it.
    fn break_streams(&mut self, pred: impl Fn(&SimStream) -> bool) {
        let (broken, kept): (Vec<SimStream>, Vec<SimStream>) =
            self.streams.drain(..).partition(|s| pred(s));
        self.streams = kept;
        for s in broken {
            let at = (self.now + self.dice.latency(&self.model)).max(s.last_arrival);
            self.push(
                at,
                SimEvent::StreamEnd {
                    node: s.worker.clone(),
                    life: s.worker_life,
                    request: s.request,
                },
            );
            self.push(
                at,
                SimEvent::StreamClosed {
                    node: s.core.clone(),
                    life: s.core_life,
                    stream: s.stream,
                },
            );
        }
    }

    fn observe(&mut self, node: &NodeId, event: Event) -> Result<(), Violation> {
        match event {
            Event::Deliver(delivery) => {
                self.log(&[
                    Part::Text("deliver "),
                    Part::Text(node.as_str()),
                    Part::Text(" "),
                    Part::Text(delivery.topic.as_str()),
                    Part::Text(" #"),
                    Part::Number(delivery.seq),
                    Part::Text(" from "),
                    Part::Text(delivery.origin.as_str()),
                    Part::Text(" qos"),
                    Part::Number(u64::from(delivery.qos.as_u8())),
                ]);
                // Order holds along one path; only a fault or a failover
                // moves copies to another (a subscription never does).
                let recent = self.last_fault.max(self.last_path_change);
                let path_changed = self.now.saturating_since(recent) <= self.settle_time();
                // A copy its origin may have sent again arrives late, not
                // out of order on its path.
                let resent_at = self.resends.get(&delivery.origin).map(|(at, _)| *at);
                let life = self.life_of(node).unwrap_or_default();
                if let Err((invariant, detail)) = self.checker.delivered(
                    node,
                    life,
                    delivery.incarnation,
                    &delivery,
                    path_changed,
                    resent_at,
                ) {
                    return Err(self.violation(invariant, detail));
                }
                self.deliveries
                    .entry(node.clone())
                    .or_default()
                    .push(delivery);
            }
            Event::RetainSet(message)
                if !self
                    .retained_writes
                    .was_published(&message.topic, &message.payload) =>
            {
                return Err(self.violation(
                    "retained sets converge",
                    format!(
                        "{node} was told to retain {} with a payload no one published",
                        message.topic.as_str()
                    ),
                ));
            }
            Event::Dropped {
                peer,
                count,
                reason,
                copies,
            } => {
                self.checker.dropped += count;
                if let Err((invariant, detail)) = self.checker.dropped_copies(reason, &copies) {
                    return Err(self.violation(invariant, detail));
                }
                let reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.log_formatted(format_args!("dropped {node} -> {peer} {count} {reason}"));
                *self.dropped_by_reason.entry(reason).or_default() += count;
            }
            Event::Confirmed { id, nodes } => {
                self.log_formatted(format_args!("confirmed {node} {} {nodes:?}", id.0));
                let incarnation = self.first_incarnation_of(node);
                if let Err((invariant, detail)) =
                    self.checker.settled(node, incarnation, id, &nodes, &[])
                {
                    return Err(self.violation(invariant, detail));
                }
            }
            Event::NotConfirmed {
                id,
                reason,
                failed,
                confirmed,
            } => {
                self.log_formatted(format_args!(
                    "not confirmed {node} {} {reason:?} {failed:?} {confirmed:?}",
                    id.0
                ));
                let incarnation = self.first_incarnation_of(node);
                if let Err((invariant, detail)) =
                    self.checker
                        .settled(node, incarnation, id, &confirmed, &failed)
                {
                    return Err(self.violation(invariant, detail));
                }
            }
            other => {
                // Failovers and membership changes move messages to other
                // paths: order is guaranteed along one path only.
                if matches!(
                    other,
                    Event::CoreUnreachable { .. }
                        | Event::Registered { .. }
                        | Event::Reincarnated { .. }
                        | Event::MemberDead { .. }
                        | Event::MemberLeft { .. }
                        | Event::MemberJoined { .. }
                ) {
                    self.last_path_change = self.now;
                }
                let text = serde_json::to_string(&other).unwrap_or_default();
                self.log_formatted(format_args!("event {node} {text}"));
            }
        }
        Ok(())
    }

    /// A local client of `node` subscribes (or unsubscribes): the node is
    /// told, and so is the truth the checker routes against.
    fn host_subscription(
        &mut self,
        node: &NodeId,
        filter: &str,
        subscribe: bool,
    ) -> Result<(), Violation> {
        let now = self.now();
        let sub = Subscription::parse(filter)
            .map_err(|e| self.violation("valid scenario", e.to_string()))?;
        let new_route = subscribe
            && self
                .nodes
                .get(node)
                .is_some_and(|n| n.node.is_some() && !n.subscriptions.contains_key(&sub));
        if new_route {
            let cores = self
                .nodes
                .iter()
                .filter(|(_, n)| n.config.core && n.node.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            self.traffic.subscribed(node, sub.clone(), self.now, cores);
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return Ok(());
        };
        let Some(inner) = n.node.as_mut() else {
            return Ok(());
        };
        if subscribe {
            let _ = inner.subscribe(now, filter);
            *n.subscriptions.entry(sub).or_insert(0) += 1;
        } else {
            let _ = inner.unsubscribe(now, filter);
            if let Some(count) = n.subscriptions.get_mut(&sub) {
                *count -= 1;
                if *count == 0 {
                    n.subscriptions.remove(&sub);
                }
            }
        }
        self.last_disturbance = self.now;
        self.after_input(node)
    }

    fn perform(&mut self, action: Action) -> Result<(), Violation> {
        let now = self.now();
        self.log_action(&action);
        match action {
            Action::Subscribe { node, filter } => self.host_subscription(&node, &filter, true)?,
            Action::Unsubscribe { node, filter } => {
                self.host_subscription(&node, &filter, false)?
            }
            Action::Publish {
                node,
                topic,
                payload,
                qos,
            } => self.publish(&node, &topic, payload, qos, false)?,
            Action::Retain {
                node,
                topic,
                payload,
            } => self.publish(&node, &topic, payload, Qos::AtLeastOnce, true)?,
            Action::Leave { node } => {
                if let Some(inner) = self.nodes.get_mut(&node).and_then(|n| n.node.as_mut()) {
                    inner.leave(now);
                }
                self.last_disturbance = self.now;
                self.last_fault = self.now;
                self.after_input(&node)?;
            }
            Action::Partition { side_a, side_b } => {
                self.partitions.cut(&side_a, &side_b);
                let parts = self.partitions.clone();
                self.break_streams(|s| !parts.allows(&s.core, &s.worker));
                self.last_disturbance = self.now;
                self.last_fault = self.now;
            }
            Action::Heal => {
                self.partitions.heal();
                self.last_disturbance = self.now;
                self.last_fault = self.now;
            }
            Action::Crash { node } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.node = None;
                    n.subscriptions.clear();
                    n.timer_at = None;
                }
                self.break_streams(|s| s.core == node || s.worker == node);
                self.last_disturbance = self.now;
                self.last_fault = self.now;
                self.crashes.insert(node.clone(), self.now);
                self.traffic.gone(&node);
            }
            Action::Restart { node } => {
                let seed = self.dice.seed();
                if let Some(n) = self.nodes.get_mut(&node).filter(|n| n.node.is_none()) {
                    n.life += 1;
                    n.node = Node::new(n.config.clone(), now, seed).ok();
                    n.timer_at = None;
                }
                self.last_disturbance = self.now;
                self.last_fault = self.now;
                self.after_input(&node)?;
            }
            Action::SlowReader { node, delay } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.slow = delay;
                }
            }
        }
        Ok(())
    }

    /// How long after a disturbance routing must match the reference.
    fn settle_time(&self) -> Duration {
        // Detection, a few heartbeats to spread the news, and a worker that
        // may be waiting out its longest backoff before registering again.
        let slowest = self
            .nodes
            .values()
            .map(|n| {
                n.config.dead_timeout
                    + n.config.heartbeat_interval * 3
                    + n.config.retry_backoff_max
                    + n.config.request_timeout
            })
            .max()
            .unwrap_or_default();
        slowest + self.model.latency_max * 20
    }

    fn publish(
        &mut self,
        node: &NodeId,
        topic: &str,
        payload: String,
        qos: Qos,
        retain: bool,
    ) -> Result<(), Violation> {
        let now = self.now();
        let topic_name =
            TopicName::new(topic).map_err(|e| self.violation("valid scenario", e.to_string()))?;
        let message = Message {
            topic: topic_name.clone(),
            payload: Bytes::from(payload),
            qos,
            retain,
            properties: None,
        };
        let payload = message.payload.clone();
        let Some(inner) = self.nodes.get_mut(node).and_then(|n| n.node.as_mut()) else {
            return Ok(());
        };
        if inner.phase() != Phase::Running {
            return Ok(());
        }
        let incarnation = inner.first_incarnation();
        let before = inner.retained_set().stamp_of(&topic_name).cloned();
        let Ok(routing) = inner.publish(now, message) else {
            return Ok(());
        };
        // The node's own stamp on the topic, if it took the write.
        let stamp = inner
            .retained_set()
            .stamp_of(&topic_name)
            .filter(|s| Some(*s) != before.as_ref() && s.origin == *node)
            .cloned();
        // The node's own numbers: they run from 1 per destination, and jump
        // past the old ones for a destination it forgot and meets again.
        let targets: Vec<(NodeId, u64)> = routing
            .remote
            .iter()
            .map(|t| (t.clone(), inner.last_sequence_to(t).unwrap_or_default()))
            .collect();
        let life = self.life_of(node).unwrap_or_default();
        if let (true, Some(stamp)) = (retain, stamp) {
            self.retained_writes.accepted(
                topic_name.clone(),
                Write {
                    stamp,
                    payload,
                    life: (node.clone(), life),
                },
            );
        }
        self.published += 1;
        self.checker.routed(
            node,
            incarnation,
            routing.id,
            &targets,
            Published { at: self.now, qos },
        );
        // `publish {node} {topic} qos{n} -> {remote:?}`, the list written
        // as `Debug` writes it (node names need no escaping).
        let mut line = Vec::with_capacity(8 + 3 * routing.remote.len());
        line.extend([
            Part::Text("publish "),
            Part::Text(node.as_str()),
            Part::Text(" "),
            Part::Text(topic),
            Part::Text(" qos"),
            Part::Number(u64::from(qos.as_u8())),
            Part::Text(" -> ["),
        ]);
        for (i, target) in routing.remote.iter().enumerate() {
            line.push(Part::Text(if i == 0 { "\"" } else { ", \"" }));
            line.push(Part::Text(target.as_str()));
            line.push(Part::Text("\""));
        }
        line.push(Part::Text("]"));
        self.log(&line);

        let settled = self.partitions.is_empty()
            && self.now.saturating_since(self.last_disturbance) > self.settle_time();
        if settled {
            self.checker.routing_checks += 1;
            let truth = self
                .nodes
                .iter()
                .filter(|(_, n)| n.node.as_ref().is_some_and(|x| x.phase() == Phase::Running))
                .map(|(id, n)| (id, &n.subscriptions));
            let (plain, groups) = reference_targets(&topic_name, truth);
            let mut chosen: BTreeSet<NodeId> = routing.remote.iter().cloned().collect();
            if routing.local {
                chosen.insert(node.clone());
            }
            // Each shared group sends to one of its holders; one node may
            // serve several groups, so a node beyond the plain matches must
            // be a holder of some group, and there can be no more of them
            // than groups.
            let beyond_plain: Vec<&NodeId> =
                chosen.iter().filter(|n| !plain.contains(*n)).collect();
            if beyond_plain.len() > groups.len() {
                return Err(self.violation(
                    "exact routing",
                    format!(
                        "{topic}: {beyond_plain:?} chosen for {} shared group(s)",
                        groups.len()
                    ),
                ));
            }
            let allowed: BTreeSet<NodeId> = plain
                .iter()
                .chain(groups.values().flatten())
                .cloned()
                .collect();
            let missing: Vec<&NodeId> = plain.iter().filter(|n| !chosen.contains(*n)).collect();
            let extra: Vec<&NodeId> = chosen.iter().filter(|n| !allowed.contains(*n)).collect();
            let groups_unserved = groups
                .values()
                .filter(|holders| !holders.iter().any(|h| chosen.contains(h)))
                .count();
            if !missing.is_empty() || !extra.is_empty() || groups_unserved > 0 {
                return Err(self.violation(
                    "exact routing",
                    format!(
                        "{node} published {topic}: missing {missing:?}, extra {extra:?}, {groups_unserved} shared group(s) unserved"
                    ),
                ));
            }
        }
        self.after_input(node)
    }

    fn check_queues(&self) -> Result<(), Violation> {
        for (id, n) in &self.nodes {
            let Some(node) = n.node.as_ref() else {
                continue;
            };
            // The maxima settle it for nearly every node; only a node over
            // a bound is searched for the link to name.
            let deepest = node.deepest_queues();
            if deepest.queued <= n.config.queue_length
                && deepest.in_flight <= n.config.max_in_flight
            {
                continue;
            }
            // `queueLength` bounds QoS 0 messages; QoS 1 and 2 ones may take
            // a queue over it, but only while it holds no QoS 0 message
            // (they take a QoS 0 message's place first), and no more than
            // every origin's confirmation window.
            let qos1_bound = crate::auth::replay::WINDOW as usize * self.nodes.len();
            for (peer, depth) in node.queue_depths() {
                let qos1 = depth.queued - depth.queued_at_most_once;
                let over = depth.queued > n.config.queue_length;
                if depth.queued_at_most_once > n.config.queue_length
                    || (over && depth.queued_at_most_once > 0)
                    || qos1 > qos1_bound
                    || depth.in_flight > n.config.max_in_flight
                {
                    return Err(self.violation(
                        "bounded queues",
                        format!(
                            "{id} -> {peer}: {} queued, {} of them QoS 0 (bound {}), {} in \
                             flight (bound {})",
                            depth.queued,
                            depth.queued_at_most_once,
                            n.config.queue_length,
                            depth.in_flight,
                            n.config.max_in_flight
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Which live member records, and which members' route versions, the
    /// running nodes disagree on, as each node holds them: what a failed
    /// convergence check needs to be read.
    fn differences<'a>(&self, running: impl Iterator<Item = &'a NodeId> + Clone) -> String {
        let nodes = |id: &'a NodeId| self.nodes.get(id)?.node.as_ref().map(|n| (id, n));
        let members = running.clone().filter_map(nodes).map(|(id, node)| {
            let status = node.status();
            let records = status.members.iter().filter_map(|m| node.member(&m.id));
            let live = records.filter(|r| !r.state.is_gone()).map(|r| {
                let text = format!(
                    "{:?}/{}/{}@{}:{}/{:?}",
                    r.state, r.incarnation.0, r.home, r.stamp.clock, r.stamp.by, r.address
                );
                (r.id.clone(), text)
            });
            (id, live.collect())
        });
        let routes = running.filter_map(nodes).map(|(id, node)| {
            let versions = node.routes().versions().into_iter().map(|v| {
                let text = format!("{}.{}", v.incarnation.0, v.seq);
                (v.node, text)
            });
            (id, versions.collect())
        });
        disagreements("member", members.collect()) + &disagreements("routes of", routes.collect())
    }

    /// All running members agree on membership and routes, see each other
    /// alive, hold only the routes of running members, and each says it is
    /// converged ([`Status::convergence`](crate::Status::convergence)).
    /// Call after a quiet period of a few dead timeouts.
    pub fn check_converged(&self) -> Result<(), Violation> {
        let running: BTreeMap<&NodeId, crate::node::Status> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.node.as_ref().map(|node| (id, node.status())))
            .filter(|(_, s)| s.phase == Phase::Running)
            .collect();
        let digests: BTreeSet<(&String, &String, &String)> = running
            .values()
            .map(|s| (&s.members_digest, &s.routes_digest, &s.retained_digest))
            .collect();
        if digests.len() > 1 {
            let views: Vec<String> = running
                .iter()
                .map(|(id, s)| {
                    format!(
                        "{id}: members {} routes {} retained {}",
                        s.members_digest, s.routes_digest, s.retained_digest
                    )
                })
                .collect();
            let differences = self.differences(running.keys().copied());
            return Err(self.violation(
                "convergence",
                format!("views differ: {views:?}{differences}"),
            ));
        }
        self.check_retained(running.keys().copied())?;
        let expected_routes: usize = running
            .keys()
            .map(|id| self.nodes.get(*id).map_or(0, |n| n.subscriptions.len()))
            .sum();
        for (id, status) in &running {
            for other in running.keys() {
                let alive = status
                    .members
                    .iter()
                    .any(|m| m.id == **other && m.state == MemberState::Alive);
                if !alive {
                    return Err(
                        self.violation("convergence", format!("{id} does not see {other} alive"))
                    );
                }
            }
            for member in status
                .members
                .iter()
                .filter(|m| m.state == MemberState::Alive)
            {
                if !running.contains_key(&member.id) {
                    return Err(self.violation(
                        "convergence",
                        format!("{id} sees {} alive, which is not running", member.id),
                    ));
                }
            }
            // The views agree, so every node must say so by now; a worker
            // hears that its core came to agree with the other cores from
            // its next heartbeat answer.
            if !status.convergence.converged && !self.hears_soon(id, status, &running) {
                return Err(self.violation(
                    "convergence signal",
                    format!(
                        "{id} holds the common view but reports not converged (since {} ms, \
                         differing {:?})",
                        status.convergence.since_ms, status.convergence.differing
                    ),
                ));
            }
            if status.routes != expected_routes {
                return Err(self.violation(
                    "convergence",
                    format!(
                        "{id} holds {} routes; the running hosts subscribed {expected_routes}",
                        status.routes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether worker `id` agrees with its core and waits only to hear
    /// that the core came to agree with the others: its core turned
    /// converged within a heartbeat interval and a request timeout.
    fn hears_soon(
        &self,
        id: &NodeId,
        status: &crate::node::Status,
        running: &BTreeMap<&NodeId, crate::node::Status>,
    ) -> bool {
        let (Some(core), Some(n)) = (&status.core, self.nodes.get(id)) else {
            return false;
        };
        let Some(home) = running.get(core) else {
            return false;
        };
        let lag = n.config.heartbeat_interval + n.config.request_timeout;
        let since = Instant::from_millis(home.convergence.since_ms);
        !status.convergence.differing.contains(core)
            && home.convergence.converged
            && self.now.saturating_since(since) <= lag
    }

    /// Every running node's retained set holds, per topic, the last write
    /// of the retained publishes accepted (writes of a life that crashed or
    /// left since may be missing), and nothing no one published. Once the
    /// bound made a node refuse a write, which topics stay depends on
    /// timing: then the sets must only agree (checked with the digests),
    /// stay within the bound, and hold published values.
    fn check_retained<'a>(
        &self,
        running: impl Iterator<Item = &'a NodeId> + Clone,
    ) -> Result<(), Violation> {
        if self.retained_writes.is_empty() {
            return Ok(());
        }
        let limited = running
            .clone()
            .filter_map(|id| self.node(id))
            .any(|n| n.stats().retained_refused > 0);
        let durable = |(origin, life): &(NodeId, u64)| {
            self.nodes.get(origin).is_some_and(|n| {
                n.life == *life && n.node.as_ref().is_some_and(|x| x.phase() == Phase::Running)
            })
        };
        for id in running {
            let Some(node) = self.node(id) else { continue };
            if !node.retained_set().is_enabled() {
                continue;
            }
            let set = node.retained_set();
            if set.len() > set.limit() {
                return Err(self.violation(
                    "retained sets converge",
                    format!(
                        "{id} holds {} topics over its limit {}",
                        set.len(),
                        set.limit()
                    ),
                ));
            }
            let checked = if limited {
                self.retained_writes.check_published(id, set)
            } else {
                self.retained_writes.check(id, set, durable)
            };
            checked.map_err(|detail| self.violation("retained sets converge", detail))?;
        }
        Ok(())
    }

    /// The promise of end-to-end confirmation, checked once the run is
    /// quiet: every QoS 1/2 copy whose origin and destination ran from its
    /// publish to now arrived, unless the origin reported that this
    /// destination will never confirm it; and every QoS 1/2 publish of an
    /// origin that ran from its publish to now was settled (confirmed or
    /// not). No crash of a core that relayed a copy, and no drop on the
    /// way, excuses a loss: the origin sends again until the destination
    /// confirms. Call after faults stopped and a quiet period longer than
    /// the origin's resend interval (three `deadTimeout`s).
    pub fn check_no_loss(&self) -> Result<(), Violation> {
        let running: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.node.as_ref().is_some_and(|x| x.phase() == Phase::Running))
            .map(|(id, _)| id.clone())
            .collect();
        let crashed_since =
            |node: &NodeId, at: Instant| self.crashes.get(node).is_some_and(|c| *c >= at);
        let lost = self.checker.lost_silently(&running, crashed_since);
        if !lost.is_empty() {
            let shown: Vec<String> = lost
                .iter()
                .take(5)
                .map(|(o, i, d, s)| format!("{o}@{i} -> {d} #{s}"))
                .collect();
            return Err(self.violation(
                "QoS 1 never lost",
                format!(
                    "{} copies neither delivered nor reported unconfirmed to their origin; \
                     e.g. {shown:?}",
                    lost.len()
                ),
            ));
        }
        let unsettled = self.checker.unsettled(&running, crashed_since);
        if !unsettled.is_empty() {
            let shown: Vec<String> = unsettled
                .iter()
                .take(5)
                .map(|(o, i, id)| format!("{o}@{i} publish {}", id.0))
                .collect();
            return Err(self.violation(
                "every publish settled",
                format!(
                    "{} QoS 1/2 publishes neither confirmed nor reported unconfirmed; \
                     e.g. {shown:?}",
                    unsettled.len()
                ),
            ));
        }
        Ok(())
    }
}

/// One line per key the views disagree on, each node's value beside its
/// name (`-` for none).
fn disagreements(label: &str, views: Vec<(&NodeId, BTreeMap<NodeId, String>)>) -> String {
    let keys: BTreeSet<&NodeId> = views.iter().flat_map(|(_, v)| v.keys()).collect();
    let mut out = String::new();
    for key in keys {
        let seen: BTreeSet<Option<&String>> = views.iter().map(|(_, v)| v.get(key)).collect();
        if seen.len() > 1 {
            let by_node: Vec<String> = views
                .iter()
                .map(|(id, v)| format!("{id}={}", v.get(key).map_or("-", String::as_str)))
                .collect();
            out.push_str(&format!("\n  {label} {key}: {}", by_node.join(" ")));
        }
    }
    out
}
