//! PROTOCOL.md's test vectors, replayed against a core.
//!
//! Each file in `protocol-vectors/` is one conversation with a fresh core:
//! the core's `plugin.yaml`, its seed and start time, then requests exactly
//! as sent (headers and body) with the time they arrive, and the answers the
//! core must give. Replaying checks three things, so that the document, the
//! vectors and the code cannot drift apart:
//!
//! - the signed text, rebuilt from the request by this file's own reading
//!   of PROTOCOL.md ("Signing"), equals the vector's `signedText`;
//! - HMAC-SHA256 of it with the vector's secret equals the request's
//!   `x-cluster-signature` exactly when the vector says `signatureValid`;
//! - the core answers each request with the vector's status, content type
//!   and body (JSON compared as values; for refusals, the `error` kind), and
//!   writes exactly the vector's bytes to the push streams it serves.
//!
//! The vectors are written from the conversations below with
//! `MQTT_CLUSTER_BLESS_VECTORS=1 cargo test -p mqtt-cluster-tests --test
//! protocol_vectors`; review the diff before committing it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method, Request};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::node::StreamOutput;
use mqtt_cluster_core::{Config, Incarnation, Instant, Node, NodeId, Now, StreamId, WallTime};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SECRET: &str = "protocol-vector-secret";
const START_WALL_MS: u64 = 1_700_000_000_000;
const SEED: u64 = 1;
const W1: u64 = 1_700_000_000_001;
const W2: u64 = 1_700_000_000_002;
const C2: u64 = 1_700_000_000_003;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../protocol-vectors")
}

fn core_config() -> String {
    format!(
        "core: true\nhost: 127.0.0.1\nport: 18000\nnodeName: core1\n\
         clusters: [http://127.0.0.1:18000]\nsecret: {SECRET}\nmaxBodySize: 2048\n"
    )
}

/// How a step's request is made wrong on purpose.
#[derive(Clone, Copy)]
enum Flaw {
    None,
    /// No protocol headers at all.
    Unsigned,
    /// Signed with another secret.
    WrongSecret,
    /// Signed, then `x-cluster-version` changed.
    Version,
    /// Its timestamp a minute behind the core's clock.
    Stale,
}

