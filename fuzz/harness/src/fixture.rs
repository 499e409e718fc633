//! Nodes in a known state for the targets: a core, a registered worker with
//! an open push stream, signers that speak as registered members, and the
//! check every answered request must pass.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use mqtt_cluster_core::auth::replay::ReplayGuard;
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::RegisterRequest;
use mqtt_cluster_core::wire::ErrorBody;
use mqtt_cluster_core::{
    Config, Incarnation, Instant, Node, NodeId, Now, RequestId, Role, Stats, Status, StreamId,
    StreamOutput, TransportError, WallTime,
};

/// The cluster secret of every fixture.
pub const SECRET: &str = "fuzz-cluster-secret";
/// Wall-clock time at instant zero.
pub const EPOCH_WALL_MS: u64 = 1_700_000_000_000;
/// Where the fixture's core is reached.
pub const CORE_URL: &str = "http://core1:8884";
/// Short timings, so that little simulated time covers many heartbeats.
pub const TIMING: &str = "heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\n\
                          requestTimeout: 300ms\nretryBackoff: 50ms\nretryBackoffMax: 400ms\n";
/// The largest body the fixture's core accepts.
pub const MAX_BODY: usize = 64 * 1024;
/// How many pump rounds a fixture runs before it calls the cluster quiet.
const PUMP_ROUNDS: usize = 1_000;

/// The time `ms` milliseconds after instant zero.
pub fn at(ms: u64) -> Now {
    Now::new(
        Instant::from_millis(ms),
        WallTime::from_unix_millis(EPOCH_WALL_MS.saturating_add(ms)),
    )
}

fn config(yaml: &str) -> Config {
    match Config::from_yaml_str(yaml) {
        Ok(config) => config,
        Err(e) => panic!("fixture config is invalid: {e}\n{yaml}"),
    }
}

/// The core `core1`, listing itself in `clusters`.
pub fn core_config() -> Config {
    config(&format!(
        "core: true\nport: 8884\nnodeName: core1\nsecret: {SECRET}\nclusters: [{CORE_URL}]\n\
         maxBodySize: {MAX_BODY}\nqueueLength: 64\nmaxInFlight: 32\nbatchSize: 16\n{TIMING}"
    ))
}

/// The worker `w1` of `core1`.
pub fn worker_config() -> Config {
    config(&format!(
        "nodeName: w1\nsecret: {SECRET}\nclusters: [{CORE_URL}]\nmaxBodySize: {MAX_BODY}\n\
         queueLength: 64\nmaxInFlight: 32\nbatchSize: 16\n{TIMING}"
    ))
}

/// Builds a node from a fixture config.
pub fn node(config: Config, now: Now, seed: u64) -> Node {
    match Node::new(config, now, seed) {
        Ok(node) => node,
        Err(e) => panic!("fixture node: {e}"),
    }
}

/// Signs requests as one member, with growing counters.
pub struct Signer {
    auth: Authenticator,
    /// Who it speaks as.
    pub id: NodeId,
    /// In which incarnation.
    pub incarnation: Incarnation,
    counter: u64,
}

impl Signer {
    /// A signer for `name` (a valid node name) in `incarnation`, with the
    /// fixture's secret.
    pub fn new(name: &str, incarnation: u64) -> Signer {
        let id = match NodeId::new(name) {
            Ok(id) => id,
            Err(e) => panic!("fixture node name {name:?}: {e}"),
        };
        Signer {
            auth: Authenticator::new(Some(Secret::new(SECRET)), Duration::from_secs(30), 8),
            id,
            incarnation: Incarnation(incarnation),
            counter: 0,
        }
    }

    /// The next counter of this signer.
    pub fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Signs `request` as this signer, with its next counter.
    pub fn sign(&mut self, request: &mut Request<Bytes>, wall: WallTime) {
        let counter = self.next_counter();
        self.auth
            .sign(request, &self.id, self.incarnation, counter, wall);
    }

