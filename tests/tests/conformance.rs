//! One suite, every runtime: each scenario runs on tokio alone, on the
//! blocking runtime alone, and on clusters that mix them (tokio cores with
//! blocking workers, blocking cores with tokio workers), so the runtimes
//! can never drift apart and always interoperate.
//!
//! Real HTTP on loopback, ephemeral ports, short timings.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use http::{Method, Request};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::RegisterRequest;
use mqtt_cluster_core::wire::messages::{MemberState, Qos};
use mqtt_cluster_core::{Event, Incarnation, NodeId, Role};
use mqtt_cluster_tests::raw_http::{
    error_kind, exchange, exchange_with_head, exchange_within, raw, signed,
};
use mqtt_cluster_tests::runtimes::{
    bind, core_config, eventually, worker_config, Four, LiveNode, Mix, Runtime, DEADLINE, SECRET,
};
use proptest::prelude::*;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Waits until `node`'s copy of the routing table holds `count` routes.
fn wait_for_routes(node: &LiveNode, count: usize) {
    eventually(&format!("{} knows {count} route(s)", node.id()), || {
        node.status().is_some_and(|s| s.routes >= count)
    });
}

fn join(mix: Mix) {
    let cluster = Four::start(mix);
    let w1 = cluster.w1.status().unwrap();
    let w2 = cluster.w2.status().unwrap();
    assert_eq!(w1.core, Some(id("core1")));
    assert_eq!(w2.core, Some(id("core2")));
    let members: Vec<(String, String)> = cluster
        .core2
        .status()
        .unwrap()
        .members
        .iter()
        .map(|m| (m.id.as_str().to_owned(), m.home.as_str().to_owned()))
        .collect();
    let expected = [
        ("core1", "core1"),
        ("core2", "core2"),
        ("w1", "core1"),
        ("w2", "core2"),
    ];
    assert_eq!(members, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    for worker in [&cluster.w1, &cluster.w2] {
        worker.wait_for_event("the worker reports its registration", |e| {
            matches!(e, Event::Registered { .. })
        });
        assert!(worker.local_addr().is_none());
    }
    assert!(cluster.core1.local_addr().is_some());
}

fn route_and_forward(mix: Mix) {
    let cluster = Four::start(mix);
    assert!(cluster.w2.subscribe("sensors/#"));
    assert!(cluster.core1.subscribe("sensors/+/temp"));
    wait_for_routes(&cluster.w1, 2);

    let q0 = Message::new("sensors/1/temp", "twenty-one").unwrap();
    let q1 = Message::new("sensors/2/temp", "twenty-two")
        .unwrap()
        .with_qos(Qos::AtLeastOnce)
        .retained();
    let other = Message::new("sensors/3/humidity", "wet")
        .unwrap()
        .with_qos(Qos::AtLeastOnce);
    let r0 = cluster.w1.publish(q0);
    assert!(!r0.local);
    assert_eq!(r0.remote, vec![id("core1"), id("w2")]);
    cluster.w1.publish(q1);
    assert_eq!(cluster.w1.publish(other).remote, vec![id("w2")]);
    let nobody = Message::new("other/topic", "x").unwrap();
    assert!(cluster.w1.publish(nobody).remote.is_empty());

    eventually("w2 receives three messages and core1 two", || {
        cluster.w2.deliveries().len() >= 3 && cluster.core1.deliveries().len() >= 2
    });
    // Let any duplicate show up before counting.
    std::thread::sleep(Duration::from_millis(300));
    let mut got = cluster.w2.deliveries();
    got.sort();
    assert_eq!(
        got,
        [
            ("sensors/1/temp".to_owned(), b"twenty-one".to_vec(), 0),
            ("sensors/2/temp".to_owned(), b"twenty-two".to_vec(), 1),
            ("sensors/3/humidity".to_owned(), b"wet".to_vec(), 1),
        ]
    );
    let mut at_core = cluster.core1.deliveries();
    at_core.sort();
    assert_eq!(
        at_core,
        [
            ("sensors/1/temp".to_owned(), b"twenty-one".to_vec(), 0),
            ("sensors/2/temp".to_owned(), b"twenty-two".to_vec(), 1),
        ]
    );
    let retained = cluster
        .w2
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Deliver(d) if d.retain))
        .count();
    assert_eq!(retained, 1, "retain survives the hops");
    assert!(
        cluster.w1.deliveries().is_empty(),
        "never back to the origin"
    );
    let stats = cluster.w2.stats();
    assert_eq!((stats.delivered, stats.duplicates), (3, 0));
}

