//! Worker -> core -> worker on loopback, real HTTP, in one process: how
//! many 100-byte messages per second cross, and how long one takes at a
//! paced 1,000 messages per second.
//!
//! ```sh
//! cargo bench -p mqtt-cluster-tokio --bench loopback
//! ```
//!
//! `LOOPBACK_MESSAGES` (default 300000) sets the messages per throughput
//! run, `LOOPBACK_SECONDS` (default 3) the length of each latency run,
//! `LOOPBACK_BATCH` (default 256) the nodes' `batchSize`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, Event};
use mqtt_cluster_tokio::{Cluster, ClusterHandle, Events, Options};
use tokio::time::Instant;

const SECRET: &str = "loopback-bench-secret-0123456789";
const PAYLOAD: usize = 100;
/// Messages a host lets run ahead of their delivery: flow control a broker
/// would get from its clients; it keeps every queue below `queueLength`.
const WINDOW: u64 = 50_000;
const SETTINGS: &str = "maxInFlight: 4096\nqueueLength: 100000\n";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    publisher: ClusterHandle,
    subscriber: ClusterHandle,
    events: Events,
    core: ClusterHandle,
    epoch: Instant,
}

async fn setup(batch: u64) -> Bench {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let core = Config::from_yaml_str(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: core1\nclusters: [{url}]\n\
         secret: {SECRET}\nbatchSize: {batch}\n{SETTINGS}"
    ))
    .unwrap();
    let worker = |name: &str| {
        Config::from_yaml_str(&format!(
            "nodeName: {name}\nclusters: [{url}]\nsecret: {SECRET}\nbatchSize: {batch}\n{SETTINGS}"
        ))
        .unwrap()
    };
    let options = || Options::new().event_capacity(65_536);
    let core = Cluster::start_with(core, options().listener(listener))
        .await
        .unwrap();
    let publisher = Cluster::start_with(worker("pub"), options()).await.unwrap();
    let subscriber = Cluster::start_with(worker("sub"), options()).await.unwrap();
    subscriber.subscribe("bench/#").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.status().await.unwrap().routes == 0 {
        assert!(Instant::now() < deadline, "the route did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = subscriber.events();
    Bench {
        publisher,
        subscriber,
        events,
        core,
        epoch: Instant::now(),
    }
}

/// A 100-byte payload starting with the send time, in nanoseconds since the
/// bench started.
fn payload(bench: &Bench) -> Bytes {
    let mut bytes = BytesMut::with_capacity(PAYLOAD);
    bytes.put_u64(bench.epoch.elapsed().as_nanos() as u64);
    bytes.put_bytes(b'x', PAYLOAD - 8);
    bytes.freeze()
}

fn message(bench: &Bench, qos: Qos) -> Message {
    Message::new("bench/load", payload(bench))
        .unwrap()
        .with_qos(qos)
}

/// Counts deliveries (into `counter` too) until `total` arrived or nothing
/// came for a second; returns the count, and the latency of each if
/// `latencies`.
async fn receive(
    events: Events,
    epoch: Instant,
    total: u64,
    latencies: bool,
    counter: Arc<AtomicU64>,
) -> (u64, Vec<u64>) {
    let mut got = 0;
    let mut samples = Vec::new();
    let mut batch = Vec::with_capacity(1024);
    while got < total {
        batch.clear();
        let next =
            tokio::time::timeout(Duration::from_secs(1), events.next_batch(&mut batch, 1024));
        if next.await.is_err() {
            break;
        }
        let now = epoch.elapsed().as_nanos() as u64;
        for event in &batch {
            if let Event::Deliver(delivery) = event {
                got += 1;
                if latencies {
                    let sent = u64::from_be_bytes(delivery.payload[..8].try_into().unwrap());
                    samples.push(now.saturating_sub(sent));
                }
            }
        }
        counter.store(got, Ordering::Relaxed);
    }
    (got, samples)
}

async fn throughput(bench: &Bench, qos: Qos, total: u64) {
    let delivered = Arc::new(AtomicU64::new(0));
    let receiver = tokio::spawn(receive(
        bench.events.clone(),
        bench.epoch,
        total,
        false,
        delivered.clone(),
    ));
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        // Flow control: stay within WINDOW of what has arrived.
        if sent - delivered.load(Ordering::Relaxed) >= WINDOW {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        let n = (total - sent).min(256);
        let batch = (0..n).map(|_| message(bench, qos)).collect();
        for routing in bench.publisher.publish_many(batch).await.unwrap() {
            assert_eq!(routing.unwrap().remote.len(), 1);
        }
        sent += n;
    }
    let (got, _) = receiver.await.unwrap();
    let elapsed = started.elapsed();
    println!(
        "throughput  QoS {}: {got} of {total} messages in {:.2} s = {:.0} messages/s",
        qos.as_u8(),
        elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64()
    );
}

async fn latency(bench: &Bench, qos: Qos, seconds: u64) {
    let total = seconds * 1000;
    let counter = Arc::new(AtomicU64::new(0));
    let receiver = tokio::spawn(receive(
        bench.events.clone(),
        bench.epoch,
        total,
        true,
        counter,
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..total {
        tick.tick().await;
        bench.publisher.publish(message(bench, qos)).await.unwrap();
    }
    let (got, mut samples) = receiver.await.unwrap();
    samples.sort_unstable();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i] as f64 / 1e6
    };
    println!(
        "latency     QoS {} at 1000 msg/s: {got} of {total} arrived; p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        qos.as_u8(),
        pick(0.50),
        pick(0.99),
        pick(1.0)
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: stay quick then.
    let benching = std::env::args().any(|a| a == "--bench");
    let batch = env_or("LOOPBACK_BATCH", 256);
    let (messages, seconds) = if benching {
        (
            env_or("LOOPBACK_MESSAGES", 300_000),
            env_or("LOOPBACK_SECONDS", 3),
        )
    } else {
        (2_000, 1)
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "loopback bench: 1 core + 2 workers in one process, {threads} runtime threads, \
         {PAYLOAD}-byte payloads, batchSize: {batch}, {}",
        SETTINGS.trim().replace('\n', ", ")
    );
    println!("load average before: {}", load_average());
    runtime.block_on(async {
        let bench = setup(batch).await;
        // Warm up connections and buffers.
        throughput(&bench, Qos::AtMostOnce, messages / 10).await;
        throughput(&bench, Qos::AtMostOnce, messages).await;
        throughput(&bench, Qos::AtLeastOnce, messages).await;
        latency(&bench, Qos::AtMostOnce, seconds).await;
        latency(&bench, Qos::AtLeastOnce, seconds).await;
        let stats = bench.subscriber.stats().await.unwrap();
        println!(
            "subscriber: {} delivered, {} duplicates; core dropped {:?}",
            stats.delivered,
            stats.duplicates,
            bench.core.stats().await.unwrap().dropped
        );
        for node in [&bench.subscriber, &bench.publisher, &bench.core] {
            node.shutdown().await;
        }
    });
    println!("load average after: {}", load_average());
}
