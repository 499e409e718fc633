//! The chaos suite's MQTT clients and what they saw: a QoS 1 publisher
//! and a subscriber on every broker, each with a persistent session that
//! reconnects through every fault, and per subscriber the messages that
//! arrived, so that a checker can tell lost, duplicated and reordered
//! messages apart.
//!
//! A message counts as *confirmed* when its publisher got the PUBACK; with
//! `--puback-after-confirm` a broker sends it only once every broker with a
//! matching subscriber took the message, so a confirmed message must reach
//! every subscriber whose broker stayed up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};

use super::health::unix_ms;
use super::in_flight::InFlight;
use crate::load::stamp::Stamp;

/// The topic prefix: publisher `p` publishes on `chaos/{p}`, subscribers
/// take `chaos/#`.
pub const TOPIC: &str = "chaos";

/// What one publisher sent and had confirmed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Published {
    /// Messages handed to the client.
    pub sent: u64,
    /// The messages whose PUBACK came, by number: when they last went out
    /// and when their PUBACK came.
    pub confirmed: BTreeMap<u64, Span>,
    /// Times the connection was lost.
    pub reconnects: u64,
    /// The messages whose PUBACK had not come when the drain ended, by
    /// number: when they last went out (`None`: never sent).
    #[serde(default)]
    pub unacknowledged: BTreeMap<u64, Option<u64>>,
    /// The messages the MQTT client dropped before sending them (see
    /// [`InFlight::dropped`]): no broker ever had them.
    #[serde(default)]
    pub dropped_by_client: Vec<u64>,
}

/// When a confirmed message was in the broker's hands (Unix milliseconds):
/// from its last transmission (a reconnect sends it again) to its PUBACK.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The PUBLISH last went out.
    pub out_unix_ms: u64,
    /// The PUBACK came.
    pub acked_unix_ms: u64,
}

/// What one subscriber received.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Received {
    /// Per publisher, the numbers received at least once.
    pub seen: BTreeMap<u64, BTreeSet<u64>>,
    /// Arrivals of a number already received.
    pub duplicates: u64,
    /// Arrivals below the highest number already received from the same
    /// publisher.
    pub reordered: u64,
    /// Times the connection was lost.
    pub reconnects: u64,
    /// When each SUBACK came (Unix ms): the first subscription, and each
    /// one again after the broker lost the session (it was killed).
    pub subscribed_unix_ms: Vec<u64>,
}

impl Received {
    /// Records the arrival of a message with this payload (payloads
    /// without a stamp are not the suite's and are ignored).
    pub fn arrived(&mut self, payload: &[u8]) {
        let Some(stamp) = Stamp::read(payload) else {
            return;
        };
        let seen = self.seen.entry(stamp.publisher).or_default();
        if seen.last().is_some_and(|&highest| stamp.seq < highest) {
            self.reordered += 1;
        }
        if !seen.insert(stamp.seq) {
            self.duplicates += 1;
        }
    }
}

fn options(id: &str, broker: &str) -> MqttOptions {
    let (host, port) = broker.rsplit_once(':').unwrap_or((broker, "1883"));
    let mut options = MqttOptions::new(id, host, port.parse().unwrap_or(1883));
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    options.set_inflight(100);
    options
}

/// Publishes `rate` QoS 1 messages a second on `broker` as publisher
/// `index` until `stop`, then waits up to `drain` for the last PUBACKs.
pub async fn publish(
    index: u64,
    broker: String,
    rate: u64,
    stop: Arc<AtomicBool>,
    drain: Duration,
) -> Published {
    let (client, mut events) =
        AsyncClient::new(options(&format!("chaos-pub-{index}"), &broker), 1000);
    let log = Arc::new(Mutex::new(Published::default()));
    // Which number each packet id carries (see `in_flight`).
    let in_flight = Arc::new(Mutex::new(InFlight::default()));
    let sender = {
        let (client, log, in_flight, stop) =
            (client.clone(), log.clone(), in_flight.clone(), stop.clone());
        tokio::spawn(async move {
            let pace = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let started = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let stamp = Stamp {
                    publisher: index,
                    seq,
                    sent_us: started.elapsed().as_micros() as u64,
                };
                if let Ok(mut f) = in_flight.lock() {
                    f.queued(seq);
                }
                if client
                    .publish(
                        format!("{TOPIC}/{index}"),
                        QoS::AtLeastOnce,
                        false,
                        stamp.payload(64),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
                if let Ok(mut l) = log.lock() {
                    l.sent += 1;
                }
                seq += 1;
                tokio::time::sleep(pace).await;
            }
        })
    };
    let mut deadline: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) && deadline.is_none() {
            deadline = Some(Instant::now() + drain);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if deadline.is_some() && in_flight.lock().map_or(true, |f| f.is_empty()) {
            break;
        }
        let polled = tokio::time::timeout(Duration::from_millis(500), events.poll()).await;
        match polled {
            Err(_) => {}
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                let collision_pending = events.state.collision.is_some();
                if let Ok(mut f) = in_flight.lock() {
                    f.sent(pkid, unix_ms(), collision_pending);
                }
            }
            Ok(Ok(Event::Outgoing(Outgoing::AwaitAck(pkid)))) => {
                if let Ok(mut f) = in_flight.lock() {
                    f.parked(pkid);
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                let acked = in_flight.lock().ok().and_then(|mut f| f.acked(ack.pkid));
                if let (Some((seq, out_unix_ms)), Ok(mut l)) = (acked, log.lock()) {
                    let span = Span {
                        out_unix_ms,
                        acked_unix_ms: unix_ms(),
                    };
                    l.confirmed.insert(seq, span);
                }
            }
            Ok(Ok(_)) => {}
            // The broker is down, paused or cut off: the next poll
            // reconnects, and the session sends what is unacknowledged.
            Ok(Err(_)) => {
                if let Ok(mut l) = log.lock() {
                    l.reconnects += 1;
                }
                tokio::time::sleep(Duration::from_millis(200)).await
            }
        }
    }
    sender.abort();
    let _ = client.try_disconnect();
    let mut published = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    if let Ok(f) = in_flight.lock() {
        published.unacknowledged = f.unacknowledged();
        published.dropped_by_client = f.dropped().to_vec();
    }
    published
}

/// Subscribes to `chaos/#` on `broker` as subscriber `index` and records
/// every arrival until `stop`. Resubscribes when the broker lost the
/// session (it was killed).
pub async fn subscribe(
    index: u64,
    broker: String,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> Received {
    let (client, mut events) =
        AsyncClient::new(options(&format!("chaos-sub-{index}"), &broker), 1000);
    let mut received = Received::default();
    while !stop.load(Ordering::Relaxed) {
        let polled = tokio::time::timeout(Duration::from_millis(500), events.poll()).await;
        match polled {
            Err(_) => {}
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                if !ack.session_present {
                    let _ = client.try_subscribe(format!("{TOPIC}/#"), QoS::AtLeastOnce);
                }
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                received.subscribed_unix_ms.push(unix_ms());
                ready.store(true, Ordering::Relaxed);
            }
            Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => received.arrived(&publish.payload),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                received.reconnects += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = client.try_disconnect();
    received
}
