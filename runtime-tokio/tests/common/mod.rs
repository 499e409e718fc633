//! Loopback clusters for the integration suites: real sockets, ephemeral
//! ports, short timings, and polling waits with generous deadlines (the
//! machines that run these may be small and busy).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_cluster_core::{Config, Event, NodeId};
use mqtt_cluster_tokio::{Cluster, ClusterHandle, Options};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const SECRET: &str = "loopback-test-secret-0123456789";

/// Short enough for quick tests, long enough that a busy 2-core machine does
/// not miss heartbeats.
pub const TIMING: &str = "heartbeatInterval: 50ms\nsuspectTimeout: 200ms\ndeadTimeout: 600ms\n\
                          requestTimeout: 1s\nretryBackoff: 20ms\nretryBackoffMax: 200ms\n";

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A listener bound to an ephemeral loopback port, and its URL.
pub struct Bound {
    pub listener: TcpListener,
    pub port: u16,
    pub url: String,
}

pub async fn bind() -> Bound {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    Bound {
        listener,
        port,
        url: format!("http://127.0.0.1:{port}"),
    }
}

pub fn core_config(name: &str, port: u16, clusters: &[&str], extra: &str) -> Config {
    let list: String = clusters.iter().map(|u| format!("- {u}\n")).collect();
    Config::from_yaml_str(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: {name}\n\
         advertise: http://127.0.0.1:{port}\nsecret: {SECRET}\nclusters:\n{list}{TIMING}{extra}"
    ))
    .expect("core config")
}

pub fn worker_config(name: &str, clusters: &[&str], extra: &str) -> Config {
    let list: String = clusters.iter().map(|u| format!("- {u}\n")).collect();
    Config::from_yaml_str(&format!(
        "nodeName: {name}\nsecret: {SECRET}\nclusters:\n{list}{TIMING}{extra}"
    ))
    .expect("worker config")
}

/// A running node whose events are collected as they come.
pub struct Running {
    pub handle: ClusterHandle,
    events: Arc<Mutex<Vec<Event>>>,
    collector: JoinHandle<()>,
}

impl Running {
    pub fn new(handle: ClusterHandle) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let reader = handle.events();
        let sink = events.clone();
        let collector = tokio::spawn(async move {
            let mut batch = Vec::new();
            while reader.next_batch(&mut batch, 256).await > 0 {
                sink.lock().unwrap().append(&mut batch);
            }
        });
        Running {
            handle,
            events,
            collector,
        }
    }

    pub fn id(&self) -> &NodeId {
        self.handle.node_id()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// What was delivered to this node's subscribers: (topic, payload, qos).
    pub fn deliveries(&self) -> Vec<(String, Vec<u8>, u8)> {
        self.events
            .lock()
            .unwrap()
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
        self.handle.abort();
        self.collector.abort();
    }
}

pub async fn start(config: Config, options: Options) -> Running {
    Running::new(
        Cluster::start_with(config, options)
            .await
            .expect("node starts"),
    )
}

/// Polls `check` every 20ms until it holds; fails the test after
/// [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        if started.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