/// One request of a conversation, before it is signed.
struct Step {
    note: &'static str,
    after_ms: u64,
    /// (node, incarnation, counter); `None` for an unsigned request.
    sender: Option<(&'static str, u64, u64)>,
    method: Method,
    path: &'static str,
    body: String,
    flaw: Flaw,
}

fn step(
    note: &'static str,
    after_ms: u64,
    sender: Option<(&'static str, u64, u64)>,
    method: Method,
    path: &'static str,
    body: Value,
) -> Step {
    Step {
        note,
        after_ms,
        sender,
        method,
        path,
        body: if body.is_null() {
            String::new()
        } else {
            body.to_string()
        },
        flaw: Flaw::None,
    }
}

fn flawed(note: &'static str, mut step: Step, flaw: Flaw) -> Step {
    step.note = note;
    step.flaw = flaw;
    step
}

fn register(node: &'static str, incarnation: u64, counter: u64, after_ms: u64) -> Step {
    step(
        "a worker registers",
        after_ms,
        Some((node, incarnation, counter)),
        Method::POST,
        "/register",
        json!({"node": node, "role": "worker", "incarnation": incarnation}),
    )
}

fn snapshot(node: &str, incarnation: u64, seq: u64, routes: &[&str]) -> Value {
    json!({"update": {"node": node, "incarnation": incarnation, "seq": seq,
        "change": {"kind": "snapshot", "routes": routes}}})
}

/// The conversations, by file name.
fn conversations() -> Vec<(&'static str, &'static str, Vec<Step>)> {
    let post = Method::POST;
    let get = Method::GET;
    vec![
        (
            "01-worker-session.json",
            "A worker's whole life with its core: health, register, heartbeat, routes, a forwarded message, a retained message, status, explain, leave.",
            vec![
                step("health needs no signature", 1, None, get.clone(), "/health", Value::Null),
                register("w1", W1, 1, 2),
                step("a heartbeat with a digest the core does not share: the answer carries the member list",
                    3, Some(("w1", W1, 2)), post.clone(), "/heartbeat", json!({"membersDigest": "0"})),
                step("the worker's routes, as a snapshot", 4, Some(("w1", W1, 3)), post.clone(), "/routes",
                    snapshot("w1", W1, 1, &["sensors/#", "$share/g/jobs/+"])),
                step("then a delta that follows it", 5, Some(("w1", W1, 4)), post.clone(), "/routes",
                    json!({"update": {"node": "w1", "incarnation": W1, "seq": 2,
                        "change": {"kind": "delta", "prev": 1, "add": ["alerts/+"], "remove": ["sensors/#"]}}})),
                step("a message the worker published, for a subscriber on the core itself", 6,
                    Some(("w1", W1, 5)), post.clone(), "/forward",
                    json!({"messages": [{"origin": "w1", "incarnation": W1, "topic": "alerts/a",
                        "payload": "aGVsbG8=", "qos": 1, "retain": false,
                        "targets": [{"node": "core1", "seq": 1}]}]})),
                step("a retained message the worker's broker set", 7, Some(("w1", W1, 6)), post.clone(),
                    "/retained", json!({"entries": [{"topic": "state/a", "stamp": {"clock": 1, "origin": "w1"},
                        "payload": "b24=", "qos": 1}]})),
                step("the core's status, for a member", 8, Some(("w1", W1, 7)), get.clone(), "/status", Value::Null),
                step("why a message on alerts/a, published by w1, reaches each member or not", 9,
                    Some(("w1", W1, 8)), get.clone(), "/explain?topic=alerts%2Fa&from=w1", Value::Null),
                step("the worker leaves", 10, Some(("w1", W1, 9)), post.clone(), "/leave", json!({})),
            ],
        ),
        (
            "02-push-stream.json",
            "A worker's push stream: the hello frame, another worker's routes and a message for the first worker, its acknowledgement.",
            vec![
                register("w1", W1, 1, 1),
                step("the worker opens its stream: 200, then the hello frame", 2, Some(("w1", W1, 2)),
                    get.clone(), "/stream", Value::Null),
                register("w2", W2, 1, 3),
                step("the second worker's routes reach the first worker's stream", 4, Some(("w2", W2, 2)),
                    post.clone(), "/routes", snapshot("w2", W2, 1, &["sensors/#"])),
                step("w1 subscribes too", 5, Some(("w1", W1, 3)), post.clone(), "/routes",
                    snapshot("w1", W1, 1, &["sensors/+"])),
                step("the second worker forwards a message for the first: a messages frame on its stream", 6,
                    Some(("w2", W2, 3)), post.clone(), "/forward",
                    json!({"messages": [{"origin": "w2", "incarnation": W2, "topic": "sensors/t",
                        "payload": "MjEuNQ==", "qos": 1, "retain": false,
                        "targets": [{"node": "w1", "seq": 1}]}]})),
                step("the first worker acknowledges the batch", 7, Some(("w1", W1, 4)), post.clone(), "/ack",
                    json!({"through": 1})),
            ],
        ),
        (
            "03-refusals.json",
            "Requests the core refuses, each with its status and error kind; none changes the core.",
            vec![
                flawed("no protocol headers", register("w1", W1, 1, 1), Flaw::Unsigned),
                flawed("signed with another secret", register("w1", W1, 1, 2), Flaw::WrongSecret),
                flawed("protocol version 2", register("w1", W1, 1, 3), Flaw::Version),
                flawed("a timestamp a minute old (freshnessWindow is 30s)", register("w1", W1, 1, 4),
                    Flaw::Stale),
                step("a heartbeat before registering", 5, Some(("w1", W1, 1)), post.clone(), "/heartbeat",
                    json!({"membersDigest": "0"})),
                register("w1", W1, 2, 6),
                step("the same counter again: a replay", 7, Some(("w1", W1, 2)), post.clone(), "/heartbeat",
                    json!({"membersDigest": "0"})),
                step("a body that is not what the endpoint takes", 8, Some(("w1", W1, 3)), post.clone(),
                    "/heartbeat", json!({"digest": "0"})),
                step("routes that speak for another member", 9, Some(("w1", W1, 4)), post.clone(), "/routes",
                    snapshot("w2", W2, 1, &["a/#"])),
                step("a worker calling an endpoint between cores", 10, Some(("w1", W1, 5)), post.clone(),
                    "/sync", json!({"members": [], "routes": []})),
                step("no such path", 11, Some(("w1", W1, 6)), get.clone(), "/nothing", Value::Null),
                step("another method", 12, Some(("w1", W1, 7)), get.clone(), "/register", Value::Null),
                step("a body over maxBodySize (2048 bytes here)", 13, Some(("w1", W1, 8)), post.clone(),
                    "/forward", json!({"messages": [], "padding": "x".repeat(3000)})),
                step("a counter below the accepted ones is still fresh: accepted", 14, Some(("w1", W1, 3)),
                    post.clone(), "/heartbeat", json!({"membersDigest": "0"})),
                step("an explain query with a filter where a topic belongs", 15, Some(("w1", W1, 9)),
                    get.clone(), "/explain?topic=alerts%2F%2B", Value::Null),
            ],
        ),
        (
            "04-core-to-core.json",
            "Another core joins: it registers with its address, heartbeats, syncs its members and routes, confirms.",
            vec![
                step("a core registers, with the address it serves on", 1, Some(("c2", C2, 1)), post.clone(),
                    "/register", json!({"node": "c2", "role": "core", "incarnation": C2,
                        "address": "http://127.0.0.1:18001"})),
                step("its heartbeat", 2, Some(("c2", C2, 2)), post.clone(), "/heartbeat",
                    json!({"membersDigest": "0"})),
                step("a sync with a worker it speaks for and that worker's routes", 3, Some(("c2", C2, 3)),
                    post.clone(), "/sync", json!({
                        "members": [{"id": "w9", "role": "worker", "incarnation": W2, "state": "alive",
                            "home": "c2", "stamp": {"clock": 1, "by": "c2"}}],
                        "routes": [{"node": "w9", "incarnation": W2, "seq": 1,
                            "change": {"kind": "snapshot", "routes": ["plant/#"]}}]})),
                step("a message from that worker, through its core, for a subscriber on this core", 4,
                    Some(("c2", C2, 4)), post.clone(), "/forward",
                    json!({"messages": [{"origin": "w9", "incarnation": W2, "topic": "plant/x",
                        "payload": "AA==", "qos": 1, "targets": [{"node": "core1", "seq": 1}]}]})),
                step("confirmations for messages of this core, passed on to the origin only", 5,
                    Some(("c2", C2, 5)), post.clone(), "/confirm",
                    json!({"confirms": [{"origin": "core1", "incarnation": START_WALL_MS, "to": "w9",
                        "from": 1, "through": 3}]})),
            ],
        ),
    ]
}

/// The text PROTOCOL.md says is signed, rebuilt from a request as sent.
fn signed_text(request: &Request<Bytes>) -> Option<String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let body_hash = hex(&Sha256::digest(request.body()));
    Some(format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        header("x-cluster-version")?,
        request.method(),
        path,
        header("x-cluster-node")?,
        header("x-cluster-incarnation")?,
        header("x-cluster-counter")?,
        header("x-cluster-timestamp")?,
        body_hash
    ))
}

