//! A hand-pumped cluster: nodes in one process, requests carried from
//! `poll_transmit` to `handle_request` and back as plain function calls, a
//! manual clock, and switches to silence or kill a node.
//!
//! Delivery is immediate and in order; the deterministic simulator with
//! latency, loss and reordering is a separate, richer tool.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use mqtt_cluster_core::{
    Config, Event, Instant, Node, NodeId, Now, RequestId, Status, StreamId, StreamOutput,
    TransportError, WallTime,
};

/// Wall-clock time at the harness's instant zero.
pub const EPOCH_WALL_MS: u64 = 1_700_000_000_000;

/// What a silenced or killed node does to requests sent to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Answers.
    Up,
    /// Requests to it time out (a hung process or a dropped link).
    Silent,
}

struct Member {
    node: Node,
    config: Config,
    seed: u64,
    url: Option<String>,
    reachability: Reachability,
    events: Vec<Event>,
    /// How far this node's wall clock is from the harness's, in ms.
    wall_offset_ms: i64,
}

impl Member {
    /// `now` as this node's clocks read it: the same instant, its own wall.
    fn clock(&self, now: Now) -> Now {
        let wall = now
            .wall
            .as_unix_millis()
            .saturating_add_signed(self.wall_offset_ms);
        Now::new(now.instant, WallTime::from_unix_millis(wall))
    }
}

/// A fault the harness injects into the next matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request never arrives; the sender sees a timeout.
    LoseRequest,
    /// The request is handled but its response never arrives; the sender
    /// sees a timeout.
    LoseResponse,
}

#[derive(Clone, Debug)]
struct ArmedFault {
    from: NodeId,
    path: String,
    fault: Fault,
}

/// A stream from a core to a worker, in flight in the harness.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OpenStream {
    core: NodeId,
    stream: StreamId,
    worker: NodeId,
    request: RequestId,
}

/// Nodes pumped by hand with a manual clock.
pub struct PumpedCluster {
    now: Instant,
    members: BTreeMap<NodeId, Member>,
    streams: Vec<OpenStream>,
    faults: Vec<ArmedFault>,
    /// Workers whose stream bytes are held back (slow readers), with what
    /// is waiting for them.
    stalled: BTreeMap<NodeId, Vec<(RequestId, Option<Bytes>)>>,
    /// Every request delivered, as `(from, to, path, status)`.
    pub log: Vec<(NodeId, String, String, u16)>,
}

