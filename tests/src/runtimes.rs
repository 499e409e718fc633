//! Live nodes on either runtime behind one blocking interface, so that one
//! suite can run the same scenario on tokio, on threads, and on clusters
//! that mix the two.
//!
//! Nodes run on loopback with ephemeral ports. A tokio node runs on a
//! runtime shared by the whole test binary; its events, like a blocking
//! node's, are collected as they arrive by a thread of their own.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mqtt_cluster_core::node::{Message, Routing};
use mqtt_cluster_core::wire::messages::MemberState;
use mqtt_cluster_core::{Config, Event, NodeId, Stats, Status};

/// The cluster secret of every node built here.
pub const SECRET: &str = "conformance-test-secret-0123456789";

/// Short enough for quick tests, long enough that a busy 2-core machine
/// running several clusters at once does not miss heartbeats.
pub const TIMING: &str = "heartbeatInterval: 100ms\nsuspectTimeout: 500ms\ndeadTimeout: 1500ms\n\
                          requestTimeout: 1s\nretryBackoff: 20ms\nretryBackoffMax: 200ms\n";

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Which runtime runs a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `mqtt-cluster-tokio`: tokio and hyper.
    Tokio,
    /// `mqtt-cluster-blocking`: threads, its own HTTP/1.1 server and ureq.
    Blocking,
}

/// Which runtime runs the cores, and which the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// The runtime of every core.
    pub cores: Runtime,
    /// The runtime of every worker.
    pub workers: Runtime,
}

fn tokio_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A listener on an ephemeral loopback port, and its URL.
#[derive(Debug)]
pub struct Bound {
    /// The listener, for the core to serve on.
    pub listener: TcpListener,
    /// Its port.
    pub port: u16,
    /// `http://127.0.0.1:{port}`.
    pub url: String,
}