fn node_death(mix: Mix) {
    let Four {
        core1,
        core2,
        w1,
        w2,
    } = Four::start(mix);
    w1.subscribe("alerts/#");
    wait_for_routes(&w2, 1);
    w1.kill();
    eventually("every node declares w1 dead", || {
        [&core1, &core2, &w2]
            .iter()
            .all(|n| n.sees("w1", MemberState::Dead))
    });
    eventually("w1's routes vanish everywhere", || {
        [&core1, &core2, &w2]
            .iter()
            .all(|n| n.status().is_some_and(|s| s.routes == 0))
    });
    let routing = w2.publish(Message::new("alerts/1", "probe").unwrap());
    assert!(routing.remote.is_empty());
    w2.wait_for_event(
        "w2 reports w1 dead",
        |e| matches!(e, Event::MemberDead { node } if node.as_str() == "w1"),
    );
}

fn core_failover(mix: Mix) {
    // Both workers start on core1.
    let Four {
        core1,
        core2,
        w1,
        w2,
    } = Four::start_on_core1(mix);
    assert_eq!(w1.status().unwrap().core, Some(id("core1")));
    assert_eq!(w2.status().unwrap().core, Some(id("core1")));
    w2.subscribe("orders/#");
    wait_for_routes(&w1, 1);
    let message = |n: usize| {
        Message::new(&format!("orders/{}", n % 7), format!("order-{n:03}"))
            .unwrap()
            .with_qos(Qos::AtLeastOnce)
    };
    for n in 0..50 {
        assert_eq!(w1.publish(message(n)).remote, vec![id("w2")]);
    }
    eventually("the first 50 arrive", || w2.deliveries().len() >= 50);

    core1.kill();
    // Publish through the failover: from the kill until well after both
    // workers are expected on core2 (suspectTimeout is 500ms).
    for n in 50..150 {
        let routing = w1.publish(message(n));
        assert_eq!(
            routing.remote,
            vec![id("w2")],
            "message {n} must still target w2"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eventually("both workers fail over to core2", || {
        [&w1, &w2]
            .iter()
            .all(|w| w.status().is_some_and(|s| s.core == Some(id("core2"))))
    });
    eventually("all 150 QoS 1 messages arrive", || {
        w2.deliveries().len() >= 150
    });
    // Exactly once: give late duplicates a moment to show up, then count.
    std::thread::sleep(Duration::from_millis(300));
    let mut payloads: Vec<Vec<u8>> = w2.deliveries().into_iter().map(|d| d.1).collect();
    payloads.sort();
    let expected: Vec<Vec<u8>> = (0..150)
        .map(|n| format!("order-{n:03}").into_bytes())
        .collect();
    assert_eq!(payloads, expected, "every message arrived, none twice");
    assert_eq!(w2.stats().delivered, 150);
    for worker in [&w1, &w2] {
        worker.wait_for_event(
            "the worker reports core1 unreachable",
            |e| matches!(e, Event::CoreUnreachable { core } if core.as_str() == "core1"),
        );
    }
    eventually("core2 declares core1 dead", || {
        core2.sees("core1", MemberState::Dead)
    });
}

fn leave(mix: Mix) {
    let Four {
        core1,
        core2,
        w1,
        w2,
    } = Four::start(mix);
    w1.subscribe("news/#");
    wait_for_routes(&w2, 1);
    w1.shutdown();
    eventually("every node sees w1 leave", || {
        [&core1, &core2, &w2]
            .iter()
            .all(|n| n.sees("w1", MemberState::Left))
    });
    assert!([&core1, &core2, &w2]
        .iter()
        .all(|n| n.status().is_some_and(|s| s.routes == 0)));
    assert!(w1.status().is_none(), "a node that left has stopped");
    w1.wait_for_event("w1 reports that it left", |e| *e == Event::Left);
    w2.wait_for_event(
        "w2 reports that w1 left",
        |e| matches!(e, Event::MemberLeft { node } if node.as_str() == "w1"),
    );
    assert!(
        !core1
            .events()
            .iter()
            .any(|e| matches!(e, Event::MemberDead { .. })),
        "nobody was declared dead"
    );
}

fn wrong_secret(mix: Mix) {
    let bound = bind();
    let url = bound.url.clone();
    let core = core_config("core1", bound.port, &[url.as_str()], "");
    let core = LiveNode::start(mix.cores, core, Some(bound.listener), 1);
    let mut config = worker_config("intruder", &[&url], "");
    config.secret = Some(mqtt_cluster_core::auth::Secret::new(
        "not-the-cluster-secret",
    ));
    let intruder = LiveNode::start(mix.workers, config, None, 2);
    eventually("the intruder is told it is rejected", || {
        intruder
            .events()
            .iter()
            .any(|e| matches!(e, Event::RegistrationRejected { .. }))
    });
    let status = intruder.status().unwrap();
    assert_eq!(status.phase, mqtt_cluster_core::Phase::Rejected);
    assert_eq!(core.status().unwrap().members.len(), 1);
    let started = std::time::Instant::now();
    intruder.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a rejected node stops without waiting for anyone"
    );
}

// ----- bad requests, spoken by hand over raw TCP -----

fn bad_requests(mix: Mix) {
    const MAX_BODY: usize = 2048;
    let bound = bind();
    let extra = format!("maxBodySize: {MAX_BODY}\n");
    let config = core_config("solo", bound.port, &[bound.url.as_str()], &extra);
    let node = LiveNode::start(mix.cores, config, Some(bound.listener), 9);
    let addr = node.local_addr().unwrap();
    eventually("the core is up", || {
        node.status().is_some_and(|s| !s.members.is_empty())
    });
    let before = node.status().unwrap();

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed body",
            raw(&signed(SECRET, "tester", 1, Method::POST, "/heartbeat", b"{not json")),
            400,
            "malformed",
        ),
        (
            "unsigned",
            raw(&Request::post("/register").body(bytes::Bytes::from_static(b"{}")).unwrap()),
            401,
            "missing_header",
        ),
        (
            "wrong secret",
            raw(&signed("not-the-cluster-secret", "tester", 3, Method::GET, "/status", b"")),
            403,
            "bad_signature",
        ),
        (
            "announced too large",
            b"POST /forward HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 1000000\r\n\r\n"
                .to_vec(),
            413,
            "too_large",
        ),
        (
            "unknown path",
            b"GET /nope HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".to_vec(),
            404,
            "",
        ),
        (
            "wrong method",
            b"GET /register HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".to_vec(),
            405,
            "",
        ),
    ];
    for (what, bytes, status, kind) in cases {
        let (got, body) = exchange(addr, &bytes);
        assert_eq!(got, status, "{what}: {body}");
        if !kind.is_empty() {
            assert_eq!(error_kind(&body), kind, "{what}: {body}");
        }
    }

    // Announced absurdly large (a terabyte): refused, and the node lives
    // on. (The blocking runtime cannot frame this answer; it sends the
    // head and the body, and the connection ends when the peer gives up.)
    let absurd = b"POST /forward HTTP/1.1\r\nhost: t\r\ncontent-length: 1000000000000\r\n\r\n";
    let (status, body) = exchange_within(addr, absurd, Duration::from_secs(2));
    assert_eq!(
        (status, error_kind(&body).as_str()),
        (413, "too_large"),
        "{body}"
    );

    // Oversized, chunked: the server stops reading past the limit.
    let mut chunked =
        b"POST /forward HTTP/1.1\r\nhost: t\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1500).as_bytes());
        chunked.extend_from_slice(&[b'x'; 1500]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = exchange(addr, &chunked);
    assert_eq!(
        (status, error_kind(&body).as_str()),
        (413, "too_large"),
        "{body}"
    );

    // Replayed: the same signed request twice.
    let request = raw(&signed(SECRET, "tester", 2, Method::GET, "/status", b""));
    assert_eq!(exchange(addr, &request).0, 200);
    let (status, body) = exchange(addr, &request);
    assert_eq!(
        (status, error_kind(&body).as_str()),
        (401, "replayed"),
        "{body}"
    );

    // Not HTTP at all.
    let (status, _) = exchange(addr, b"\x16\x03\x01 hello there\r\n\r\n");
    assert_eq!(status, 400);

    let after = node.status().expect("the core survived every bad request");
    assert_eq!(before, after, "refused requests changed nothing");
    let refused = node.stats().requests_refused;
    for kind in [
        "malformed",
        "missing_header",
        "replayed",
        "bad_signature",
        "too_large",
    ] {
        assert!(refused.contains_key(kind), "{kind} counted in {refused:?}");
    }
    // Health needs no credentials, on either runtime.
    let (status, body) = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"solo\""), "{body}");
}

