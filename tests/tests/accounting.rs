//! Nothing lost without a word: every message a node gives up on is counted
//! by reason and reported, and fields of the protocol do what they say.
//! A core and its worker wired by hand (the fuzz harness's `Pair`).

use bytes::Bytes;
use http::{Method, StatusCode};
use mqtt_cluster_core::forward::dedup::DeliveryLog;
use mqtt_cluster_core::forward::link::DropReason;
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::routing::TopicName;
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::{
    ForwardRequest, ForwardedMessage, MessageBatch, Qos, StreamFrame, Target,
};
use mqtt_cluster_core::{Event, Incarnation, Node, NodeId, Phase, TransportError};
use mqtt_cluster_fuzz_harness::fixture::{checked_request, observable_state, plain_request, Pair};

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn message(origin: &str, to: &str, seq: u64) -> ForwardedMessage {
    ForwardedMessage {
        origin: id(origin),
        incarnation: Incarnation(1),
        topic: TopicName::new("t/1").unwrap(),
        payload: Bytes::from(format!("{origin}-{seq}")),
        qos: Qos::AtLeastOnce,
        retain: false,
        properties: None,
        targets: vec![Target { node: id(to), seq }],
    }
}

fn drain_events(node: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

fn dropped(events: &[Event], reason: DropReason) -> u64 {
    events
        .iter()
        .map(|e| match e {
            Event::Dropped {
                count, reason: r, ..
            } if *r == reason => *count,
            _ => 0,
        })
        .sum()
}

/// Hands the worker one stream frame of `messages`, as its core would.
fn over_the_stream(pair: &mut Pair, batch: u64, messages: Vec<ForwardedMessage>) -> Vec<Event> {
    let request = pair.ensure_stream().expect("the worker's stream is open");
    let bytes = StreamFrame::Messages(MessageBatch { batch, messages }).to_sse();
    let now = pair.now();
    pair.worker.handle_stream_data(now, request, &bytes);
    drain_events(&mut pair.worker)
}

#[test]
fn a_stream_message_for_another_worker_is_counted_not_ignored() {
    let mut pair = Pair::new();
    let events = over_the_stream(
        &mut pair,
        1,
        vec![message("w2", "w1", 1), message("w2", "w9", 1)],
    );
    let delivered = events
        .iter()
        .filter(|e| matches!(e, Event::Deliver(_)))
        .count();
    assert_eq!(delivered, 1);
    assert_eq!(dropped(&events, DropReason::Misaddressed), 1);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Dropped { peer, reason: DropReason::Misaddressed, .. } if peer.as_str() == "core1"
    )));
    let stats = pair.worker.stats();
    assert_eq!(stats.dropped.get(&DropReason::Misaddressed), Some(&1));
    assert!(pair
        .worker
        .metrics()
        .contains(r#"mqtt_cluster_dropped_on_arrival_total{reason="misaddressed"} 1"#));
}

#[test]
fn a_copy_below_the_dedup_window_is_too_late_not_a_duplicate() {
    let mut pair = Pair::new();
    let far = DeliveryLog::window() + 10;
    let events = over_the_stream(
        &mut pair,
        1,
        vec![
            message("w2", "w1", far),
            // A retry of the one just delivered: a duplicate.
            message("w2", "w1", far),
            // Never delivered here, but far below the newest: lost to w1,
            // or a copy of one delivered long ago; the log cannot tell.
            message("w2", "w1", 5),
        ],
    );
    let delivered = events
        .iter()
        .filter(|e| matches!(e, Event::Deliver(_)))
        .count();
    assert_eq!(delivered, 1);
    let stats = pair.worker.stats();
    assert_eq!(stats.duplicates, 1, "only the retry is a duplicate");
    assert_eq!(stats.dropped.get(&DropReason::TooLate), Some(&1));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Dropped { peer, count: 1, reason: DropReason::TooLate, copies }
            if peer.as_str() == "w2" && copies.len() == 1 && copies[0].seq == 5
    )));
}

#[test]
fn a_forward_speaking_for_another_origin_is_refused_whole_and_changes_nothing() {
    let mut pair = Pair::new();
    let now = pair.now();
    // The registered worker w2 forwards one message of its own and one it
    // claims w1 published.
    let body = encode_json(&ForwardRequest {
        messages: vec![message("w2", "w1", 1), message("w1", "core1", 1)],
    });
    let request = pair.fake.request(Method::POST, "/forward", body, now.wall);
    let before = observable_state(&pair.core);
    let response = checked_request(&mut pair.core, now, request);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"], "identity_mismatch");
    assert_eq!(observable_state(&pair.core), before);
    assert_eq!(pair.core.stats().unroutable, 0);
    assert!(pair.core.poll_transmit().is_none() && pair.core.poll_stream().is_none());
}