fn hmac_hex(secret: &str, text: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(text.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_at(instant_ms: u64, wall_ms: u64) -> Now {
    Now::new(
        Instant::from_millis(instant_ms),
        WallTime::from_unix_millis(wall_ms),
    )
}

fn signed_request(step: &Step, wall_ms: u64) -> Request<Bytes> {
    let mut request = Request::builder()
        .method(step.method.clone())
        .uri(step.path)
        .body(Bytes::from(step.body.clone()))
        .expect("a valid request");
    if !step.body.is_empty() {
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let Some((node, incarnation, counter)) = step.sender else {
        return request;
    };
    let secret = match step.flaw {
        Flaw::WrongSecret => "not-the-cluster-secret",
        _ => SECRET,
    };
    let wall = match step.flaw {
        Flaw::Stale => wall_ms - 60_000,
        _ => wall_ms,
    };
    match step.flaw {
        Flaw::Unsigned => {}
        _ => Authenticator::new(Some(Secret::new(secret)), Duration::from_secs(30), 16).sign(
            &mut request,
            &NodeId::new(node).expect("a valid node id"),
            Incarnation(incarnation),
            counter,
            WallTime::from_unix_millis(wall),
        ),
    }
    if let Flaw::Version = step.flaw {
        request
            .headers_mut()
            .insert("x-cluster-version", HeaderValue::from_static("2"));
    }
    request
}

/// Stream bytes the node wrote since the last call, by stream, in order.
fn drain_streams(node: &mut Node, names: &BTreeMap<StreamId, String>) -> BTreeMap<String, String> {
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    while let Some(output) = node.poll_stream() {
        match output {
            StreamOutput::Data { stream, bytes } => {
                let name = names
                    .get(&stream)
                    .cloned()
                    .unwrap_or_else(|| format!("{stream:?}"));
                written
                    .entry(name)
                    .or_default()
                    .push_str(&String::from_utf8_lossy(&bytes));
            }
            StreamOutput::Close { stream } => {
                let name = names
                    .get(&stream)
                    .cloned()
                    .unwrap_or_else(|| format!("{stream:?}"));
                written.entry(name).or_default().push_str("<closed>");
            }
        }
    }
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    written
}

fn request_json(request: &Request<Bytes>) -> Value {
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or_default())))
        .collect();
    json!({
        "method": request.method().as_str(),
        "path": request.uri().to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(request.body()),
    })
}

