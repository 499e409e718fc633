//! End-to-end confirmation under arbitrary confirmations: the worker `w1`
//! publishes QoS 0/1/2 messages (to `core1`, which subscribes to `#`, and
//! to itself), while `confirms` frames of any shape (its own origin or
//! another, its incarnation or another, any destination, any range, raw
//! bytes) reach its push stream, split anywhere, and `POST /confirm`
//! bodies reach the core signed as the fake worker `w2` (which may not
//! send them) or not at all.
//!
//! What must hold: every core answer passes [`checked_request`]; each QoS
//! 1/2 publish is settled (`Event::Confirmed` or `Event::NotConfirmed`) at
//! most once, naming exactly the nodes it was routed to, and, once the
//! clock has passed `messageExpiry`, exactly once; the worker's counters
//! agree with its events; nothing it waits for outlives its publishes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::Method;
use mqtt_cluster_core::forward::confirm::PublishId;
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::wire::sse;
use mqtt_cluster_core::{Event, NodeId};
use serde_json::{json, Value};

use crate::fixture::{checked_request, plain_request, Pair};
use crate::shapes::{body, split, Mangle, Name, Num};

/// Who a forged confirmation speaks of.
#[derive(Arbitrary, Debug, Clone)]
enum OriginChoice {
    /// The worker itself, in its own incarnation.
    Worker,
    /// The worker, in another incarnation.
    WorkerElsewhen(u64),
    /// Any name.
    Other(Name),
}

#[derive(Arbitrary, Debug, Clone)]
enum Seq {
    /// Near the numbers the worker hands out (1 to 64).
    Near(u8),
    Any(Num),
}