/// Binds an ephemeral loopback port.
pub fn bind() -> Bound {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    Bound {
        listener,
        port,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A core's config: `name` on `port`, talking to the cores in `clusters`.
pub fn core_config(name: &str, port: u16, clusters: &[&str], extra: &str) -> Config {
    let list: String = clusters.iter().map(|u| format!("- {u}\n")).collect();
    Config::from_yaml_str(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: {name}\n\
         advertise: http://127.0.0.1:{port}\nsecret: {SECRET}\nclusters:\n{list}{TIMING}{extra}"
    ))
    .expect("core config")
}

/// A worker's config: `name`, registering with the first of `clusters`.
pub fn worker_config(name: &str, clusters: &[&str], extra: &str) -> Config {
    let list: String = clusters.iter().map(|u| format!("- {u}\n")).collect();
    Config::from_yaml_str(&format!(
        "nodeName: {name}\nsecret: {SECRET}\nclusters:\n{list}{TIMING}{extra}"
    ))
    .expect("worker config")
}

enum Handle {
    Tokio(mqtt_cluster_tokio::ClusterHandle),
    Blocking(mqtt_cluster_blocking::ClusterHandle),
}

/// A running node on either runtime, with its events collected.
pub struct LiveNode {
    handle: Handle,
    runtime: Runtime,
    events: Arc<Mutex<Vec<Event>>>,
}

impl std::fmt::Debug for LiveNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveNode")
            .field("id", self.id())
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl LiveNode {
    /// Starts a node on `runtime`; a core serves on `listener`.
    pub fn start(
        runtime: Runtime,
        config: Config,
        listener: Option<TcpListener>,
        seed: u64,
    ) -> LiveNode {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let handle = match runtime {
            Runtime::Tokio => {
                let rt = tokio_runtime();
                let handle = rt.block_on(async move {
                    let mut options = mqtt_cluster_tokio::Options::new().seed(seed);
                    if let Some(listener) = listener {
                        listener.set_nonblocking(true).expect("nonblocking");
                        let listener =
                            tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                        options = options.listener(listener);
                    }
                    mqtt_cluster_tokio::Cluster::start_with(config, options)
                        .await
                        .expect("tokio node starts")
                });
                let reader = handle.events();
                std::thread::spawn(move || {
                    let mut batch = Vec::new();
                    while rt.block_on(reader.next_batch(&mut batch, 256)) > 0 {
                        sink.lock().expect("events").append(&mut batch);
                    }
                });
                Handle::Tokio(handle)
            }
            Runtime::Blocking => {
                let mut options = mqtt_cluster_blocking::Options::new().seed(seed);
                if let Some(listener) = listener {
                    options = options.listener(listener);
                }
                let handle = mqtt_cluster_blocking::Cluster::start_with(config, options)
                    .expect("blocking node starts");
                let reader = handle.events();
                std::thread::spawn(move || {
                    for event in reader.iter() {
                        sink.lock().expect("events").push(event);
                    }
                });
                Handle::Blocking(handle)
            }
        };
        LiveNode {
            handle,
            runtime,
            events,
        }
    }

    /// Its id.
    pub fn id(&self) -> &NodeId {
        match &self.handle {
            Handle::Tokio(h) => h.node_id(),
            Handle::Blocking(h) => h.node_id(),
        }
    }

    /// Where a core serves.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.handle {
            Handle::Tokio(h) => h.local_addr(),
            Handle::Blocking(h) => h.local_addr(),
        }
    }

    /// Its view of the cluster; `None` once it has stopped.
    pub fn status(&self) -> Option<Status> {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime().block_on(h.status()).ok(),
            Handle::Blocking(h) => h.status().ok(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Stats {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime().block_on(h.stats()).expect("the node runs"),
            Handle::Blocking(h) => h.stats().expect("the node runs"),
        }
    }

    /// A local subscription; `true` if it was the first for `filter`.
    pub fn subscribe(&self, filter: &str) -> bool {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime()
                .block_on(h.subscribe(filter))
                .expect("subscribe"),
            Handle::Blocking(h) => h.subscribe(filter).expect("subscribe"),
        }
    }

    /// Many local subscriptions in one call; how many were the first for
    /// their filter, or the error's text.
    pub fn subscribe_many(&self, filters: Vec<String>) -> Result<usize, String> {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime()
                .block_on(h.subscribe_many(filters))
                .map_err(|e| e.to_string()),
            Handle::Blocking(h) => h.subscribe_many(filters).map_err(|e| e.to_string()),
        }
    }

    /// Many local unsubscriptions in one call; how many were the last for
    /// their filter, or the error's text.
    pub fn unsubscribe_many(&self, filters: Vec<String>) -> Result<usize, String> {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime()
                .block_on(h.unsubscribe_many(filters))
                .map_err(|e| e.to_string()),
            Handle::Blocking(h) => h.unsubscribe_many(filters).map_err(|e| e.to_string()),
        }
    }

    /// A local publish, and where the node routed it.
    pub fn publish(&self, message: Message) -> Routing {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime()
                .block_on(h.publish(message))
                .expect("publish"),
            Handle::Blocking(h) => h.publish(message).expect("publish"),
        }
    }

    /// Its copy of the cluster's retained set: (topic, payload), by topic.
    pub fn retained(&self) -> Vec<(String, Vec<u8>)> {
        let messages = match &self.handle {
            Handle::Tokio(h) => tokio_runtime()
                .block_on(h.retained())
                .expect("the node runs"),
            Handle::Blocking(h) => h.retained().expect("the node runs"),
        };
        messages
            .into_iter()
            .map(|m| (m.topic.as_str().to_owned(), m.payload.to_vec()))
            .collect()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    /// Waits until an event matching `check` has reached the test: events
    /// come through a reader thread, so they may trail the status that
    /// describes their effect.
    pub fn wait_for_event(&self, what: &str, check: impl Fn(&Event) -> bool) {
        eventually(what, || self.events().iter().any(&check));
    }

    /// What was delivered to this node's subscribers: (topic, payload, qos),
    /// in arrival order.
    pub fn deliveries(&self) -> Vec<(String, Vec<u8>, u8)> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e {
                Event::Deliver(d) => Some((
                    d.topic.as_str().to_owned(),
                    d.payload.to_vec(),
                    d.qos.as_u8(),
                )),
                _ => None,
            })
            .collect()
    }

    /// A crash: no leave, no goodbye.
    pub fn kill(self) {
        match &self.handle {
            Handle::Tokio(h) => h.abort(),
            Handle::Blocking(h) => h.abort(),
        }
    }

    /// A graceful leave; returns once the node has stopped.
    pub fn shutdown(&self) {
        match &self.handle {
            Handle::Tokio(h) => tokio_runtime().block_on(h.shutdown()),
            Handle::Blocking(h) => h.shutdown(),
        }
    }

    /// Whether it sees `member` in `state`.
    pub fn sees(&self, member: &str, state: MemberState) -> bool {
        self.status().is_some_and(|s| {
            s.members
                .iter()
                .any(|m| m.id.as_str() == member && m.state == state)
        })
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after
/// [`DEADLINE`].
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether every node sees the same `count` members, all alive.
pub fn agree(nodes: &[&LiveNode], count: usize) -> bool {
    let mut digest = None;
    nodes.iter().all(|node| {
        let Some(status) = node.status() else {
            return false;
        };
        let alive = status
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        alive == count
            && digest.get_or_insert(status.members_digest.clone()) == &status.members_digest
    })
}

/// Two cores and two workers: w1 homed on core1, w2 on core2, each able
/// to fail over to the other core.
#[derive(Debug)]
pub struct Four {
    /// The first core.
    pub core1: LiveNode,
    /// The second core.
    pub core2: LiveNode,
    /// A worker homed on core1.
    pub w1: LiveNode,
    /// A worker homed on core2.
    pub w2: LiveNode,
}

impl Four {
    /// Starts the four on `mix` and waits until they agree.
    pub fn start(mix: Mix) -> Four {
        Four::start_homed(mix, false)
    }

    /// Like [`Four::start`], but with both workers homed on core1 (w2
    /// failing over to core2).
    pub fn start_on_core1(mix: Mix) -> Four {
        Four::start_homed(mix, true)
    }

    fn start_homed(mix: Mix, both_on_core1: bool) -> Four {
        let (b1, b2) = (bind(), bind());
        let cores = [b1.url.as_str(), b2.url.as_str()];
        let c1 = core_config("core1", b1.port, &cores, "");
        let c2 = core_config("core2", b2.port, &cores, "");
        let w1 = worker_config("w1", &[&b1.url, &b2.url], "");
        let w2_clusters = if both_on_core1 {
            [b1.url.as_str(), b2.url.as_str()]
        } else {
            [b2.url.as_str(), b1.url.as_str()]
        };
        let w2 = worker_config("w2", &w2_clusters, "");
        let four = Four {
            core1: LiveNode::start(mix.cores, c1, Some(b1.listener), 1),
            core2: LiveNode::start(mix.cores, c2, Some(b2.listener), 2),
            w1: LiveNode::start(mix.workers, w1, None, 3),
            w2: LiveNode::start(mix.workers, w2, None, 4),
        };
        eventually("all four nodes agree on four live members", || {
            agree(&four.all(), 4)
        });
        four
    }

    /// All four.
    pub fn all(&self) -> [&LiveNode; 4] {
        [&self.core1, &self.core2, &self.w1, &self.w2]
    }
}