    /// Signs `request` with the fixture's secret as anyone at all.
    pub fn sign_as(
        &self,
        request: &mut Request<Bytes>,
        node: &NodeId,
        incarnation: Incarnation,
        counter: u64,
        wall: WallTime,
    ) {
        self.auth.sign(request, node, incarnation, counter, wall);
    }

    /// A signed request from this signer.
    pub fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        wall: WallTime,
    ) -> Request<Bytes> {
        let mut request = plain_request(method, path, body);
        self.sign(&mut request, wall);
        request
    }

    /// Registers this signer with `core` as a worker; panics if refused.
    pub fn register(&mut self, core: &mut Node, now: Now) {
        let body = encode_json(&RegisterRequest {
            node: self.id.clone(),
            role: Role::Worker,
            incarnation: self.incarnation,
            address: None,
        });
        let request = self.request(Method::POST, "/register", body, now.wall);
        let response = core.handle_request(now, request);
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "fixture registration of {} refused",
            self.id
        );
    }
}

/// An unsigned request.
pub fn plain_request(method: Method, path: &str, body: Bytes) -> Request<Bytes> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// What a refused request must leave as it was: the node's status, its
/// counters but the count of refusals itself, and its replay guard.
pub fn observable_state(node: &Node) -> (Status, Stats, ReplayGuard) {
    let mut stats = node.stats();
    stats.requests_refused.clear();
    (node.status(), stats, node.replay_guard().clone())
}

/// Hands `request` to `node` and checks what the design promises of every
/// answer: a refused request leaves the node's [`observable_state`] as it
/// was, is counted once, and is explained by a JSON error body.
pub fn checked_request(node: &mut Node, now: Now, request: Request<Bytes>) -> Response<Bytes> {
    let before = observable_state(node);
    let refusals_before: u64 = node.stats().requests_refused.values().sum();
    let response = node.handle_request(now, request);
    if response.status() != StatusCode::OK {
        let after = observable_state(node);
        assert_eq!(
            before,
            after,
            "a request refused with {} changed the node's state",
            response.status()
        );
        let refusals_after: u64 = node.stats().requests_refused.values().sum();
        assert_eq!(
            refusals_after,
            refusals_before + 1,
            "a request refused with {} was not counted once",
            response.status()
        );
        let body: Result<ErrorBody, _> = serde_json::from_slice(response.body());
        assert!(
            body.is_ok(),
            "a request refused with {} has no JSON error body: {:?}",
            response.status(),
            String::from_utf8_lossy(response.body())
        );
    }
    response
}

