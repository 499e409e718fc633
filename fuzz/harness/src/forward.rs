//! Forwarded messages two ways: `POST /forward` batches into a core, signed
//! as a registered worker (or not), and bytes into a registered worker's
//! push stream (raw, or SSE frames of the protocol's shapes with arbitrary
//! values, split anywhere). Core answers pass [`checked_request`].

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::Method;
use mqtt_cluster_core::wire::sse;
use serde_json::json;

use crate::fixture::{checked_request, plain_request, Pair};
use crate::register::{add_headers, sign, Counters, HeaderChoice, Signature};
use crate::shapes::{
    body, forward_json, records_json, split, updates_json, Mangle, MessageSpec, Name, Num,
    RecordSpec, RouteUpdateSpec,
};

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
enum Batch {
    Raw(Vec<u8>),
    Json {
        messages: Vec<MessageSpec>,
        mangle: Mangle,
    },
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Messages {
        batch: Num,
        messages: Vec<MessageSpec>,
    },
    Members(Vec<RecordSpec>),
    Routes(Vec<RouteUpdateSpec>),
    Hello {
        core: Name,
        members: Vec<RecordSpec>,
        routes: Vec<RouteUpdateSpec>,
    },
    Other {
        event: String,
        data: String,
    },
    Comment(String),
}

impl Frame {
    fn encode(&self) -> Bytes {
        match self {
            Frame::Messages { batch, messages } => {
                let mut value = forward_json(messages);
                value["batch"] = json!(batch.value());
                sse::encode("messages", &value.to_string())
            }
            Frame::Members(records) => sse::encode("members", &records_json(records).to_string()),
            Frame::Routes(updates) => sse::encode("routes", &updates_json(updates).to_string()),
            Frame::Hello {
                core,
                members,
                routes,
            } => sse::encode(
                "hello",
                &json!({
                    "core": core.text(),
                    "members": records_json(members),
                    "routes": updates_json(routes),
                })
                .to_string(),
            ),
            Frame::Other { event, data } => sse::encode(event, data),
            Frame::Comment(text) => sse::encode_comment(text),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum StreamBytes {
    Raw(Vec<u8>),
    Frames(Vec<Frame>),
}

#[derive(Arbitrary, Debug)]
enum Step {
    ToCore { auth: Auth, batch: Batch },
    ToStream { bytes: StreamBytes, cuts: Vec<u16> },
    Publish { from_core: bool, topic: u8, qos: u8 },
    Advance(u8),
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(steps) = Vec::<Step>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut pair = Pair::new();
    let outsider = crate::fixture::Signer::new("w3", 1);
    let mut counters = Counters::new();
    for step in steps.iter().take(24) {
        match step {
            Step::ToCore { auth, batch } => {
                let now = pair.now();
                let bytes = match batch {
                    Batch::Raw(bytes) => bytes.clone(),
                    Batch::Json { messages, mangle } => body(&forward_json(messages), *mangle),
                };
                let request = match auth {
                    Auth::Registered => {
                        pair.fake
                            .request(Method::POST, "/forward", Bytes::from(bytes), now.wall)
                    }
                    Auth::Signed(signature) => {
                        let mut request =
                            plain_request(Method::POST, "/forward", Bytes::from(bytes));
                        let ms = now.instant.as_millis();
                        sign(&outsider, &mut counters, &mut request, signature, ms);
                        request
                    }
                    Auth::Unsigned(headers) => {
                        let mut request =
                            plain_request(Method::POST, "/forward", Bytes::from(bytes));
                        add_headers(&mut request, headers);
                        request
                    }
                };
                checked_request(&mut pair.core, now, request);
                pair.pump();
            }
            Step::ToStream { bytes, cuts } => {
                let Some(request) = pair.ensure_stream() else {
                    continue;
                };
                let bytes = match bytes {
                    StreamBytes::Raw(bytes) => bytes.clone(),
                    StreamBytes::Frames(frames) => frames
                        .iter()
                        .take(16)
                        .flat_map(|f| f.encode().to_vec())
                        .collect(),
                };
                let errors = pair.worker.stats().stream_errors;
                for chunk in split(&bytes, cuts) {
                    let now = pair.now();
                    pair.worker.handle_stream_data(now, request, chunk);
                }
                if pair.worker.stats().stream_errors != errors {
                    // The worker gave up on this stream and opens another.
                    pair.stream = None;
                }
                pair.pump();
            }
            Step::Publish {
                from_core,
                topic,
                qos,
            } => {
                let now = pair.now();
                let topic = crate::shapes::TOPICS[usize::from(*topic) % 5];
                let qos =
                    mqtt_cluster_core::wire::messages::Qos::from_u8(qos % 3).unwrap_or_default();
                let node = if *from_core {
                    &mut pair.core
                } else {
                    &mut pair.worker
                };
                if let Ok(mut message) = mqtt_cluster_core::node::Message::new(topic, "x") {
                    message.qos = qos;
                    let _ = node.publish(now, message);
                }
                pair.pump();
            }
            Step::Advance(ms) => pair.advance(u64::from(*ms) * 4),
        }
    }
    pair.advance(500);
}
