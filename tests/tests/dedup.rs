//! A core handed the same QoS 1 messages in batches that are duplicated and
//! reordered at random delivers each message to its host exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::routing::TopicName;
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::{
    ForwardRequest, ForwardedMessage, Qos, RegisterRequest, Target,
};
use mqtt_cluster_core::{Config, Event, Incarnation, NodeId, Role};
use mqtt_cluster_tests::pump::PumpedCluster;
use proptest::prelude::*;

const SECRET: &str = "correct-horse-battery-staple";

struct Sender {
    auth: Authenticator,
    id: NodeId,
    counter: u64,
}

impl Sender {
    fn request(&mut self, cluster: &PumpedCluster, path: &str, body: Bytes) -> Request<Bytes> {
        self.counter += 1;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(body)
            .unwrap();
        self.auth.sign(
            &mut request,
            &self.id,
            Incarnation(1),
            self.counter,
            cluster.now().wall,
        );
        request
    }
}

fn message(seq: u64) -> ForwardedMessage {
    ForwardedMessage {
        origin: NodeId::new("w1").unwrap(),
        incarnation: Incarnation(1),
        topic: TopicName::new("t").unwrap(),
        payload: Bytes::from(seq.to_string()),
        qos: Qos::AtLeastOnce,
        retain: false,
        properties: None,
        targets: vec![Target {
            node: NodeId::new("core1").unwrap(),
            seq,
        }],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn duplicated_and_reordered_batches_deliver_each_message_once(
        batches in prop::collection::vec(prop::collection::vec(1u64..=60, 1..8), 1..30),
    ) {
        let config = Config::from_yaml_str(&format!(
            "core: true\nnodeName: core1\nclusters: [http://core1:8884]\nsecret: {SECRET}\n"
        )).unwrap();
        let mut cluster = PumpedCluster::new();
        let core = cluster.add(config, 1);
        let now = cluster.now();
        cluster.node_mut(&core).subscribe(now, "t").unwrap();
        cluster.run_for(Duration::from_millis(100));

        let mut sender = Sender {
            auth: Authenticator::new(Some(Secret::new(SECRET)), Duration::from_secs(30), 8),
            id: NodeId::new("w1").unwrap(),
            counter: 0,
        };
        let register = RegisterRequest { node: sender.id.clone(), role: Role::Worker, incarnation: Incarnation(1), address: None };
        let request = sender.request(&cluster, "/register", encode_json(&register));
        prop_assert_eq!(cluster.request(&core, request).status(), StatusCode::OK);

        let mut sent: BTreeMap<u64, ()> = BTreeMap::new();
        for batch in &batches {
            let body = encode_json(&ForwardRequest { messages: batch.iter().map(|s| message(*s)).collect() });
            let request = sender.request(&cluster, "/forward", body);
            prop_assert_eq!(cluster.request(&core, request).status(), StatusCode::OK);
            sent.extend(batch.iter().map(|s| (*s, ())));
        }
        let mut delivered: Vec<u64> = cluster
            .events(&core)
            .iter()
            .filter_map(|e| match e {
                Event::Deliver(d) => Some(d.seq),
                _ => None,
            })
            .collect();
        let count = delivered.len();
        delivered.sort();
        delivered.dedup();
        prop_assert_eq!(delivered.len(), count, "a message was delivered twice");
        prop_assert_eq!(delivered, sent.keys().copied().collect::<Vec<_>>());
    }
}
