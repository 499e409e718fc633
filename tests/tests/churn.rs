//! Members that come and go: what a node keeps per peer (sequence counters,
//! counters of closed links and their `/metrics` labels, learnt core
//! addresses, routes) must not grow with every member the cluster ever
//! had, and routes of a member nobody has heard of are refused.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::routing::Subscription;
use mqtt_cluster_core::wire::messages::{
    MemberRecord, MemberState, Qos, RouteChange, RouteUpdate, Stamp, SyncRequest,
};
use mqtt_cluster_core::{Config, Event, Incarnation, NodeId, Role};
use mqtt_cluster_tests::pump::PumpedCluster;

const SECRET: &str = "correct-horse-battery-staple";

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn core_config(name: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: true\nport: 8884\nclusters:\n- http://core1:8884\n- http://core2:8884\n\
         nodeName: {name}\nsecret: {SECRET}\n"
    ))
    .unwrap()
}

/// A core outside `clusters` that registers with core1 and advertises its
/// own address: core1 learns it.
fn edge_config(name: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: true\nport: 8884\nclusters:\n- http://core1:8884\n\
         advertise: http://{name}:8884\nnodeName: {name}\nsecret: {SECRET}\n"
    ))
    .unwrap()
}

/// A worker without `nodeName`: its id comes from its seed, new at every
/// start.
fn unnamed_worker_config(home: &str) -> Config {
    Config::from_yaml_str(&format!(
        "clusters:\n- http://{home}:8884\nsecret: {SECRET}\n"
    ))
    .unwrap()
}

fn named_worker_config(name: &str, home: &str) -> Config {
    Config::from_yaml_str(&format!(
        "clusters:\n- http://{home}:8884\nnodeName: {name}\nsecret: {SECRET}\n"
    ))
    .unwrap()
}

fn publish_qos1(cluster: &mut PumpedCluster, from: &str, topic: &str) {
    let now = cluster.now();
    let message = Message::new(topic, "x").unwrap().with_qos(Qos::AtLeastOnce);
    cluster.node_mut(&id(from)).publish(now, message).unwrap();
    cluster.pump();
}

fn delivered(cluster: &PumpedCluster, node: &NodeId, topic: &str) -> usize {
    cluster
        .events(node)
        .iter()
        .filter(|e| matches!(e, Event::Deliver(d) if d.topic.as_str() == topic))
        .count()
}

/// Distinct `peer` label values in a node's `/metrics` text.
fn metric_peers(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split("peer=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn members_that_come_and_go_leave_the_per_peer_maps_bounded() {
    let mut cluster = PumpedCluster::new();
    cluster.add(core_config("core1"), 1);
    cluster.add(core_config("core2"), 2);
    let fixed = cluster.add(named_worker_config("fixed", "core2"), 3);
    cluster.run_for(Duration::from_secs(3));

    const ROUNDS: u64 = 30;
    for k in 0..ROUNDS {
        let home = if k % 2 == 0 { "core1" } else { "core2" };
        let worker = cluster.add(unnamed_worker_config(home), 1000 + k);
        let edge = cluster.add(edge_config(&format!("edge{k}")), 2000 + k);
        cluster.run_for(Duration::from_secs(3));
        let topic = format!("churn/{k}");
        let now = cluster.now();
        cluster.node_mut(&worker).subscribe(now, &topic).unwrap();
        cluster.pump();
        cluster.run_for(Duration::from_secs(1));
        // Every core and the long-lived worker number messages to it, and
        // their links to it carry something.
        publish_qos1(&mut cluster, "fixed", &topic);
        publish_qos1(&mut cluster, "core1", &topic);
        publish_qos1(&mut cluster, "core2", &topic);
        cluster.run_for(Duration::from_secs(1));
        assert_eq!(delivered(&cluster, &worker, &topic), 3, "round {k}");
        if k % 3 == 0 {
            let now = cluster.now();
            cluster.node_mut(&worker).leave(now);
            cluster.pump();
        }
        cluster.kill(&worker);
        cluster.kill(&edge);
        cluster.run_for(Duration::from_secs(15));
    }
    // Long enough for every tombstone to expire (10 × deadTimeout).
    cluster.run_for(Duration::from_secs(120));

    for name in ["core1", "core2", "fixed"] {
        let node = cluster.node(&id(name));
        let kept = node.bookkeeping();
        assert_eq!(kept.members, 3, "{name}: {kept:?}");
        assert!(kept.sequence_counters <= kept.members, "{name}: {kept:?}");
        assert!(kept.closed_links <= kept.members, "{name}: {kept:?}");
        assert!(kept.core_slots <= 2, "{name}: {kept:?}");
        assert!(kept.route_owners <= kept.members, "{name}: {kept:?}");
        assert!(kept.sync_outboxes <= 1, "{name}: {kept:?}");
        assert!(kept.member_log_positions <= 2, "{name}: {kept:?}");
        let links = node.stats().links;
        assert!(links.len() <= kept.members + 1, "{name}: {links:?}");
        let labels = metric_peers(&node.metrics());
        assert!(labels.len() <= kept.members + 2, "{name}: {labels:?}");
    }
    // Nothing counted is lost: the links of forgotten peers are summed.
    let core1 = cluster.node(&id("core1")).stats();
    let forgotten = &core1.links[mqtt_cluster_core::node::FORGOTTEN_PEERS];
    assert!(forgotten.acked >= ROUNDS / 2, "{forgotten:?}");

    // A destination met again after being forgotten is numbered past its
    // old numbers, and messages to a new member still arrive once.
    let late = cluster.add(unnamed_worker_config("core1"), 1000);
    cluster.run_for(Duration::from_secs(3));
    let now = cluster.now();
    cluster.node_mut(&late).subscribe(now, "late").unwrap();
    cluster.pump();
    cluster.run_for(Duration::from_secs(1));
    publish_qos1(&mut cluster, "fixed", "late");
    cluster.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&cluster, &late, "late"), 1);
    assert!(cluster.node(&fixed).last_sequence_to(&late).unwrap() > 1);
}