fn request_from_json(value: &Value) -> Request<Bytes> {
    let mut builder = Request::builder()
        .method(value["method"].as_str().expect("method"))
        .uri(value["path"].as_str().expect("path"));
    for (name, v) in value["headers"].as_object().expect("headers") {
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            v.as_str().expect("a header value"),
        );
    }
    builder
        .body(Bytes::from(
            value["body"].as_str().expect("body").as_bytes().to_vec(),
        ))
        .expect("a valid request")
}

/// What the core answered, as a vector records it.
fn answer_json(response: &http::Response<Bytes>, streams: BTreeMap<String, String>) -> Value {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(response.body()).expect("JSON as it says");
        if response.status().is_success() {
            value
        } else {
            // The message is prose for people; the kind is the protocol.
            json!({"error": value["error"]})
        }
    } else {
        Value::from(String::from_utf8_lossy(response.body()).into_owned())
    };
    let mut answer = json!({
        "status": response.status().as_u16(),
        "contentType": content_type,
        "body": body,
    });
    if !streams.is_empty() {
        answer["streams"] = json!(streams);
    }
    answer
}

/// Runs one conversation: `request` gives each step's request, `check`
/// sees it with the core's answer.
fn converse(
    config: &str,
    count: usize,
    mut request: impl FnMut(usize) -> (u64, Request<Bytes>),
    mut check: impl FnMut(usize, &Request<Bytes>, Value),
) {
    let config = Config::from_yaml_str(config).expect("the vector's plugin.yaml");
    let mut node = Node::new(config, now_at(0, START_WALL_MS), SEED).expect("a core");
    let mut names = BTreeMap::new();
    drain_streams(&mut node, &names);
    for i in 0..count {
        let (after_ms, req) = request(i);
        let now = now_at(after_ms, START_WALL_MS + after_ms);
        let response = node.handle_request(now, req.clone());
        if let Some(stream) = response.extensions().get::<StreamId>() {
            let owner = req
                .headers()
                .get("x-cluster-node")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            names.insert(*stream, format!("stream of {owner}"));
        }
        let streams = drain_streams(&mut node, &names);
        check(i, &req, answer_json(&response, streams));
    }
}

