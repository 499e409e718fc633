//! `mqtt-cluster demo`: two cores and two workers in one process, on
//! loopback with real HTTP; one worker subscribes, the other publishes, and
//! the demo shows what crossed which hop.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::{MemberState, Qos};
use mqtt_cluster_core::{Config, Event};
use mqtt_cluster_tokio::{Cluster, ClusterHandle, Options, Traffic};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::table::Table;
use crate::Failure;

const TIMING: &str = "heartbeatInterval: 100ms\nsuspectTimeout: 400ms\ndeadTimeout: 1200ms\n\
                      requestTimeout: 1s\nretryBackoff: 50ms\nretryBackoffMax: 500ms\n";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds to wait for each step (agreement, routes, delivery).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Answer the publishing client's PUBACK only once every destination
    /// confirmed the QoS 1 message (end to end), instead of at once.
    #[arg(long)]
    puback_after_confirm: bool,
}

/// Requests and stream chunks while recording, as printable lines.
struct Transcript {
    since: Option<Instant>,
    lines: Vec<(Duration, String)>,
}

impl Transcript {
    fn record(&mut self, traffic: &Traffic) {
        let Some(since) = self.since else { return };
        let line = match traffic {
            Traffic::Exchange {
                from,
                to,
                peer,
                method,
                path,
                outcome,
                request_bytes,
                ..
            } => {
                // The chatter that keeps the cluster together, not the message.
                if path == "/heartbeat" || path == "/sync" {
                    return;
                }
                let to = peer.as_ref().map_or(to.as_str(), |p| p.as_str());
                let outcome = match outcome {
                    Ok(status) => status.as_u16().to_string(),
                    Err(error) => error.to_string(),
                };
                format!(
                    "{method} {path:<9} {from:>5} -> {to:<5}  {outcome}  ({request_bytes} B body)"
                )
            }
            Traffic::StreamChunk {
                node,
                from,
                peer,
                bytes,
            } => {
                let from = peer.as_ref().map_or(from.as_str(), |p| p.as_str());
                format!("SSE  /stream    {from:>5} => {node:<5}  frame  ({bytes} B)")
            }
            _ => return,
        };
        self.lines.push((since.elapsed(), line));
    }

    fn note(&mut self, line: String) {
        if let Some(since) = self.since {
            self.lines.push((since.elapsed(), line));
        }
    }
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let wait = Duration::from_secs(args.timeout.max(1));
    let secret = generated_secret();
    let transcript = Arc::new(Mutex::new(Transcript {
        since: None,
        lines: Vec::new(),
    }));
    let options = |seed: u64| {
        let transcript = transcript.clone();
        Options::new().seed(seed).observe(move |traffic| {
            if let Ok(mut t) = transcript.lock() {
                t.record(traffic);
            }
        })
    };

    let l1 = TcpListener::bind("127.0.0.1:0").await?;
    let l2 = TcpListener::bind("127.0.0.1:0").await?;
    let (p1, p2) = (l1.local_addr()?.port(), l2.local_addr()?.port());
    let (u1, u2) = (
        format!("http://127.0.0.1:{p1}"),
        format!("http://127.0.0.1:{p2}"),
    );
    let core = |name: &str, port: u16| {
        Config::from_yaml_str(&format!(
            "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: {name}\n\
             advertise: http://127.0.0.1:{port}\nclusters: [{u1}, {u2}]\nsecret: {secret}\n{TIMING}"
        ))
    };
    let worker = |name: &str, first: &str, second: &str| {
        Config::from_yaml_str(&format!(
            "nodeName: {name}\nclusters: [{first}, {second}]\nsecret: {secret}\n{TIMING}"
        ))
    };
    println!("mqtt-cluster demo: 2 cores and 2 workers in one process, real HTTP on loopback");
    let core1 = Cluster::start_with(core("core1", p1)?, options(1).listener(l1)).await?;
    let core2 = Cluster::start_with(core("core2", p2)?, options(2).listener(l2)).await?;
    let w1 = Cluster::start_with(worker("w1", &u1, &u2)?, options(3)).await?;
    let w2 = Cluster::start_with(worker("w2", &u2, &u1)?, options(4)).await?;
    println!("  core1  core    {u1}");
    println!("  core2  core    {u2}");
    println!("  w1     worker  registers with core1 (then core2)");
    println!("  w2     worker  registers with core2 (then core1)");
    let nodes = [&core1, &core2, &w1, &w2];

    let started = Instant::now();
    let agreed = until(wait, || async { agree(&nodes, 4).await }).await;
    if !agreed {
        println!("FAILED: the four nodes did not agree on membership within {wait:?}");
        stop(&nodes).await;
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "\nmembership agreed after {} ms",
        started.elapsed().as_millis()
    );

    w2.subscribe("demo/#").await?;
    let started = Instant::now();
    let routed = until(wait, || async {
        w1.status().await.is_ok_and(|s| s.routes > 0)
    })
    .await;
    if !routed {
        println!("FAILED: w1 did not learn w2's subscription within {wait:?}");
        stop(&nodes).await;
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "w2 subscribed to demo/#; w1 learned the route after {} ms",
        started.elapsed().as_millis()
    );

