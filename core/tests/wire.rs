//! Wire round trips: every body survives JSON, every frame survives SSE
//! framing split anywhere, and signed requests survive the HTTP mapping.

use std::time::Duration;

use bytes::Bytes;
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::routing::{Subscription, TopicName};
use mqtt_cluster_core::wire::messages::{
    ForwardRequest, ForwardedMessage, MemberRecord, MemberState, MessageBatch, Qos, RouteChange,
    RouteUpdate, Stamp, StreamFrame, SyncRequest, Target,
};
use mqtt_cluster_core::wire::sse::SseDecoder;
use mqtt_cluster_core::wire::{decode_json, encode_json, Endpoint};
use mqtt_cluster_core::{Incarnation, NodeId, Role, WallTime};
use proptest::prelude::*;

fn node_id() -> impl Strategy<Value = NodeId> {
    "[a-z][a-z0-9._:-]{0,20}".prop_map(|s| NodeId::new(&s).unwrap())
}

fn topic() -> impl Strategy<Value = TopicName> {
    prop::collection::vec("[a-z$ ]{0,4}|é|日本", 1..5).prop_map(|levels| {
        let t = levels.join("/");
        TopicName::new(&t).unwrap_or_else(|_| TopicName::new("fallback").unwrap())
    })
}

fn subscription() -> impl Strategy<Value = Subscription> {
    (
        prop::collection::vec("[a-z]{0,3}|\\+", 1..4),
        any::<bool>(),
        prop::option::of("[a-z]{1,5}"),
    )
        .prop_map(|(levels, hash, group)| {
            let mut filter = levels.join("/");
            if filter.is_empty() {
                filter.push('e');
            }
            if hash {
                filter.push_str("/#");
            }
            let text = match group {
                Some(g) => format!("$share/{g}/{filter}"),
                None => filter,
            };
            Subscription::parse(&text).unwrap()
        })
}

fn message() -> impl Strategy<Value = ForwardedMessage> {
    (
        node_id(),
        any::<u64>(),
        topic(),
        prop::collection::vec(any::<u8>(), 0..300),
        0u8..3,
        any::<bool>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        prop::collection::vec((node_id(), 1u64..u64::MAX), 0..4),
    )
        .prop_map(
            |(origin, inc, topic, payload, qos, retain, props, targets)| ForwardedMessage {
                origin,
                incarnation: Incarnation(inc),
                topic,
                payload: Bytes::from(payload),
                qos: Qos::from_u8(qos).unwrap(),
                retain,
                properties: props.map(Bytes::from),
                targets: targets
                    .into_iter()
                    .map(|(node, seq)| Target { node, seq })
                    .collect(),
            },
        )
}

fn record() -> impl Strategy<Value = MemberRecord> {
    (
        node_id(),
        any::<bool>(),
        any::<u64>(),
        0u8..4,
        node_id(),
        prop::option::of("http://[a-z]{1,8}:[1-9][0-9]{0,3}"),
        any::<u64>(),
        node_id(),
    )
        .prop_map(
            |(id, core, inc, state, home, address, clock, by)| MemberRecord {
                id,
                role: if core { Role::Core } else { Role::Worker },
                incarnation: Incarnation(inc),
                state: [
                    MemberState::Alive,
                    MemberState::Suspect,
                    MemberState::Dead,
                    MemberState::Left,
                ][state as usize],
                home,
                address,
                stamp: Stamp { clock, by },
            },
        )
}