/// A core on the cores' runtime alone, with a small body limit.
fn solo(mix: Mix) -> LiveNode {
    let bound = bind();
    let config = core_config(
        "solo",
        bound.port,
        &[bound.url.as_str()],
        "maxBodySize: 2048\n",
    );
    let node = LiveNode::start(mix.cores, config, Some(bound.listener), 9);
    eventually("the core is up", || {
        node.status().is_some_and(|s| !s.members.is_empty())
    });
    node
}

fn operator_endpoints(mix: Mix) {
    let node = solo(mix);
    let addr = node.local_addr().unwrap();
    let (status, _, body) = exchange_with_head(
        addr,
        b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"solo\""), "{body}");
    let (status, head, body) = exchange_with_head(
        addr,
        b"GET /metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/plain"), "{head}");
    assert!(!body.is_empty());
    let request = signed(SECRET, "operator", 1, Method::GET, "/status", b"");
    let (status, body) = exchange(addr, &raw(&request));
    assert_eq!(status, 200);
    assert!(body.contains("\"membersDigest\""), "{body}");
}

fn push_stream(mix: Mix) {
    let node = solo(mix);
    let addr = node.local_addr().unwrap();
    let register = RegisterRequest {
        node: id("fake-worker"),
        role: Role::Worker,
        incarnation: Incarnation(1),
        address: None,
    };
    let request = signed(
        SECRET,
        "fake-worker",
        1,
        Method::POST,
        "/register",
        &encode_json(&register),
    );
    let (status, body) = exchange(addr, &raw(&request));
    assert_eq!(status, 200, "{body}");

    let request = signed(SECRET, "fake-worker", 2, Method::GET, "/stream", b"");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(&raw(&request)).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    // The hello frame is a few hundred bytes: a writer that waited for a
    // buffer to fill would never send it.
    while !String::from_utf8_lossy(&seen).contains("event: hello") {
        let n = stream.read(&mut buffer).expect("the hello frame in time");
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(node.status().unwrap().streams, 1);

    // The reader hangs up: the core notices when it next writes (its
    // duties give it reasons to) and forgets the stream.
    drop(stream);
    eventually("the core forgets the stream", || {
        node.status().is_some_and(|s| s.streams == 0)
    });
}

/// Bytes a peer might send: noise, and requests broken in every way the
/// head can be (methods, targets, versions, header names and values,
/// lengths that lie or overflow, framing that contradicts itself).
fn hostile_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("BREW".to_owned()),
        "[A-Z]{0,12}",
    ];
    let target = prop_oneof![
        Just("/forward".to_owned()),
        Just("/register".to_owned()),
        Just("/stream".to_owned()),
        Just("*".to_owned()),
        Just("http://elsewhere/forward".to_owned()),
        "/[ -~]{0,40}",
    ];
    let version = prop_oneof![
        Just("HTTP/1.1"),
        Just("HTTP/1.0"),
        Just("HTTP/2.0"),
        Just("HTTP/9"),
        Just(""),
    ];
    let length = prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("abc".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("1000000000000".to_owned()),
        (0u32..5000).prop_map(|n| n.to_string()),
    ];
    let header = prop_oneof![
        length.prop_map(|n| format!("content-length: {n}")),
        Just("transfer-encoding: chunked".to_owned()),
        Just("transfer-encoding: gzip, chunked".to_owned()),
        Just("expect: 100-continue".to_owned()),
        Just("expect: nonsense".to_owned()),
        Just("connection: upgrade".to_owned()),
        Just("x-cluster-version: 9".to_owned()),
        Just("x-cluster-node: \u{7f}".to_owned()),
        "[!-~]{1,20}: [ -~]{0,60}",
        "[ -~]{0,80}",
    ];
    let head = (method, target, version, prop::collection::vec(header, 0..6)).prop_map(
        |(method, target, version, headers)| {
            let mut text = format!("{method} {target} {version}\r\nhost: t\r\n");
            for header in headers {
                text.push_str(&header);
                text.push_str("\r\n");
            }
            text.push_str("\r\n");
            text.into_bytes()
        },
    );
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (head, prop::collection::vec(any::<u8>(), 0..2048)).prop_map(|(mut head, body)| {
            head.extend_from_slice(&body);
            head
        }),
    ]
}