/// Signs a request as `node` in `incarnation`.
fn signed_as(
    node: &NodeId,
    incarnation: Incarnation,
    counter: u64,
    wall_ms: u64,
    body: &SyncRequest,
) -> Request<Bytes> {
    let auth = Authenticator::new(Some(Secret::new(SECRET)), Duration::from_secs(30), 16);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/sync")
        .body(Bytes::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    auth.sign(
        &mut request,
        node,
        incarnation,
        counter,
        mqtt_cluster_core::WallTime::from_unix_millis(wall_ms),
    );
    request
}

#[test]
fn routes_of_a_member_never_heard_of_are_refused_and_change_nothing() {
    let mut cluster = PumpedCluster::new();
    let core1 = cluster.add(core_config("core1"), 1);
    let core2 = cluster.add(core_config("core2"), 2);
    cluster.run_for(Duration::from_secs(3));
    let ghost = id("ghost");
    let routes = RouteUpdate {
        node: ghost.clone(),
        incarnation: Incarnation(5),
        seq: 1,
        change: RouteChange::Delta {
            prev: 0,
            add: vec![Subscription::parse("secrets/#").unwrap()],
            remove: vec![],
        },
    };
    let sync = SyncRequest {
        members: vec![],
        routes: vec![routes.clone()],
        routes_at: None,
        routes_for: None,
    };
    let before = cluster.node(&core1).status();
    let kept = cluster.node(&core1).bookkeeping();
    let incarnation = cluster.node(&core2).incarnation();
    let wall = cluster.now().wall.as_unix_millis();
    let response = cluster.request(&core1, signed_as(&core2, incarnation, 1 << 40, wall, &sync));
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(error["error"], "unknown_route_owner");
    let after = cluster.node(&core1).status();
    assert_eq!(after.routes_digest, before.routes_digest);
    assert_eq!(after.members_digest, before.members_digest);
    assert_eq!(after.routes, before.routes);
    assert_eq!(cluster.node(&core1).bookkeeping(), kept);
    assert!(cluster.node(&core1).routes().routes_of(&ghost).is_empty());
    assert_eq!(
        cluster.node(&core1).stats().requests_refused["unknown_route_owner"],
        1
    );

    // The same routes with the member's record are a member joining.
    let record = MemberRecord {
        id: ghost.clone(),
        role: Role::Worker,
        incarnation: Incarnation(5),
        state: MemberState::Alive,
        home: core2.clone(),
        address: None,
        stamp: Stamp {
            clock: u64::MAX / 2,
            by: core2.clone(),
        },
    };
    let sync = SyncRequest {
        members: vec![record],
        routes: vec![routes],
        routes_at: None,
        routes_for: None,
    };
    let response = cluster.request(
        &core1,
        signed_as(&core2, incarnation, (1 << 40) + 1, wall, &sync),
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(cluster.node(&core1).routes().routes_of(&ghost).len(), 1);
}