    if let Ok(mut t) = transcript.lock() {
        t.since = Some(Instant::now());
    }
    let sent = Instant::now();
    let messages = [
        Message::new("demo/greeting", "hello across the cluster")?,
        Message::new("demo/order", "order #1, at least once")?.with_qos(Qos::AtLeastOnce),
    ];
    // Taken before publishing, so that no confirmation can pass unseen.
    let publisher_events = w1.events();
    let mut awaiting = None;
    for message in messages {
        let (topic, qos) = (message.topic.as_str().to_owned(), message.qos.as_u8());
        let routing = w1.publish(message).await?;
        let targets: Vec<&str> = routing.remote.iter().map(|n| n.as_str()).collect();
        println!("w1 published {topic} (QoS {qos}): forwarded to {targets:?}");
        if let Ok(mut t) = transcript.lock() {
            t.note(format!("w1 publishes {topic} (QoS {qos})"));
            if routing.id.is_some() && !args.puback_after_confirm {
                t.note("w1 answers the client's PUBACK at once (the next hop has it)".into());
            }
        }
        if args.puback_after_confirm {
            awaiting = awaiting.or(routing.id);
        }
    }

    let events = w2.events();
    let mut arrived: Vec<(u8, Duration)> = Vec::new();
    let deadline = sent + wait;
    while arrived.len() < 2 {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(event)) = next else { break };
        if let Event::Deliver(delivery) = event {
            let line = format!(
                "w2 delivers {} (QoS {}) from {}: {:?}",
                delivery.topic.as_str(),
                delivery.qos.as_u8(),
                delivery.origin,
                String::from_utf8_lossy(&delivery.payload)
            );
            if let Ok(mut t) = transcript.lock() {
                t.note(line);
            }
            arrived.push((delivery.qos.as_u8(), sent.elapsed()));
        }
    }
    let mut confirmed = !args.puback_after_confirm;
    if let Some(id) = awaiting {
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, publisher_events.next()).await
        {
            match event {
                Event::Confirmed { id: settled, nodes } if settled == id => {
                    let nodes: Vec<&str> = nodes.iter().map(|n| n.as_str()).collect();
                    if let Ok(mut t) = transcript.lock() {
                        t.note(format!(
                            "w1 answers the client's PUBACK: {nodes:?} confirmed publish {}",
                            id.0
                        ));
                    }
                    confirmed = true;
                    break;
                }
                Event::NotConfirmed {
                    id: settled,
                    reason,
                    failed,
                    ..
                } if settled == id => {
                    println!("publish {} not confirmed ({reason:?}) by {failed:?}", id.0);
                    break;
                }
                _ => {}
            }
        }
    }
    // Let the last acknowledgements land in the transcript.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lines = transcript
        .lock()
        .map(|mut t| {
            t.since = None;
            std::mem::take(&mut t.lines)
        })
        .unwrap_or_default();
    println!("\nwhat crossed the wire (heartbeats and syncs left out):");
    for (at, line) in lines {
        println!("  +{:>8.3} ms  {line}", at.as_secs_f64() * 1000.0);
    }

    println!("\ncounters per node:");
    let mut table = Table::new(&[
        "node",
        "published",
        "delivered",
        "requests sent",
        "requests served",
        "frames sent",
        "frames received",
    ]);
    for node in nodes {
        let stats = node.stats().await?;
        let runtime = node.runtime_stats().await?;
        table.row(vec![
            node.node_id().to_string(),
            stats.published.to_string(),
            stats.delivered.to_string(),
            stats.requests_sent.to_string(),
            runtime.requests_received.to_string(),
            stats.stream_frames_sent.to_string(),
            stats.stream_frames_received.to_string(),
        ]);
    }
    print!("{}", table.render());

    println!("\nmembers as each node sees them:");
    for node in nodes {
        let status = serde_json::to_value(node.status().await?)?;
        println!("{}", crate::status::render(&status));
    }

    stop(&nodes).await;
    if !confirmed {
        println!("FAILED: w1 had no confirmation of its QoS 1 message within {wait:?}");
        return Ok(ExitCode::FAILURE);
    }
    if arrived.len() == 2 {
        let times: Vec<String> = arrived
            .iter()
            .map(|(qos, at)| format!("QoS {qos} after {:.1} ms", at.as_secs_f64() * 1000.0))
            .collect();
        println!("OK: both messages arrived on w2 ({})", times.join(", "));
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "FAILED: {} of 2 messages arrived on w2 within {wait:?}",
            arrived.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Leaves gracefully: workers first, so the cores see them go.
async fn stop(nodes: &[&ClusterHandle; 4]) {
    for node in nodes.iter().rev() {
        node.shutdown().await;
    }
}

/// Polls `check` every 20ms until it holds or `within` has passed.
async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every node sees the same `count` members, all alive.
async fn agree(nodes: &[&ClusterHandle], count: usize) -> bool {
    let mut digest = None;
    for node in nodes {
        let Ok(status) = node.status().await else {
            return false;
        };
        let alive = status
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        if alive != count
            || *digest.get_or_insert(status.members_digest.clone()) != status.members_digest
        {
            return false;
        }
    }
    true
}

/// A fresh secret for this run only, from the standard library's random
/// hash keys: the demo's cluster is not reachable with a guessable one even
/// for the seconds it runs.
fn generated_secret() -> String {
    (0..4)
        .map(|_| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