/// Drains a node's outputs, answering its requests with connection errors.
pub fn drain_alone(node: &mut Node, now: Now) {
    for _ in 0..PUMP_ROUNDS {
        let mut moved = false;
        while let Some(t) = node.poll_transmit() {
            moved = true;
            node.handle_response(
                now,
                t.id,
                Err(TransportError::Connect("no such host".into())),
            );
        }
        while node.poll_stream().is_some() {
            moved = true;
        }
        while node.poll_event().is_some() {
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// A core `core1` and its worker `w1`, wired together by hand with a
/// manual clock, the worker's push stream open; plus a second worker `w2`
/// that exists only as a [`Signer`] registered with the core.
pub struct Pair {
    /// The core.
    pub core: Node,
    /// The worker.
    pub worker: Node,
    /// The fake worker `w2`, registered with the core.
    pub fake: Signer,
    /// The worker's push stream: the core's id for it and the worker's.
    pub stream: Option<(StreamId, RequestId)>,
    /// Events of the worker, kept when [`Pair::keep_worker_events`] is set
    /// (otherwise dropped as they come).
    pub worker_events: Vec<mqtt_cluster_core::Event>,
    /// Whether to keep the worker's events.
    pub keep_worker_events: bool,
    now_ms: u64,
}

impl Pair {
    /// Builds the pair and runs it until the worker is registered with its
    /// stream open, `core1` subscribed to `#` and `w1` to `t/+`.
    pub fn new() -> Pair {
        let now = at(0);
        let mut pair = Pair {
            core: node(core_config(), now, 1),
            worker: node(worker_config(), now, 2),
            fake: Signer::new("w2", 1),
            stream: None,
            worker_events: Vec::new(),
            keep_worker_events: false,
            now_ms: 0,
        };
        pair.pump();
        for _ in 0..50 {
            if pair.worker.status().core.is_some() && pair.stream.is_some() {
                break;
            }
            pair.advance(100);
        }
        assert!(
            pair.worker.status().core.is_some() && pair.stream.is_some(),
            "fixture worker did not register"
        );
        let now = pair.now();
        pair.fake.register(&mut pair.core, now);
        let _ = pair.core.subscribe(now, "#");
        let _ = pair.worker.subscribe(now, "t/+");
        pair.pump();
        pair.advance(200);
        pair
    }

    /// The pair's current time.
    pub fn now(&self) -> Now {
        at(self.now_ms)
    }

    /// Carries requests, responses and stream bytes until both nodes are
    /// quiet (or a bounded number of rounds passed).
    pub fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS {
            if !self.step() {
                return;
            }
        }
    }

    fn step(&mut self) -> bool {
        let now = self.now();
        let mut moved = false;
        while let Some(t) = self.worker.poll_transmit() {
            moved = true;
            if t.to.trim_end_matches('/') == CORE_URL {
                let response = self.core.handle_request(now, t.request);
                if let Some(stream) = response.extensions().get::<StreamId>() {
                    self.stream = Some((*stream, t.id));
                }
                self.worker.handle_response(now, t.id, Ok(response));
            } else {
                self.worker.handle_response(
                    now,
                    t.id,
                    Err(TransportError::Connect("no such host".into())),
                );
            }
        }
        while let Some(t) = self.core.poll_transmit() {
            moved = true;
            let result = if t.to.trim_end_matches('/') == CORE_URL {
                Ok(self.core.handle_request(now, t.request))
            } else {
                Err(TransportError::Connect("no such host".into()))
            };
            self.core.handle_response(now, t.id, result);
        }
        while let Some(output) = self.core.poll_stream() {
            moved = true;
            match output {
                StreamOutput::Data { stream, bytes } => {
                    if let Some((open, request)) = self.stream {
                        if open == stream {
                            self.worker.handle_stream_data(now, request, &bytes);
                        }
                    }
                }
                StreamOutput::Close { stream } => {
                    if let Some((open, request)) = self.stream {
                        if open == stream {
                            self.stream = None;
                            self.worker.handle_stream_end(now, request);
                        }
                    }
                }
            }
        }
        while self.core.poll_event().is_some() {
            moved = true;
        }
        while let Some(event) = self.worker.poll_event() {
            moved = true;
            if self.keep_worker_events {
                self.worker_events.push(event);
            }
        }
        moved
    }

    /// Moves the clock `ms` ahead, firing every timer on the way.
    pub fn advance(&mut self, ms: u64) {
        let until = self.now_ms.saturating_add(ms);
        for _ in 0..10_000 {
            self.pump();
            let next = self
                .core
                .poll_timeout()
                .into_iter()
                .chain(self.worker.poll_timeout())
                .min();
            match next {
                Some(t) if t.as_millis() <= until => {
                    self.now_ms = self.now_ms.max(t.as_millis());
                    let now = self.now();
                    self.core.handle_timeout(now);
                    self.worker.handle_timeout(now);
                }
                _ => break,
            }
        }
        self.now_ms = until;
        let now = self.now();
        self.core.handle_timeout(now);
        self.worker.handle_timeout(now);
        self.pump();
    }

    /// Makes sure the worker's stream is open (waiting up to a second of
    /// simulated time for the worker to reopen a broken one).
    pub fn ensure_stream(&mut self) -> Option<RequestId> {
        for _ in 0..10 {
            if let Some((_, request)) = self.stream {
                return Some(request);
            }
            self.advance(100);
        }
        self.stream.map(|(_, request)| request)
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}
