//! The load generator behind `mqtt-cluster-bench`: publisher and subscriber
//! connections spread over brokers, every payload stamped with (publisher,
//! number, send time), and a report of what arrived: throughput, latency,
//! and per message lost, duplicated or out of order.
//!
//! Every subscriber subscribes to `{topic}/#` and every publisher publishes
//! on `{topic}/{publisher}`, so each subscriber should receive every
//! message: with publishers on one broker and subscribers on another, every
//! message crosses between them; with subscribers on both, it fans out.
//!
//! ```no_run
//! use mqtt_cluster_rmqtt_broker::load::{run, Load};
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! let load = Load {
//!     publish_on: vec!["127.0.0.1:1883".into()],
//!     subscribe_on: vec!["127.0.0.1:1884".into()],
//!     ..Load::default()
//! };
//! let report = run(&load, |progress| eprintln!("{progress}")).await?;
//! println!("{}", serde_json::to_string(&report)?);
//! # Ok(()) }
//! ```

pub mod stamp;
pub mod tally;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::task::JoinSet;

use stamp::Stamp;
use tally::{Latency, Tally};

/// One load to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// Brokers (`host:port`) publishers connect to, in turn.
    pub publish_on: Vec<String>,
    /// Brokers subscribers connect to, in turn.
    pub subscribe_on: Vec<String>,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// QoS of the subscriptions and the publishes (0, 1 or 2).
    pub qos: u8,
    /// Payload bytes (at least the 24 of the stamp).
    pub size: usize,
    /// Messages per second over all publishers; 0 for as fast as the
    /// client takes them (for QoS 1 and 2: as fast as acknowledged, within
    /// the client's window of unacknowledged messages).
    pub rate: u64,
    /// How long publishers publish.
    pub duration: Duration,
    /// How long, at most, to wait for the last messages once publishing
    /// stopped (publishers keep their connections that long for the last
    /// acknowledgements; subscribers stop earlier once everything expected
    /// came or nothing came for half a second).
    pub drain: Duration,
    /// How long to wait between the last SUBACK and the first publish, for
    /// the subscriptions to reach every broker of a cluster or bridge.
    pub settle: Duration,
    /// The topic prefix.
    pub topic: String,
    /// Unacknowledged QoS 1/2 messages a publisher keeps in flight.
    pub inflight: u16,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            publish_on: vec!["127.0.0.1:1883".into()],
            subscribe_on: vec!["127.0.0.1:1883".into()],
            publishers: 1,
            subscribers: 1,
            qos: 0,
            size: 100,
            rate: 0,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(3),
            settle: Duration::from_secs(1),
            topic: "bench".into(),
            inflight: 100,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Messages the publishers handed to their clients.
    pub sent: u64,
    /// Messages the subscribers should have received (`sent` × subscribers).
    pub expected: u64,
    /// First arrivals.
    pub received: u64,
    /// Messages that never arrived at a subscriber that should have had them.
    pub lost: u64,
    /// Arrivals of a message a subscriber already had.
    pub duplicated: u64,
    /// Arrivals after a later message of the same publisher.
    pub out_of_order: u64,
    /// Messages sent per second while publishing.
    pub sent_per_s: f64,
    /// First arrivals per second, from the first publish to the last
    /// arrival.
    pub received_per_s: f64,
    /// Send to first arrival.
    pub latency: Latency,
}

/// Counters a run shows while it goes.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages sent so far.
    pub sent: AtomicU64,
    /// Arrivals so far.
    pub received: AtomicU64,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} received {}",
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed)
        )
    }
}

fn qos(level: u8) -> anyhow::Result<QoS> {
    Ok(match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        other => bail!("QoS {other} is not 0, 1 or 2"),
    })
}