fn route_update() -> impl Strategy<Value = RouteUpdate> {
    (
        node_id(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        any::<u64>(),
        prop::collection::vec(subscription(), 0..4),
        prop::collection::vec(subscription(), 0..4),
    )
        .prop_map(
            |(node, inc, seq, snapshot, prev, add, remove)| RouteUpdate {
                node,
                incarnation: Incarnation(inc),
                seq,
                change: if snapshot {
                    RouteChange::Snapshot { routes: add }
                } else {
                    RouteChange::Delta { prev, add, remove }
                },
            },
        )
}

proptest! {
    #[test]
    fn forward_batches_survive_json(messages in prop::collection::vec(message(), 0..8)) {
        let request = ForwardRequest { messages };
        let back: ForwardRequest = decode_json(&encode_json(&request)).unwrap();
        prop_assert_eq!(back, request);
    }

    #[test]
    fn sync_bodies_survive_json(
        members in prop::collection::vec(record(), 0..6),
        routes in prop::collection::vec(route_update(), 0..6),
        routes_at in prop::option::of(any::<u64>()),
        routes_for in prop::option::of(any::<u64>()),
    ) {
        let routes_for = routes_for.map(Incarnation);
        let request = SyncRequest { members, routes, routes_at, routes_for };
        let back: SyncRequest = decode_json(&encode_json(&request)).unwrap();
        prop_assert_eq!(back, request);
    }

    #[test]
    fn stream_frames_survive_sse_split_anywhere(
        batches in prop::collection::vec((any::<u64>(), prop::collection::vec(message(), 0..4)), 1..4),
        members in prop::collection::vec(record(), 0..4),
        routes in prop::collection::vec(route_update(), 0..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut frames: Vec<StreamFrame> = batches
            .into_iter()
            .map(|(batch, messages)| StreamFrame::Messages(MessageBatch { batch, messages }))
            .collect();
        frames.push(StreamFrame::Members(members));
        frames.push(StreamFrame::Routes(routes));
        let mut bytes = Vec::new();
        for frame in &frames {
            bytes.extend_from_slice(&mqtt_cluster_core::wire::sse::encode(frame.event_name(), &frame.to_json()));
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort();
        let mut decoder = SseDecoder::new(1 << 20);
        let mut decoded = Vec::new();
        for pair in points.windows(2) {
            decoder.push(&bytes[pair[0]..pair[1]]).unwrap();
            while let Some(frame) = decoder.next_frame() {
                let frame = frame.unwrap();
                decoded.push(StreamFrame::parse(&frame.event, &frame.data).unwrap());
            }
        }
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn signed_requests_verify_after_the_http_mapping(
        body in prop::collection::vec(any::<u8>(), 0..512),
        counter in 1u64..u64::MAX,
        which in 0usize..Endpoint::ALL.len(),
    ) {
        let endpoint = Endpoint::ALL[which];
        let mut request = endpoint.request("http://core1:8884", Bytes::from(body));
        let mut signer = Authenticator::new(Some(Secret::new("a-long-secret")), Duration::from_secs(30), 8);
        let me = NodeId::new("w1").unwrap();
        let wall = WallTime::from_unix_millis(1_700_000_000_000);
        signer.sign(&mut request, &me, Incarnation(3), counter, wall);
        prop_assert_eq!(Endpoint::recognise(request.method(), request.uri().path()), Ok(endpoint));
        let sender = signer.verify(&request, wall).unwrap();
        prop_assert_eq!(sender.node, me);
        prop_assert_eq!(sender.counter, counter);
        // A changed body no longer verifies.
        let mut tampered = request.clone();
        *tampered.body_mut() = Bytes::from_static(b"tampered");
        let mut fresh = Authenticator::new(Some(Secret::new("a-long-secret")), Duration::from_secs(30), 8);
        prop_assert!(fresh.verify(&tampered, wall).is_err());
    }
}

#[test]
fn qos_outside_0_to_2_is_refused() {
    let text = r#"{"origin":"w","incarnation":1,"topic":"t","payload":"","qos":3,"targets":[]}"#;
    assert!(decode_json::<ForwardedMessage>(text.as_bytes()).is_err());
}

#[test]
fn invalid_topics_and_filters_in_bodies_are_refused() {
    let message =
        r#"{"origin":"w","incarnation":1,"topic":"a/+","payload":"","qos":0,"targets":[]}"#;
    assert!(decode_json::<ForwardedMessage>(message.as_bytes()).is_err());
    let update =
        r#"{"node":"w","incarnation":1,"seq":1,"change":{"kind":"snapshot","routes":["a/#/b"]}}"#;
    assert!(decode_json::<RouteUpdate>(update.as_bytes()).is_err());
}