fn hostile_requests(mix: Mix) {
    let node = solo(mix);
    let addr = node.local_addr().unwrap();
    let before = node.status().unwrap();
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&hostile_request(), |bytes| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let _ = stream.write_all(&bytes);
            // End of input: a server waiting for more gives up now.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            let text = String::from_utf8_lossy(&answer);
            // Whatever came back is HTTP (a server may echo the version a
            // request claimed), and never a success for bytes that carry
            // no valid signature.
            if !text.is_empty() {
                prop_assert!(text.starts_with("HTTP/"), "{text}");
                prop_assert!(
                    !text.starts_with("HTTP/1.1 200") && !text.starts_with("HTTP/1.0 200"),
                    "{text}"
                );
            }
            Ok(())
        })
        .unwrap();
    let health = b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    assert_eq!(exchange(addr, health).0, 200, "the core serves on");
    assert_eq!(
        node.status().unwrap(),
        before,
        "hostile bytes changed nothing"
    );
}

/// A retained publish reaches every member though nobody subscribes, a
/// worker that registers afterwards has it, and a clear removes it
/// everywhere.
fn retained_messages(mix: Mix) {
    let (b1, b2) = (bind(), bind());
    let cores = [b1.url.as_str(), b2.url.as_str()];
    let core1 = LiveNode::start(
        mix.cores,
        core_config("core1", b1.port, &cores, ""),
        Some(b1.listener),
        1,
    );
    let core2 = LiveNode::start(
        mix.cores,
        core_config("core2", b2.port, &cores, ""),
        Some(b2.listener),
        2,
    );
    let w1 = LiveNode::start(
        mix.workers,
        worker_config("w1", &[&b1.url, &b2.url], ""),
        None,
        3,
    );
    eventually("three nodes agree", || {
        mqtt_cluster_tests::runtimes::agree(&[&core1, &core2, &w1], 3)
    });
    let door = Message::new("status/door", "open")
        .unwrap()
        .with_qos(Qos::AtLeastOnce)
        .retained();
    assert!(w1.publish(door).remote.is_empty(), "nobody subscribes");
    let expected = vec![("status/door".to_owned(), b"open".to_vec())];
    eventually("both cores hold the retained message", || {
        core1.retained() == expected && core2.retained() == expected
    });
    // w2 registers with core2 only now.
    let w2 = LiveNode::start(
        mix.workers,
        worker_config("w2", &[&b2.url, &b1.url], ""),
        None,
        4,
    );
    eventually("the late worker holds it", || w2.retained() == expected);
    w2.wait_for_event(
        "the late worker tells its host",
        |e| matches!(e, Event::RetainSet(m) if m.topic.as_str() == "status/door" && m.retain),
    );
    assert_eq!(w1.retained(), expected, "the publisher holds its own");
    assert!(
        !w1.events().iter().any(|e| matches!(e, Event::RetainSet(_))),
        "the publisher's host stored it itself"
    );

    let clear = Message::new("status/door", "").unwrap().retained();
    w1.publish(clear);
    eventually("the clear reaches every node", || {
        [&core1, &core2, &w1, &w2]
            .iter()
            .all(|n| n.retained().is_empty())
    });
    w2.wait_for_event(
        "w2 tells its host the retained message is gone",
        |e| matches!(e, Event::RetainCleared { topic } if topic.as_str() == "status/door"),
    );
    for node in [&core1, &core2, &w1, &w2] {
        let status = node.status().unwrap();
        assert_eq!((status.retained, status.retained_digest.as_str()), (0, ""));
        assert_eq!(node.stats().retained_refused, 0);
    }
}

/// One test per scenario and mix, so that a failure names both.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;

                #[test]
                fn tokio() {
                    super::$scenario(Mix { cores: Runtime::Tokio, workers: Runtime::Tokio });
                }

                #[test]
                fn blocking() {
                    super::$scenario(Mix { cores: Runtime::Blocking, workers: Runtime::Blocking });
                }

                #[test]
                fn tokio_cores_blocking_workers() {
                    super::$scenario(Mix { cores: Runtime::Tokio, workers: Runtime::Blocking });
                }

                #[test]
                fn blocking_cores_tokio_workers() {
                    super::$scenario(Mix { cores: Runtime::Blocking, workers: Runtime::Tokio });
                }
            }
        )*
    };
}

conformance!(
    join,
    route_and_forward,
    node_death,
    core_failover,
    leave,
    wrong_secret,
    bad_requests,
    operator_endpoints,
    push_stream,
    hostile_requests,
    retained_messages,
);
