//! The cluster's retained set: `POST /retained` bodies into a core (signed
//! as the registered fake worker `w2`, as anyone, replayed, or unsigned;
//! raw bytes or entries of the right shape with arbitrary values), and
//! `retained` frames into a registered worker's stream, split anywhere,
//! between retained publishes on both nodes.
//!
//! What must hold: every core answer passes [`checked_request`] (a refused
//! body leaves `status()`, retained set and digest included, as it was); a
//! replayed request is refused; neither node's set ever exceeds its limit or
//! holds a payload no one sent it.

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::sse;
use mqtt_cluster_core::Node;
use serde_json::{json, Value};

use crate::fixture::{checked_request, plain_request, Pair};
use crate::register::{add_headers, sign, Counters, HeaderChoice, Signature};
use crate::shapes::{body, split, Loose, Mangle, Name, Num, Payload, Topic};

/// One entry of a `POST /retained` body.
#[derive(Arbitrary, Debug, Clone)]
struct EntrySpec {
    topic: Topic,
    clock: Loose<Num>,
    origin: Name,
    payload: Payload,
    qos: Option<u8>,
    properties: Option<Payload>,
}

impl EntrySpec {
    fn json(&self) -> Value {
        let mut entry = json!({
            "topic": self.topic.text(),
            "stamp": {
                "clock": self.clock.json(|n| json!(n.value())),
                "origin": self.origin.text(),
            },
            "payload": self.payload.json(),
        });
        if let Some(qos) = self.qos {
            entry["qos"] = json!(qos % 4);
        }
        if let Some(p) = &self.properties {
            entry["properties"] = p.json();
        }
        entry
    }
}

fn entries_json(entries: &[EntrySpec]) -> Value {
    json!({ "entries": entries.iter().take(16).map(EntrySpec::json).collect::<Vec<_>>() })
}

#[derive(Arbitrary, Debug)]
enum Auth {
    /// Signed by the registered fake worker `w2`.
    Registered,
    /// Signed as described.
    Signed(Signature),
    /// Unsigned, with these headers.
    Unsigned(Vec<(HeaderChoice, Vec<u8>)>),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    Entries {
        entries: Vec<EntrySpec>,
        mangle: Mangle,
    },
}

#[derive(Arbitrary, Debug)]
enum Step {
    ToCore {
        auth: Auth,
        body: Body,
    },
    /// The last request the core accepted, sent again byte for byte.
    Replay,
    ToStream {
        entries: Vec<EntrySpec>,
        cuts: Vec<u16>,
    },
    Publish {
        from_core: bool,
        topic: u8,
        clear: bool,
    },
    Advance(u8),
}

const TOPICS: [&str; 3] = ["t/a", "state/x", "$SYS/s"];

/// Payloads some step sent or published, base64 decoded where possible:
/// a node may hold nothing else.
#[derive(Default)]
struct Sent(BTreeSet<Vec<u8>>);

impl Sent {
    fn note(&mut self, entries: &[EntrySpec]) {
        use base64::Engine as _;
        for entry in entries {
            if let Payload::Bytes(bytes) = &entry.payload {
                self.0.insert(bytes.clone());
            }
            if let Payload::Text(text) = &entry.payload {
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
                    self.0.insert(bytes);
                }
            }
        }
    }

    fn note_raw(&mut self, bytes: &[u8]) {
        // A raw body may hold any payload; decode what parses.
        if let Ok(request) =
            serde_json::from_slice::<mqtt_cluster_core::wire::retained::RetainedRequest>(bytes)
        {
            for entry in request.entries {
                self.0.insert(entry.payload.to_vec());
            }
        }
    }

    fn check(&self, node: &Node, name: &str) {
        let limit = node.config().retained_limit;
        let held = node.retained().count();
        assert!(
            held <= limit,
            "{name} holds {held} retained topics over {limit}"
        );
        for message in node.retained() {
            assert!(
                self.0.contains(message.payload.as_ref()),
                "{name} retains {} with a payload no one sent",
                message.topic.as_str()
            );
        }
    }
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(steps) = Vec::<Step>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut pair = Pair::new();
    let outsider = crate::fixture::Signer::new("w3", 1);
    let mut counters = Counters::new();
    let mut sent = Sent::default();
    let mut last_accepted: Option<Request<Bytes>> = None;
    for step in steps.iter().take(24) {
        match step {
            Step::ToCore { auth, body: spec } => {
                let now = pair.now();
                let bytes = match spec {
                    Body::Raw(bytes) => bytes.clone(),
                    Body::Entries { entries, mangle } => {
                        sent.note(entries);
                        body(&entries_json(entries), *mangle)
                    }
                };
                sent.note_raw(&bytes);
                let request = match auth {
                    Auth::Registered => {
                        pair.fake
                            .request(Method::POST, "/retained", Bytes::from(bytes), now.wall)
                    }
                    Auth::Signed(signature) => {
                        let mut request =
                            plain_request(Method::POST, "/retained", Bytes::from(bytes));
                        let ms = now.instant.as_millis();
                        sign(&outsider, &mut counters, &mut request, signature, ms);
                        request
                    }
                    Auth::Unsigned(headers) => {
                        let mut request =
                            plain_request(Method::POST, "/retained", Bytes::from(bytes));
                        add_headers(&mut request, headers);
                        request
                    }
                };
                let copy = clone_request(&request);
                let response = checked_request(&mut pair.core, now, request);
                if response.status() == StatusCode::OK {
                    last_accepted = Some(copy);
                }
                pair.pump();
            }
            Step::Replay => {
                let Some(request) = last_accepted.as_ref().map(clone_request) else {
                    continue;
                };
                let now = pair.now();
                let response = checked_request(&mut pair.core, now, request);
                assert_ne!(
                    response.status(),
                    StatusCode::OK,
                    "a replayed /retained was accepted"
                );
            }
            Step::ToStream { entries, cuts } => {
                let Some(request) = pair.ensure_stream() else {
                    continue;
                };
                sent.note(entries);
                let frame = sse::encode("retained", &entries_json(entries).to_string());
                let errors = pair.worker.stats().stream_errors;
                for chunk in split(&frame, cuts) {
                    let now = pair.now();
                    pair.worker.handle_stream_data(now, request, chunk);
                }
                if pair.worker.stats().stream_errors != errors {
                    pair.stream = None;
                }
                pair.pump();
            }
            Step::Publish {
                from_core,
                topic,
                clear,
            } => {
                let now = pair.now();
                let topic = TOPICS[usize::from(*topic) % TOPICS.len()];
                let payload: &[u8] = if *clear { b"" } else { b"kept" };
                sent.0.insert(payload.to_vec());
                let node = if *from_core {
                    &mut pair.core
                } else {
                    &mut pair.worker
                };
                if let Ok(message) = Message::new(topic, Bytes::from_static(payload)) {
                    let _ = node.publish(now, message.retained());
                }
                pair.pump();
            }
            Step::Advance(ms) => pair.advance(u64::from(*ms) * 4),
        }
        sent.check(&pair.core, "core1");
        sent.check(&pair.worker, "w1");
    }
    pair.advance(500);
    sent.check(&pair.core, "core1");
    sent.check(&pair.worker, "w1");
}

fn clone_request(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}