impl Seq {
    fn value(&self) -> u64 {
        match self {
            Seq::Near(n) => u64::from(n % 64) + 1,
            Seq::Any(n) => n.value(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct ConfirmSpec {
    origin: OriginChoice,
    /// `core1` (a real destination), the worker, or any name.
    to: Option<Name>,
    from: Seq,
    through: Seq,
}

impl ConfirmSpec {
    fn json(&self, pair: &Pair) -> Value {
        let (origin, incarnation) = match &self.origin {
            OriginChoice::Worker => (
                pair.worker.id().to_string(),
                pair.worker.first_incarnation().0,
            ),
            OriginChoice::WorkerElsewhen(i) => (pair.worker.id().to_string(), *i),
            OriginChoice::Other(name) => (name.text(), pair.worker.first_incarnation().0),
        };
        let to = self
            .to
            .as_ref()
            .map_or_else(|| "core1".to_owned(), Name::text);
        json!({
            "origin": origin,
            "incarnation": incarnation,
            "to": to,
            "from": self.from.value(),
            "through": self.through.value(),
        })
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Publish {
        qos: u8,
        /// On `t/x` (the core and the worker itself subscribe) or on
        /// `u/x` (only the core).
        own_topic: bool,
    },
    /// A `confirms` frame on the worker's stream, cut anywhere.
    Frame {
        confirms: Vec<ConfirmSpec>,
        cuts: Vec<u16>,
    },
    /// Raw bytes on the worker's stream.
    RawFrame(Vec<u8>),
    /// A `/confirm` to the core, signed as the worker `w2` or unsigned.
    ToCore {
        signed: bool,
        confirms: Vec<ConfirmSpec>,
        mangle: Mangle,
    },
    Pump,
    Advance(u16),
}

/// What the worker published and how each publish ended.
#[derive(Default)]
struct Ledger {
    routed: BTreeMap<PublishId, BTreeSet<NodeId>>,
    settled: BTreeSet<PublishId>,
    confirmed: u64,
    not_confirmed: u64,
}

impl Ledger {
    fn take(&mut self, events: Vec<Event>) {
        for event in events {
            let (id, named) = match event {
                Event::Confirmed { id, nodes } => {
                    self.confirmed += 1;
                    (id, nodes)
                }
                Event::NotConfirmed {
                    id,
                    failed,
                    confirmed,
                    ..
                } => {
                    self.not_confirmed += 1;
                    assert!(!failed.is_empty(), "publish {} failed for no node", id.0);
                    (id, failed.into_iter().chain(confirmed).collect())
                }
                _ => continue,
            };
            assert!(self.settled.insert(id), "publish {} settled twice", id.0);
            let routed = self
                .routed
                .get(&id)
                .unwrap_or_else(|| panic!("publish {} settled, never made", id.0));
            let named_set: BTreeSet<NodeId> = named.iter().cloned().collect();
            assert_eq!(named_set.len(), named.len(), "a node named twice");
            assert_eq!(&named_set, routed, "publish {} names other nodes", id.0);
        }
    }
}

fn settle_events(pair: &mut Pair, ledger: &mut Ledger) {
    pair.pump();
    let events = std::mem::take(&mut pair.worker_events);
    ledger.take(events);
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(steps) = Vec::<Step>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut pair = Pair::new();
    pair.keep_worker_events = true;
    pair.worker_events.clear();
    let mut ledger = Ledger::default();
    for step in steps.iter().take(32) {
        match step {
            Step::Publish { qos, own_topic } => {
                let now = pair.now();
                let topic = if *own_topic { "t/x" } else { "u/x" };
                let qos = Qos::from_u8(qos % 3).unwrap_or(Qos::AtLeastOnce);
                let message = Message::new(topic, "p").expect("topic").with_qos(qos);
                if let Ok(routing) = pair.worker.publish(now, message) {
                    if let Some(id) = routing.id {
                        ledger
                            .routed
                            .insert(id, routing.remote.iter().cloned().collect());
                    }
                }
            }
            Step::Frame { confirms, cuts } => {
                let confirms: Vec<Value> =
                    confirms.iter().take(16).map(|c| c.json(&pair)).collect();
                let frame = sse::encode_json("confirms", &json!({ "confirms": confirms }));
                if let Some(request) = pair.ensure_stream() {
                    let now = pair.now();
                    for piece in split(&frame, cuts) {
                        pair.worker.handle_stream_data(now, request, piece);
                    }
                }
            }
            Step::RawFrame(bytes) => {
                if let Some(request) = pair.ensure_stream() {
                    let now = pair.now();
                    pair.worker.handle_stream_data(now, request, bytes);
                }
            }
            Step::ToCore {
                signed,
                confirms,
                mangle,
            } => {
                let now = pair.now();
                let confirms: Vec<Value> =
                    confirms.iter().take(16).map(|c| c.json(&pair)).collect();
                let bytes = Bytes::from(body(&json!({ "confirms": confirms }), *mangle));
                let request = if *signed {
                    pair.fake.request(Method::POST, "/confirm", bytes, now.wall)
                } else {
                    plain_request(Method::POST, "/confirm", bytes)
                };
                let response = checked_request(&mut pair.core, now, request);
                assert!(
                    !response.status().is_success(),
                    "a worker's /confirm was taken"
                );
            }
            Step::Pump => {}
            Step::Advance(ms) => pair.advance(u64::from(*ms)),
        }
        settle_events(&mut pair, &mut ledger);
        let stats = pair.worker.stats();
        assert_eq!(stats.confirmed, ledger.confirmed, "counted confirmations");
        assert_eq!(
            stats.not_confirmed.values().sum::<u64>(),
            ledger.not_confirmed,
            "counted failures"
        );
        let status = pair.worker.status();
        let waiting: usize = status.destinations.values().map(|d| d.unconfirmed).sum();
        let open = ledger.routed.len() - ledger.settled.len();
        assert!(
            waiting <= open,
            "{waiting} copies wait for {open} open publishes (one destination each)"
        );
    }
    // Past `messageExpiry`, every publish has ended, once.
    let expiry = pair.worker.config().message_expiry + Duration::from_secs(5);
    pair.advance(u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX));
    settle_events(&mut pair, &mut ledger);
    let made: BTreeSet<PublishId> = ledger.routed.keys().copied().collect();
    assert_eq!(ledger.settled, made, "every publish settled once");
    assert!(pair.worker.status().destinations.is_empty());
}
