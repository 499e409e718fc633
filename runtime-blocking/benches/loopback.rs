//! Worker -> core -> worker on loopback, real HTTP, in one process, on the
//! blocking runtime: how many 100-byte messages per second cross, and how
//! long one takes at a paced 1,000 messages per second. The same
//! measurement as the tokio runtime's `loopback` bench.
//!
//! ```sh
//! cargo bench -p mqtt-cluster-blocking --bench loopback
//! ```
//!
//! `LOOPBACK_MESSAGES` (default 300000) sets the messages per throughput
//! run, `LOOPBACK_SECONDS` (default 3) the length of each latency run,
//! `LOOPBACK_BATCH` (default 256) the nodes' `batchSize`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use mqtt_cluster_blocking::{Cluster, ClusterHandle, Events, Options};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, Event};

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

fn setup(batch: u64) -> Bench {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
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
    let core = Cluster::start_with(core, options().listener(listener)).unwrap();
    let publisher = Cluster::start_with(worker("pub"), options()).unwrap();
    let subscriber = Cluster::start_with(worker("sub"), options()).unwrap();
    subscriber.subscribe("bench/#").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.status().unwrap().routes == 0 {
        assert!(Instant::now() < deadline, "the route did not arrive");
        std::thread::sleep(Duration::from_millis(10));
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
fn payload(epoch: Instant) -> Bytes {
    let mut bytes = BytesMut::with_capacity(PAYLOAD);
    bytes.put_u64(epoch.elapsed().as_nanos() as u64);
    bytes.put_bytes(b'x', PAYLOAD - 8);
    bytes.freeze()
}

fn message(epoch: Instant, qos: Qos) -> Message {
    Message::new("bench/load", payload(epoch))
        .unwrap()
        .with_qos(qos)
}

/// Counts deliveries (into `counter` too) on a thread of its own until
/// `total` arrived or nothing came for a second; returns the count, and the
/// latency of each if `latencies`.
fn receive(
    events: Events,
    epoch: Instant,
    total: u64,
    latencies: bool,
    counter: Arc<AtomicU64>,
) -> JoinHandle<(u64, Vec<u64>)> {
    std::thread::spawn(move || {
        let mut got = 0;
        let mut samples = Vec::new();
        let mut batch = Vec::with_capacity(1024);
        while got < total {
            batch.clear();
            if events.next_batch(&mut batch, 1024, Duration::from_secs(1)) == 0 {
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
    })
}

fn throughput(bench: &Bench, qos: Qos, total: u64) {
    let delivered = Arc::new(AtomicU64::new(0));
    let receiver = receive(
        bench.events.clone(),
        bench.epoch,
        total,
        false,
        delivered.clone(),
    );
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        // Flow control: stay within WINDOW of what has arrived.
        if sent - delivered.load(Ordering::Relaxed) >= WINDOW {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let n = (total - sent).min(256);
        let batch = (0..n).map(|_| message(bench.epoch, qos)).collect();
        for routing in bench.publisher.publish_many(batch).unwrap() {
            assert_eq!(routing.unwrap().remote.len(), 1);
        }
        sent += n;
    }
    let (got, _) = receiver.join().unwrap();
    let elapsed = started.elapsed();
    println!(
        "throughput  QoS {}: {got} of {total} messages in {:.2} s = {:.0} messages/s",
        qos.as_u8(),
        elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64()
    );
}

fn latency(bench: &Bench, qos: Qos, seconds: u64) {
    let total = seconds * 1000;
    let counter = Arc::new(AtomicU64::new(0));
    let receiver = receive(bench.events.clone(), bench.epoch, total, true, counter);
    let start = Instant::now();
    for n in 0..total {
        // Paced against the start, so a late tick is made up at once.
        let due = start + Duration::from_millis(n);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        bench.publisher.publish(message(bench.epoch, qos)).unwrap();
    }
    let (got, mut samples) = receiver.join().unwrap();
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
    println!(
        "loopback bench (blocking runtime): 1 core + 2 workers in one process, \
         {PAYLOAD}-byte payloads, batchSize: {batch}, {}",
        SETTINGS.trim().replace('\n', ", ")
    );
    println!("load average before: {}", load_average());
    let bench = setup(batch);
    // Warm up connections and buffers.
    throughput(&bench, Qos::AtMostOnce, messages / 10);
    throughput(&bench, Qos::AtMostOnce, messages);
    throughput(&bench, Qos::AtLeastOnce, messages);
    latency(&bench, Qos::AtMostOnce, seconds);
    latency(&bench, Qos::AtLeastOnce, seconds);
    let stats = bench.subscriber.stats().unwrap();
    println!(
        "subscriber: {} delivered, {} duplicates; core dropped {:?}",
        stats.delivered,
        stats.duplicates,
        bench.core.stats().unwrap().dropped
    );
    for node in [&bench.subscriber, &bench.publisher, &bench.core] {
        node.shutdown();
    }
    println!("load average after: {}", load_average());
}
