//! `POST /retained` on a core: what it takes, and that nothing it refuses
//! (malformed, oversized, invalid, unsigned, stale or replayed) changes the
//! node; what is only old news (stale entries) is taken and changes nothing.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::routing::TopicName;
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::{Qos, RegisterRequest};
use mqtt_cluster_core::wire::retained::{RetainStamp, RetainedEntry, RetainedRequest};
use mqtt_cluster_core::wire::{Endpoint, ErrorBody};
use mqtt_cluster_core::{
    Config, Event, Incarnation, Instant, Node, NodeId, Now, Role, Status, WallTime,
};
use proptest::prelude::*;

const SECRET: &str = "retained-test-secret";
const MAX_BODY: usize = 4096;

fn now() -> Now {
    Now::new(
        Instant::from_millis(1_000),
        WallTime::from_unix_millis(1_700_000_001_000),
    )
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

struct Worker {
    auth: Authenticator,
    id: NodeId,
    incarnation: Incarnation,
    counter: u64,
}

impl Worker {
    fn request(&mut self, endpoint: Endpoint, body: Bytes) -> Request<Bytes> {
        self.counter += 1;
        let mut request = endpoint.request("http://core1:8884", body);
        self.auth.sign(
            &mut request,
            &self.id,
            self.incarnation,
            self.counter,
            now().wall,
        );
        request
    }
}

/// A core holding two retained messages (one of them cleared since) and a
/// registered worker `w1`.
fn core_and_worker() -> (Node, Worker) {
    let config = Config::from_yaml_str(&format!(
        "core: true\nport: 8884\nnodeName: core1\nsecret: {SECRET}\nmaxBodySize: {MAX_BODY}\n\
         retainedLimit: 8\n"
    ))
    .unwrap();
    let mut core = Node::new(config, now(), 1).unwrap();
    for (topic, payload) in [("a/1", "one"), ("a/2", "two"), ("a/2", "")] {
        let m = Message::new(topic, payload).unwrap().retained();
        core.publish(now(), m).unwrap();
    }
    let mut worker = Worker {
        auth: Authenticator::new(Some(Secret::new(SECRET)), Duration::from_secs(30), 64),
        id: id("w1"),
        incarnation: Incarnation(1_700_000_000_500),
        counter: 0,
    };
    let register = encode_json(&RegisterRequest {
        node: worker.id.clone(),
        role: Role::Worker,
        incarnation: worker.incarnation,
        address: None,
    });
    let request = worker.request(Endpoint::Register, register);
    assert_eq!(core.handle_request(now(), request).status(), StatusCode::OK);
    while core.poll_transmit().is_some() {}
    while core.poll_event().is_some() {}
    (core, worker)
}

fn entry(topic: &str, clock: u64, payload: &str) -> RetainedEntry {
    RetainedEntry {
        topic: TopicName::new(topic).unwrap(),
        stamp: RetainStamp {
            clock,
            origin: id("w1"),
        },
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: Qos::AtLeastOnce,
        properties: None,
    }
}

fn body(entries: Vec<RetainedEntry>) -> Bytes {
    encode_json(&RetainedRequest { entries })
}

fn snapshot(node: &Node) -> (Status, Vec<Message>) {
    (node.status(), node.retained().cloned().collect())
}

#[test]
fn a_registered_worker_sets_and_clears_and_the_host_hears_of_it() {
    let (mut core, mut worker) = core_and_worker();
    let later = core.retained_set().clock() + 10;
    let request = worker.request(
        Endpoint::Retained,
        body(vec![entry("b", later, "bee"), entry("a/1", later, "")]),
    );
    assert_eq!(core.handle_request(now(), request).status(), StatusCode::OK);
    let held: Vec<&str> = core.retained().map(|m| m.topic.as_str()).collect();
    assert_eq!(held, ["b"]);
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::RetainSet(m) if m.topic.as_str() == "b" && m.retain)));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::RetainCleared { topic } if topic.as_str() == "a/1")));
    assert!(core.retained_set().clock() >= later);
}

#[test]
fn stale_entries_are_taken_and_change_nothing() {
    let (mut core, mut worker) = core_and_worker();
    let before = snapshot(&core);
    // Clock 2 is far below the core's stamps (they start at its incarnation).
    let request = worker.request(
        Endpoint::Retained,
        body(vec![entry("a/1", 2, "old"), entry("a/2", 2, "back?")]),
    );
    assert_eq!(core.handle_request(now(), request).status(), StatusCode::OK);
    assert_eq!(snapshot(&core), before);
    assert!(core.poll_event().is_none());
}