#[test]
fn what_a_node_still_holds_when_it_leaves_is_counted_as_abandoned() {
    let mut pair = Pair::new();
    let now = pair.now();
    // core1 subscribes to `#`: each publish goes up the worker's link.
    let published: u64 = 60;
    for n in 0..published {
        let message = Message::new("up/1", format!("m{n}"))
            .unwrap()
            .with_qos(Qos::AtLeastOnce);
        let routing = pair.worker.publish(now, message).unwrap();
        assert_eq!(routing.remote, vec![id("core1")]);
    }
    pair.worker.leave(now);
    let delivered_before = pair.core.stats().delivered;
    // Carry the worker's requests in order until it has left; whatever it
    // would send after that never goes.
    while pair.worker.phase() != Phase::Left {
        let t = pair
            .worker
            .poll_transmit()
            .expect("a leaving worker has requests to send");
        let response = pair.core.handle_request(now, t.request);
        pair.worker.handle_response(now, t.id, Ok(response));
    }
    let events = drain_events(&mut pair.worker);
    let delivered = pair.core.stats().delivered - delivered_before;
    let abandoned = pair
        .worker
        .stats()
        .dropped
        .get(&DropReason::Abandoned)
        .copied();
    assert!(abandoned.is_some_and(|n| n > 0), "the link still held some");
    assert_eq!(
        delivered + abandoned.unwrap_or(0),
        published,
        "every message either arrived or is counted"
    );
    assert_eq!(
        dropped(&events, DropReason::Abandoned),
        abandoned.unwrap_or(0)
    );
    let last_drop = events
        .iter()
        .rposition(|e| matches!(e, Event::Dropped { .. }));
    let left = events.iter().position(|e| *e == Event::Left);
    assert!(last_drop < left, "drops are told before Left: {events:?}");
}

#[test]
fn an_answer_that_took_fewer_messages_than_sent_acknowledges_nothing() {
    let mut pair = Pair::new();
    let now = pair.now();
    let message = Message::new("up/2", "once")
        .unwrap()
        .with_qos(Qos::AtLeastOnce);
    pair.worker.publish(now, message).unwrap();
    let t = pair
        .worker
        .poll_transmit()
        .expect("the forward goes at once");
    assert_eq!(t.request.uri().path(), "/forward");
    let lying = http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from_static(br#"{"accepted":0}"#))
        .unwrap();
    pair.worker.handle_response(now, t.id, Ok(lying));
    assert_eq!(
        pair.worker.stats().bad_responses.get("forward_miscounted"),
        Some(&1)
    );
    // The batch is still the worker's: it goes again and arrives once.
    let delivered_before = pair.core.stats().delivered;
    pair.advance(3_000);
    assert_eq!(pair.core.stats().delivered, delivered_before + 1);
    let waiting: usize = pair
        .worker
        .status()
        .queues
        .values()
        .map(|q| q.queued + q.in_flight)
        .sum();
    assert_eq!(waiting, 0);
}

#[test]
fn health_says_ok_only_while_the_node_takes_part() {
    let mut pair = Pair::new();
    let health = |node: &mut Node, now| {
        let response =
            node.handle_request(now, plain_request(Method::GET, "/health", Bytes::new()));
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        (
            response.status(),
            body["status"].as_str().unwrap_or("").to_owned(),
        )
    };
    let now = pair.now();
    assert_eq!(health(&mut pair.worker, now), (StatusCode::OK, "ok".into()));
    pair.worker.leave(now);
    assert_eq!(pair.worker.phase(), Phase::Leaving);
    assert_eq!(
        health(&mut pair.worker, now),
        (StatusCode::SERVICE_UNAVAILABLE, "leaving".into())
    );
    while let Some(t) = pair.worker.poll_transmit() {
        pair.worker
            .handle_response(now, t.id, Err(TransportError::Timeout));
    }
    assert_eq!(pair.worker.phase(), Phase::Left);
    assert_eq!(
        health(&mut pair.worker, now),
        (StatusCode::SERVICE_UNAVAILABLE, "left".into())
    );
}

#[test]
fn the_register_answer_and_sync_bodies_carry_only_fields_that_act() {
    let mut pair = Pair::new();
    let now = pair.now();
    let mut stranger = mqtt_cluster_fuzz_harness::fixture::Signer::new("w3", 1);
    let body = Bytes::from_static(br#"{"node":"w3","role":"worker","incarnation":1}"#);
    let request = stranger.request(Method::POST, "/register", body, now.wall);
    let response = pair.core.handle_request(now, request);
    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    let mut keys: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["core", "coreIncarnation", "members", "membersAt", "nodeId"]
    );
    // A sync naming the removed `snapshot` flag is refused like any
    // unknown field.
    let mut core2 = mqtt_cluster_fuzz_harness::fixture::Signer::new("core2", 1);
    let sync = Bytes::from_static(br#"{"members":[],"snapshot":true}"#);
    let request = core2.request(Method::POST, "/sync", sync, now.wall);
    assert_eq!(
        checked_request(&mut pair.core, now, request).status(),
        StatusCode::BAD_REQUEST
    );
}