impl Default for PumpedCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl PumpedCluster {
    /// An empty cluster at instant zero.
    pub fn new() -> Self {
        PumpedCluster {
            now: Instant::ZERO,
            members: BTreeMap::new(),
            streams: Vec::new(),
            faults: Vec::new(),
            stalled: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    /// Injects `fault` into the next request `from` sends to `path`.
    pub fn inject(&mut self, from: &NodeId, path: &str, fault: Fault) {
        self.faults.push(ArmedFault {
            from: from.clone(),
            path: path.to_owned(),
            fault,
        });
    }

    /// Holds back the bytes of `worker`'s stream (a reader that stopped
    /// reading) until [`Self::resume`].
    pub fn stall(&mut self, worker: &NodeId) {
        self.stalled.entry(worker.clone()).or_default();
    }

    /// Hands a stalled worker everything held back, and stops holding.
    pub fn resume(&mut self, worker: &NodeId) {
        let now = self.now();
        for (request, data) in self.stalled.remove(worker).unwrap_or_default() {
            if let Some(member) = self.members.get_mut(worker) {
                let now = member.clock(now);
                match data {
                    Some(bytes) => member.node.handle_stream_data(now, request, &bytes),
                    None => member.node.handle_stream_end(now, request),
                }
            }
        }
        self.pump();
    }

    /// The harness's current time.
    pub fn now(&self) -> Now {
        Now::new(
            self.now,
            WallTime::from_unix_millis(EPOCH_WALL_MS + self.now.as_millis()),
        )
    }

    /// Adds a node; a core is reachable at `http://{name}:{port}`.
    pub fn add(&mut self, config: Config, seed: u64) -> NodeId {
        let node = Node::new(config.clone(), self.now(), seed).expect("valid config");
        let id = node.id().clone();
        let url = config
            .core
            .then(|| format!("http://{}:{}", id, config.port));
        self.members.insert(
            id.clone(),
            Member {
                node,
                config,
                seed,
                url,
                reachability: Reachability::Up,
                events: Vec::new(),
                wall_offset_ms: 0,
            },
        );
        self.pump();
        id
    }

    /// The node called `id`.
    pub fn node(&self, id: &NodeId) -> &Node {
        &self.members[id].node
    }

    /// Mutable access to a node, for host actions; call [`Self::pump`] after.
    pub fn node_mut(&mut self, id: &NodeId) -> &mut Node {
        &mut self.members.get_mut(id).expect("known node").node
    }

    /// Status of every running node.
    pub fn statuses(&self) -> BTreeMap<NodeId, Status> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.node.status()))
            .collect()
    }

    /// Events a node emitted so far.
    pub fn events(&self, id: &NodeId) -> &[Event] {
        &self.members[id].events
    }

    /// Makes requests to `id` time out (or answer again).
    pub fn set_reachability(&mut self, id: &NodeId, reachability: Reachability) {
        if let Some(member) = self.members.get_mut(id) {
            member.reachability = reachability;
        }
        if reachability == Reachability::Silent {
            self.end_streams_of(id);
        }
    }

    /// Sets how far `id`'s wall clock is from the harness's (a stepped or
    /// skewed clock); its monotonic clock is unchanged.
    pub fn set_wall_offset(&mut self, id: &NodeId, offset: i64) {
        if let Some(member) = self.members.get_mut(id) {
            member.wall_offset_ms = offset;
        }
    }

    /// Kills a node: it disappears with its streams.
    pub fn kill(&mut self, id: &NodeId) {
        self.end_streams_of(id);
        self.members.remove(id);
    }

    /// Starts a node again from its configuration, empty, at the current time.
    pub fn restart(&mut self, id: &NodeId) -> Option<()> {
        let member = self.members.get(id)?;
        let (config, seed) = (member.config.clone(), member.seed);
        self.kill(id);
        self.add(config, seed);
        Some(())
    }

    /// Hands a raw request to a node, as a peer (or an attacker) would.
    pub fn request(&mut self, id: &NodeId, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let now = self.now();
        let member = self.members.get_mut(id).expect("known node");
        let response = member.node.handle_request(member.clock(now), request);
        self.pump();
        response
    }

    /// Advances the clock to `now + by`, firing every timer on the way.
    pub fn run_for(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            self.pump();
            let next = self
                .members
                .values()
                .filter(|m| m.reachability == Reachability::Up)
                .filter_map(|m| m.node.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now();
                    for member in self.members.values_mut() {
                        if member.reachability == Reachability::Up {
                            member.node.handle_timeout(member.clock(now));
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = until;
        self.pump();
    }

    /// Carries every pending output until the cluster is quiet.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the cluster did not quiesce: livelock");
    }

    fn step(&mut self) -> bool {
        let mut moved = false;
        let ids: Vec<NodeId> = self.members.keys().cloned().collect();
        for id in ids {
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            while let Some(event) = member.node.poll_event() {
                member.events.push(event);
                moved = true;
            }
            // A silent node's outputs are lost with it.
            let silent = member.reachability == Reachability::Silent;
            let mut transmits = Vec::new();
            while let Some(t) = member.node.poll_transmit() {
                transmits.push(t);
            }
            let mut outputs = Vec::new();
            while let Some(o) = member.node.poll_stream() {
                outputs.push(o);
            }
            for output in outputs {
                moved = true;
                if !silent {
                    self.deliver_stream_output(&id, output);
                }
            }
            for transmit in transmits {
                moved = true;
                let now = self.now();
                let target = self.target_of(&transmit.to);
                let path = transmit.request.uri().path().to_owned();
                let fault = self
                    .faults
                    .iter()
                    .position(|f| f.from == id && f.path == path)
                    .map(|i| self.faults.remove(i).fault);
                let mut result = match target.as_ref().and_then(|t| self.members.get_mut(t)) {
                    _ if fault == Some(Fault::LoseRequest) => Err(TransportError::Timeout),
                    Some(peer) if peer.reachability == Reachability::Up => {
                        Ok(peer.node.handle_request(peer.clock(now), transmit.request))
                    }
                    Some(_) => Err(TransportError::Timeout),
                    None => Err(TransportError::Connect("no such host".into())),
                };
                if fault == Some(Fault::LoseResponse) {
                    result = Err(TransportError::Timeout);
                }
                let status = result.as_ref().map_or(0, |r| r.status().as_u16());
                self.log
                    .push((id.clone(), transmit.to.clone(), path, status));
                let stream = result
                    .as_ref()
                    .ok()
                    .and_then(|r| r.extensions().get::<StreamId>().copied());
                if let (Some(stream), Some(core)) = (stream, target.clone()) {
                    self.streams.push(OpenStream {
                        core,
                        stream,
                        worker: id.clone(),
                        request: transmit.id,
                    });
                }
                if silent {
                    continue;
                }
                if let Some(member) = self.members.get_mut(&id) {
                    member
                        .node
                        .handle_response(member.clock(now), transmit.id, result);
                }
            }
        }
        moved
    }

    fn target_of(&self, url: &str) -> Option<NodeId> {
        self.members
            .iter()
            .find(|(_, m)| m.url.as_deref() == Some(url.trim_end_matches('/')))
            .map(|(id, _)| id.clone())
    }

    fn deliver_stream_output(&mut self, core: &NodeId, output: StreamOutput) {
        let now = self.now();
        let (stream, data) = match output {
            StreamOutput::Data { stream, bytes } => (stream, Some(bytes)),
            StreamOutput::Close { stream } => (stream, None),
        };
        let Some(index) = self
            .streams
            .iter()
            .position(|s| s.core == *core && s.stream == stream)
        else {
            return;
        };
        let open = self.streams[index].clone();
        if let Some(held) = self.stalled.get_mut(&open.worker) {
            held.push((open.request, data));
            if held.last().is_some_and(|(_, d)| d.is_none()) {
                self.streams.remove(index);
            }
            return;
        }
        let Some(worker) = self.members.get_mut(&open.worker) else {
            return;
        };
        let now = worker.clock(now);
        match data {
            Some(bytes) => {
                // Feed the bytes in two pieces split mid-frame: the decoder
                // must not care where chunks end.
                let (a, b) = bytes.split_at(bytes.len() / 2);
                worker.node.handle_stream_data(now, open.request, a);
                worker.node.handle_stream_data(now, open.request, b);
            }
            None => {
                worker.node.handle_stream_end(now, open.request);
                self.streams.remove(index);
            }
        }
    }

    /// Ends every stream `id` serves or reads, telling the other side.
    fn end_streams_of(&mut self, id: &NodeId) {
        let now = self.now();
        let (ended, kept): (Vec<OpenStream>, Vec<OpenStream>) = self
            .streams
            .drain(..)
            .partition(|s| s.core == *id || s.worker == *id);
        self.streams = kept;
        for s in ended {
            if let Some(worker) = self.members.get_mut(&s.worker).filter(|_| s.worker != *id) {
                worker.node.handle_stream_end(worker.clock(now), s.request);
            }
            if let Some(core) = self.members.get_mut(&s.core).filter(|_| s.core != *id) {
                core.node.handle_stream_closed(core.clock(now), s.stream);
            }
        }
    }
}