/// Ways to spoil a valid `POST /retained`.
#[derive(Debug, Clone)]
enum Spoil {
    Truncate(usize),
    /// A NUL byte, which JSON allows neither in nor between strings.
    Nul(usize),
    UnknownField,
    ZeroClock,
    Oversized,
    Unsigned,
    WrongSecret,
    StaleIncarnation,
    Replay,
    NotRegistered,
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        any::<usize>().prop_map(Spoil::Truncate),
        any::<usize>().prop_map(Spoil::Nul),
        Just(Spoil::UnknownField),
        Just(Spoil::ZeroClock),
        Just(Spoil::Oversized),
        Just(Spoil::Unsigned),
        Just(Spoil::WrongSecret),
        Just(Spoil::StaleIncarnation),
        Just(Spoil::Replay),
        Just(Spoil::NotRegistered),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A refused request answers with a typed JSON error and leaves the
    /// node, its retained set included, exactly as it was.
    #[test]
    fn refused_retained_requests_change_nothing(
        spoil in spoil(),
        payloads in prop::collection::vec("[a-z]{0,12}", 1..4),
    ) {
        let (mut core, mut worker) = core_and_worker();
        let clock = core.retained_set().clock() + 1;
        let entries: Vec<RetainedEntry> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| entry(&format!("t/{i}"), clock, p))
            .collect();
        let valid = body(entries.clone());
        let request = match &spoil {
            Spoil::Truncate(at) => {
                let cut = at % valid.len();
                worker.request(Endpoint::Retained, valid.slice(..cut))
            }
            Spoil::Nul(at) => {
                let mut bytes = valid.to_vec();
                let i = at % bytes.len();
                bytes[i] = 0;
                worker.request(Endpoint::Retained, Bytes::from(bytes))
            }
            Spoil::UnknownField => {
                let text = String::from_utf8(valid.to_vec()).unwrap();
                let text = text.replacen("\"entries\"", "\"extra\":1,\"entries\"", 1);
                worker.request(Endpoint::Retained, Bytes::from(text))
            }
            Spoil::ZeroClock => {
                let mut entries = entries.clone();
                entries[0].stamp.clock = 0;
                worker.request(Endpoint::Retained, body(entries))
            }
            Spoil::Oversized => {
                let big = "x".repeat(MAX_BODY);
                worker.request(Endpoint::Retained, body(vec![entry("t/big", clock, &big)]))
            }
            Spoil::Unsigned => Endpoint::Retained.request("http://core1:8884", valid.clone()),
            Spoil::WrongSecret => {
                let mut request = Endpoint::Retained.request("http://core1:8884", valid.clone());
                Authenticator::new(Some(Secret::new("another-secret")), Duration::from_secs(30), 8)
                    .sign(&mut request, &worker.id, worker.incarnation, 99, now().wall);
                request
            }
            Spoil::StaleIncarnation => {
                worker.incarnation = Incarnation(worker.incarnation.0 - 1);
                worker.request(Endpoint::Retained, valid.clone())
            }
            Spoil::Replay => {
                // A stale write the core takes (old news), sent twice.
                let old = body(vec![entry("a/1", 2, "old")]);
                let first = worker.request(Endpoint::Retained, old);
                let again = Request::builder()
                    .method(first.method().clone())
                    .uri(first.uri().clone())
                    .body(first.body().clone())
                    .map(|mut r| { *r.headers_mut() = first.headers().clone(); r })
                    .unwrap();
                prop_assert_eq!(core.handle_request(now(), first).status(), StatusCode::OK);
                while core.poll_event().is_some() {}
                again
            }
            Spoil::NotRegistered => {
                worker.id = id("w9");
                worker.request(Endpoint::Retained, valid.clone())
            }
        };
        let before = snapshot(&core);
        let response = core.handle_request(now(), request);
        prop_assert_ne!(response.status(), StatusCode::OK, "{:?} was taken", spoil);
        let error: ErrorBody = serde_json::from_slice(response.body()).unwrap();
        prop_assert!(!error.error.is_empty());
        if matches!(spoil, Spoil::ZeroClock) {
            prop_assert_eq!(error.error.as_str(), "invalid_retained");
        }
        prop_assert_eq!(snapshot(&core), before);
        prop_assert!(core.poll_event().is_none());
        prop_assert!(core.poll_transmit().is_none());
    }
}

#[test]
fn a_worker_does_not_serve_retained() {
    let config = Config::from_yaml_str(&format!(
        "nodeName: w1\nsecret: {SECRET}\nclusters: [http://core1:8884]\n"
    ))
    .unwrap();
    let mut worker = Node::new(config, now(), 2).unwrap();
    let request = Endpoint::Retained.request("http://w1", body(vec![entry("a", 5, "x")]));
    let response = worker.handle_request(now(), request);
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(worker.retained().count(), 0);
}
