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

use crate::load::stamp::Stamp;

/// The topic prefix: publisher `p` publishes on `chaos/{p}`, subscribers
/// take `chaos/#`.
pub const TOPIC: &str = "chaos";

/// What one publisher sent and had confirmed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Published {
    /// Messages handed to the client.
    pub sent: u64,
    /// Numbers of the messages whose PUBACK came.
    pub confirmed: BTreeSet<u64>,
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
}

impl Received {
    fn arrived(&mut self, payload: &[u8]) {
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
    // Numbers in the order they were handed to the client; each takes the
    // packet id of the next new outgoing PUBLISH.
    let pending = Arc::new(Mutex::new(std::collections::VecDeque::<u64>::new()));
    let sender = {
        let (client, log, pending, stop) =
            (client.clone(), log.clone(), pending.clone(), stop.clone());
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
                if let Ok(mut p) = pending.lock() {
                    p.push_back(seq);
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
    let mut by_pkid: BTreeMap<u16, u64> = BTreeMap::new();
    let mut deadline: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) && deadline.is_none() {
            deadline = Some(Instant::now() + drain);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if deadline.is_some() && by_pkid.is_empty() && pending.lock().map_or(true, |p| p.is_empty())
        {
            break;
        }
        let polled = tokio::time::timeout(Duration::from_millis(500), events.poll()).await;
        match polled {
            Err(_) => {}
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let std::collections::btree_map::Entry::Vacant(slot) = by_pkid.entry(pkid) {
                    if let Some(seq) = pending.lock().ok().and_then(|mut p| p.pop_front()) {
                        slot.insert(seq);
                    }
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(seq) = by_pkid.remove(&ack.pkid) {
                    if let Ok(mut l) = log.lock() {
                        l.confirmed.insert(seq);
                    }
                }
            }
            Ok(Ok(_)) => {}
            // The broker is down, paused or cut off: the next poll
            // reconnects, and the session sends what is unacknowledged.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    sender.abort();
    let _ = client.try_disconnect();
    let published = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
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
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => ready.store(true, Ordering::Relaxed),
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

/// Per subscriber, what a checker makes of the run.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Confirmed messages it should have received.
    pub expected: u64,
    /// Of those, the ones that never arrived.
    pub lost: u64,
    /// Arrivals of a message already received.
    pub duplicates: u64,
    /// Arrivals after a later message of the same publisher.
    pub reordered: u64,
}

/// What `received` makes of the confirmed messages of every publisher
/// (publisher `i` at `published[i]`).
pub fn verdict(published: &[Published], received: &Received) -> Verdict {
    let mut verdict = Verdict {
        duplicates: received.duplicates,
        reordered: received.reordered,
        ..Verdict::default()
    };
    for (publisher, log) in (0u64..).zip(published) {
        let seen = received.seen.get(&publisher);
        verdict.expected += log.confirmed.len() as u64;
        verdict.lost += log
            .confirmed
            .iter()
            .filter(|seq| !seen.is_some_and(|s| s.contains(seq)))
            .count() as u64;
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(publisher: u64, seq: u64) -> Vec<u8> {
        Stamp {
            publisher,
            seq,
            sent_us: 0,
        }
        .payload(64)
    }

    #[test]
    fn the_verdict_counts_confirmed_messages_missing_duplicated_and_late() {
        let mut received = Received::default();
        for seq in [0, 2, 1, 2] {
            received.arrived(&payload(0, seq));
        }
        let published = [Published {
            sent: 5,
            confirmed: BTreeSet::from([0, 1, 2, 3]),
        }];
        let v = verdict(&published, &received);
        assert_eq!(
            v,
            Verdict {
                expected: 4,
                lost: 1,
                duplicates: 1,
                reordered: 1,
            }
        );
    }
}