fn options(id: &str, broker: &str, inflight: u16) -> anyhow::Result<MqttOptions> {
    let (host, port) = broker
        .rsplit_once(':')
        .with_context(|| format!("broker address {broker:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("port of {broker:?}"))?;
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(inflight.max(1));
    options.set_max_packet_size(1 << 20, 1 << 20);
    Ok(options)
}

/// Runs `load`; `progress` is called about once a second while it runs.
pub async fn run(load: &Load, progress: impl Fn(&Progress)) -> anyhow::Result<Report> {
    let level = qos(load.qos)?;
    if load.publish_on.is_empty() || load.subscribe_on.is_empty() {
        bail!("no broker to publish on or subscribe on");
    }
    let counters = Arc::new(Progress::default());
    let clock = Instant::now();
    let now_us = move || clock.elapsed().as_micros() as u64;

    // Subscribers first, each subscribed before anyone publishes.
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..load.subscribers)
        .map(|_| Arc::new(Mutex::new(Tally::default())))
        .collect();
    let mut subscribers = JoinSet::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscriber_clients = Vec::new();
    for (i, tally) in tallies.iter().enumerate() {
        let broker = &load.subscribe_on[i % load.subscribe_on.len()];
        let (client, mut events) = AsyncClient::new(
            options(&format!("bench-sub-{i}"), broker, load.inflight)?,
            10_000,
        );
        client
            .subscribe(format!("{}/#", load.topic), level)
            .await
            .context("subscribe")?;
        // Wait for the SUBACK before the next one.
        loop {
            match events
                .poll()
                .await
                .with_context(|| format!("subscriber {i} on {broker}"))?
            {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        subscriber_clients.push(client);
        let (tally, counters, stop) = (tally.clone(), counters.clone(), stop.clone());
        // No timeout around `poll`: cancelling it mid-write would leave half
        // a packet on the wire. The subscriber ends on its own DISCONNECT,
        // which `run` sends through the client when the draining is over.
        subscribers.spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut t) = tally.lock() {
                            t.arrived(&publish.payload, now_us());
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                    Ok(_) => {}
                    Err(_) if stop.load(Ordering::Relaxed) => return Ok(()),
                    Err(error) => return Err(anyhow::anyhow!("subscriber {i}: {error}")),
                }
            }
        });
    }

    tokio::time::sleep(load.settle).await;
    // Publishers: each a client and its event loop, paced or not.
    let started = Instant::now();
    let per_publisher_rate = load.rate as f64 / load.publishers.max(1) as f64;
    let mut publishers = JoinSet::new();
    for p in 0..load.publishers {
        let broker = &load.publish_on[p % load.publish_on.len()];
        let (client, mut events) = AsyncClient::new(
            options(&format!("bench-pub-{p}"), broker, load.inflight)?,
            1_000,
        );
        let loop_stop = Arc::new(AtomicBool::new(false));
        // As for subscribers, `poll` is never cancelled: the loop ends on
        // the DISCONNECT the publisher sends once its window emptied.
        let polling = {
            let loop_stop = loop_stop.clone();
            let broker = broker.clone();
            tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                        Ok(_) => {}
                        // The broker may close first once DISCONNECT went.
                        Err(_) if loop_stop.load(Ordering::Relaxed) => return Ok(()),
                        Err(error) => {
                            return Err(anyhow::anyhow!("publisher {p} on {broker}: {error}"))
                        }
                    }
                }
            })
        };
        let (load, counters) = (load.clone(), counters.clone());
        publishers.spawn(async move {
            let topic = format!("{}/{p}", load.topic);
            let mut seq = 0u64;
            let deadline = started + load.duration;
            let pace = (per_publisher_rate > 0.0)
                .then(|| Duration::from_secs_f64(1.0 / per_publisher_rate));
            while Instant::now() < deadline {
                if let Some(pace) = pace {
                    let due = started + pace.mul_f64(seq as f64);
                    if due > Instant::now() {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                let stamp = Stamp {
                    publisher: p as u64,
                    seq,
                    sent_us: now_us(),
                };
                if client
                    .publish(topic.as_str(), level, false, stamp.payload(load.size))
                    .await
                    .is_err()
                {
                    // The event loop ended: its error says why.
                    return Err(match polling.await {
                        Ok(Err(error)) => error,
                        _ => anyhow::anyhow!("publisher {p}: its connection ended"),
                    });
                }
                seq += 1;
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            // Let the window empty, then say goodbye properly.
            tokio::time::sleep(load.drain).await;
            loop_stop.store(true, Ordering::Relaxed);
            client.disconnect().await.context("disconnect")?;
            polling.await.context("publisher loop")??;
            Ok::<(usize, u64), anyhow::Error>((p, seq))
        });
    }

    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            progress(&counters);
        }
    };
    let mut sent = vec![0u64; load.publishers];
    let publishing = async {
        while let Some(joined) = publishers.join_next().await {
            let (p, n) = joined.context("publisher task")??;
            sent[p] = n;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        result = publishing => result?,
        _ = ticker => unreachable!("the ticker never ends"),
    }
    let publish_time = load.duration.as_secs_f64().max(f64::EPSILON);
    // The subscribers go once arrivals stopped for half a second, or all
    // that was expected came, or at most `drain` after the publishers.
    let expected = sent.iter().sum::<u64>() * load.subscribers as u64;
    let draining = Instant::now();
    let mut last = (counters.received.load(Ordering::Relaxed), Instant::now());
    while draining.elapsed() < load.drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counters.received.load(Ordering::Relaxed);
        if now >= expected {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in &subscriber_clients {
        client.disconnect().await.context("disconnect")?;
    }
    while let Some(joined) = subscribers.join_next().await {
        joined.context("subscriber task")??;
    }

    let total_sent: u64 = sent.iter().sum();
    let mut report = Report {
        sent: total_sent,
        expected: total_sent * load.subscribers as u64,
        received: 0,
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
        sent_per_s: total_sent as f64 / publish_time,
        received_per_s: 0.0,
        latency: Latency::default(),
    };
    let mut latencies = Vec::new();
    let mut last_us = 0;
    for tally in &tallies {
        let tally = tally
            .lock()
            .map_err(|_| anyhow::anyhow!("a tally lock broke"))?;
        report.lost += tally.lost(&sent);
        report.duplicated += tally.duplicates;
        report.out_of_order += tally.out_of_order;
        report.received += tally.latencies_us.len() as u64;
        latencies.extend_from_slice(&tally.latencies_us);
        last_us = last_us.max(tally.last_us);
    }
    // From the first send to the last first arrival.
    let first_send_us = started.duration_since(clock).as_micros() as u64;
    let span_us = last_us.saturating_sub(first_send_us).max(1);
    report.received_per_s = report.received as f64 / (span_us as f64 / 1e6);
    report.latency = Latency::of(&mut latencies);
    Ok(report)
}