fn bless() {
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).expect("the vectors directory");
    for (file, description, steps) in conversations() {
        let mut recorded = Vec::new();
        converse(
            &core_config(),
            steps.len(),
            |i| {
                let step = &steps[i];
                (
                    step.after_ms,
                    signed_request(step, START_WALL_MS + step.after_ms),
                )
            },
            |i, request, answer| {
                let step = &steps[i];
                let mut entry = json!({
                    "note": step.note,
                    "at": {"instantMs": step.after_ms, "wallMs": START_WALL_MS + step.after_ms},
                    "request": request_json(request),
                });
                if let Some(text) = signed_text(request) {
                    entry["signedText"] = Value::from(text.clone());
                    if let Some(signature) = request.headers().get("x-cluster-signature") {
                        let valid =
                            signature.to_str().ok() == Some(hmac_hex(SECRET, &text).as_str());
                        entry["signatureValid"] = Value::from(valid);
                    }
                }
                entry["response"] = answer;
                recorded.push(entry);
            },
        );
        let vector = json!({
            "description": description,
            "secret": SECRET,
            "receiver": {"config": core_config(), "seed": SEED,
                "start": {"instantMs": 0, "wallMs": START_WALL_MS}},
            "exchanges": recorded,
        });
        let text = serde_json::to_string_pretty(&vector).expect("JSON") + "\n";
        std::fs::write(dir.join(file), text).expect("the vector written");
    }
}

#[test]
fn the_protocol_vectors_replay_against_the_core() {
    if std::env::var_os("MQTT_CLUSTER_BLESS_VECTORS").is_some() {
        bless();
    }
    let dir = vectors_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("protocol-vectors/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    let mut expected: Vec<String> = conversations()
        .iter()
        .map(|(f, _, _)| f.to_string())
        .collect();
    expected.sort();
    assert_eq!(files, expected, "one vector file per conversation");

    for file in files {
        let text = std::fs::read_to_string(dir.join(&file)).expect("a vector file");
        let vector: Value = serde_json::from_str(&text).expect("a vector is JSON");
        let secret = vector["secret"].as_str().expect("secret").to_owned();
        let receiver = &vector["receiver"];
        assert_eq!(receiver["seed"], json!(SEED), "{file}: the seed replayed");
        assert_eq!(receiver["start"]["wallMs"], json!(START_WALL_MS));
        let exchanges = vector["exchanges"].as_array().expect("exchanges").clone();
        converse(
            receiver["config"].as_str().expect("config"),
            exchanges.len(),
            |i| {
                let at = &exchanges[i]["at"];
                let after = at["instantMs"].as_u64().expect("instantMs");
                assert_eq!(at["wallMs"].as_u64(), Some(START_WALL_MS + after));
                (after, request_from_json(&exchanges[i]["request"]))
            },
            |i, request, answer| {
                let exchange = &exchanges[i];
                let note = exchange["note"].as_str().unwrap_or("");
                let text = signed_text(request);
                assert_eq!(
                    text.as_deref(),
                    exchange["signedText"].as_str(),
                    "{file} #{i} ({note}): the signed text"
                );
                if let (Some(text), Some(signature)) =
                    (text, request.headers().get("x-cluster-signature"))
                {
                    let valid = signature.to_str().ok() == Some(hmac_hex(&secret, &text).as_str());
                    assert_eq!(
                        Some(valid),
                        exchange["signatureValid"].as_bool(),
                        "{file} #{i} ({note}): the signature"
                    );
                }
                assert_eq!(
                    answer, exchange["response"],
                    "{file} #{i} ({note}): the core's answer"
                );
            },
        );
    }
}
