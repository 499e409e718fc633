//! Two cores and four workers in memory with a manual clock: exact routing
//! (wildcards, `$`-topics, shared groups), QoS 1 across lost batches and
//! lost acknowledgements, routes of dead nodes vanishing, and bounded queues
//! behind a slow consumer under each policy.

use std::collections::BTreeMap;
use std::time::Duration;

use mqtt_cluster_core::auth::replay::WINDOW;
use mqtt_cluster_core::forward::confirm::{ConfirmFailure, PublishId};
use mqtt_cluster_core::forward::link::DropReason;
use mqtt_cluster_core::node::{Delivery, Message};
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, Event, NodeId};
use mqtt_cluster_tests::pump::{Fault, PumpedCluster};

const SECRET: &str = "correct-horse-battery-staple";
const TIMING: &str =
    "heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\nretryBackoff: 50ms\n";

fn core_config(name: &str, extra: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: true\nport: 8884\nclusters:\n- http://core1:8884\n- http://core2:8884\n\
         nodeName: {name}\nsecret: {SECRET}\n{TIMING}{extra}"
    ))
    .unwrap()
}

fn worker_config(name: &str, home: &str, other: &str) -> Config {
    Config::from_yaml_str(&format!(
        "clusters:\n- http://{home}:8884\n- http://{other}:8884\nnodeName: {name}\nsecret: {SECRET}\n{TIMING}"
    ))
    .unwrap()
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// core1 with w1, w2; core2 with w3, w4. `core_extra` is appended to both
/// cores' plugin.yaml.
fn six(core_extra: &str) -> PumpedCluster {
    let mut cluster = PumpedCluster::new();
    cluster.add(core_config("core1", core_extra), 1);
    cluster.add(core_config("core2", core_extra), 2);
    cluster.add(worker_config("w1", "core1", "core2"), 3);
    cluster.add(worker_config("w2", "core1", "core2"), 4);
    cluster.add(worker_config("w3", "core2", "core1"), 5);
    cluster.add(worker_config("w4", "core2", "core1"), 6);
    cluster.run_for(Duration::from_secs(1));
    cluster
}

fn subscribe(cluster: &mut PumpedCluster, node: &str, filter: &str) {
    let now = cluster.now();
    cluster.node_mut(&id(node)).subscribe(now, filter).unwrap();
    cluster.pump();
}

fn publish(
    cluster: &mut PumpedCluster,
    node: &str,
    topic: &str,
    payload: &str,
    qos: Qos,
) -> Vec<NodeId> {
    let now = cluster.now();
    let message = Message::new(topic, payload.to_owned())
        .unwrap()
        .with_qos(qos);
    let routing = cluster.node_mut(&id(node)).publish(now, message).unwrap();
    cluster.pump();
    routing.remote
}

fn deliveries(cluster: &PumpedCluster, node: &str) -> Vec<Delivery> {
    cluster
        .events(&id(node))
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn payloads(cluster: &PumpedCluster, node: &str) -> Vec<String> {
    deliveries(cluster, node)
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect()
}

fn ids(names: &[&str]) -> Vec<NodeId> {
    names.iter().map(|n| id(n)).collect()
}

#[test]
fn a_publish_reaches_exactly_the_subscribed_nodes() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w2", "sensors/+/temp");
    subscribe(&mut cluster, "w3", "sensors/#");
    subscribe(&mut cluster, "w4", "$SYS/#");
    subscribe(&mut cluster, "core2", "#");
    subscribe(&mut cluster, "w1", "other");
    cluster.run_for(Duration::from_millis(300));

    assert_eq!(
        publish(&mut cluster, "w1", "sensors/1/temp", "t", Qos::AtMostOnce),
        ids(&["core2", "w2", "w3"])
    );
    // `$`-topics are not matched by a leading wildcard.
    assert_eq!(
        publish(&mut cluster, "w1", "$SYS/load", "s", Qos::AtLeastOnce),
        ids(&["w4"])
    );
    // `sensors/#` matches its parent level.
    assert_eq!(
        publish(&mut cluster, "w4", "sensors", "p", Qos::AtLeastOnce),
        ids(&["core2", "w3"])
    );
    // A core's own clients publish too; nothing comes back to the origin.
    assert_eq!(
        publish(&mut cluster, "core2", "other", "o", Qos::AtLeastOnce),
        ids(&["w1"])
    );
    cluster.run_for(Duration::from_millis(200));

    assert_eq!(payloads(&cluster, "w1"), ["o"]);
    assert_eq!(payloads(&cluster, "w2"), ["t"]);
    assert_eq!(payloads(&cluster, "w3"), ["t", "p"]);
    assert_eq!(payloads(&cluster, "w4"), ["s"]);
    assert_eq!(payloads(&cluster, "core2"), ["t", "p"]);
    assert!(payloads(&cluster, "core1").is_empty());
    let d = &deliveries(&cluster, "w4")[0];
    assert_eq!(
        (d.origin.as_str(), d.topic.as_str(), d.qos),
        ("w1", "$SYS/load", Qos::AtLeastOnce)
    );
}

#[test]
fn retain_flag_and_properties_survive_the_hop() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w3", "r");
    cluster.run_for(Duration::from_millis(300));
    let now = cluster.now();
    let mut message = Message::new("r", "x").unwrap().retained();
    message.properties = Some(bytes::Bytes::from_static(&[1, 2, 3]));
    cluster.node_mut(&id("w1")).publish(now, message).unwrap();
    cluster.run_for(Duration::from_millis(100));
    let d = &deliveries(&cluster, "w3")[0];
    assert!(d.retain);
    assert_eq!(d.properties.as_deref(), Some(&[1u8, 2, 3][..]));
}

#[test]
fn a_shared_group_gets_each_message_once_spread_fairly() {
    let mut cluster = six("");
    for node in ["w2", "w3", "w4"] {
        subscribe(&mut cluster, node, "$share/g/jobs/#");
    }
    cluster.run_for(Duration::from_millis(300));
    for i in 0..30 {
        let to = publish(
            &mut cluster,
            "w1",
            "jobs/x",
            &i.to_string(),
            Qos::AtLeastOnce,
        );
        assert_eq!(to.len(), 1, "one member of the group per message");
    }
    cluster.run_for(Duration::from_millis(300));
    let mut all: Vec<u32> = Vec::new();
    for node in ["w2", "w3", "w4"] {
        let got: Vec<u32> = payloads(&cluster, node)
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(got.len(), 10, "{node} got its fair share");
        all.extend(got);
    }
    all.sort();
    assert_eq!(all, (0..30).collect::<Vec<_>>());
}

#[test]
fn qos1_survives_a_lost_batch_and_a_lost_ack_with_exactly_one_delivery() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w3", "a/b");
    cluster.run_for(Duration::from_millis(300));

    // The worker's batch to its core is lost.
    cluster.inject(&id("w1"), "/forward", Fault::LoseRequest);
    publish(&mut cluster, "w1", "a/b", "1", Qos::AtLeastOnce);
    // The core relays, but the worker never hears that it did.
    cluster.inject(&id("w1"), "/forward", Fault::LoseResponse);
    publish(&mut cluster, "w1", "a/b", "2", Qos::AtLeastOnce);
    // The hop between the cores loses its acknowledgement.
    cluster.inject(&id("core1"), "/forward", Fault::LoseResponse);
    publish(&mut cluster, "w1", "a/b", "3", Qos::AtLeastOnce);
    // The worker's acknowledgement of its stream is lost.
    cluster.inject(&id("w3"), "/ack", Fault::LoseRequest);
    publish(&mut cluster, "w1", "a/b", "4", Qos::AtLeastOnce);
    cluster.run_for(Duration::from_secs(2));

    assert_eq!(payloads(&cluster, "w3"), ["1", "2", "3", "4"]);
    let seqs: Vec<u64> = deliveries(&cluster, "w3").iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "in publish order");
    let duplicates =
        cluster.node(&id("w3")).stats().duplicates + cluster.node(&id("core1")).stats().duplicates;
    assert!(
        duplicates >= 1,
        "a retry arrived twice and was delivered once"
    );
    assert!(cluster.node(&id("w1")).stats().links["uplink"].retries >= 2);
}

#[test]
fn qos0_is_sent_once_and_a_lost_batch_is_counted() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w3", "a/b");
    cluster.run_for(Duration::from_millis(300));
    cluster.inject(&id("w1"), "/forward", Fault::LoseRequest);
    publish(&mut cluster, "w1", "a/b", "lost", Qos::AtMostOnce);
    publish(&mut cluster, "w1", "a/b", "kept", Qos::AtMostOnce);
    cluster.run_for(Duration::from_secs(1));
    assert_eq!(payloads(&cluster, "w3"), ["kept"]);
    let stats = cluster.node(&id("w1")).stats();
    assert_eq!(stats.dropped.get(&DropReason::Qos0Lost), Some(&1));
    assert!(cluster.events(&id("w1")).iter().any(|e| matches!(
        e,
        Event::Dropped {
            reason: DropReason::Qos0Lost,
            count: 1,
            ..
        }
    )));
}

#[test]
fn routes_of_a_dead_subscriber_vanish_everywhere() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w3", "x/#");
    subscribe(&mut cluster, "w4", "x/#");
    cluster.run_for(Duration::from_millis(300));
    assert_eq!(
        publish(&mut cluster, "w1", "x/1", "a", Qos::AtMostOnce),
        ids(&["w3", "w4"])
    );
    let routes_before: BTreeMap<NodeId, usize> = cluster
        .statuses()
        .into_iter()
        .map(|(n, s)| (n, s.routes))
        .collect();
    assert!(routes_before.values().all(|r| *r == 2), "{routes_before:?}");

    cluster.kill(&id("w3"));
    cluster.run_for(Duration::from_secs(2));
    for node in ["core1", "core2", "w1", "w2", "w4"] {
        assert_eq!(cluster.node(&id(node)).status().routes, 1, "{node}");
    }
    assert_eq!(
        publish(&mut cluster, "w1", "x/1", "b", Qos::AtMostOnce),
        ids(&["w4"])
    );
    assert_eq!(
        publish(&mut cluster, "core2", "x/1", "c", Qos::AtMostOnce),
        ids(&["w4"])
    );
}

/// w3 stops reading its stream; w1 publishes 30 messages to it. Its core
/// keeps 5 in flight and 10 queued. For QoS 0 the policy decides which 15
/// go; QoS 1 is never dropped by policy.
fn slow_consumer(policy: u8, qos: Qos) -> (Vec<String>, PumpedCluster) {
    let mut cluster = six(&format!(
        "queueLength: 10\nqueuePolicy: {policy}\nmaxInFlight: 5\n"
    ));
    subscribe(&mut cluster, "w3", "slow");
    cluster.run_for(Duration::from_millis(300));
    cluster.stall(&id("w3"));
    for i in 1..=30 {
        publish(&mut cluster, "w1", "slow", &i.to_string(), qos);
    }
    let depth = cluster.node(&id("core2")).status().queues["w3"];
    let expected_queued = if qos == Qos::AtMostOnce { 10 } else { 25 };
    assert_eq!((depth.queued, depth.in_flight), (expected_queued, 5));
    cluster.resume(&id("w3"));
    cluster.run_for(Duration::from_millis(500));
    (payloads(&cluster, "w3"), cluster)
}

fn numbers(range: impl Iterator<Item = u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn slow_consumer_with_policy_0_drops_the_newest_qos0_and_counts_them() {
    let (got, cluster) = slow_consumer(0, Qos::AtMostOnce);
    assert_eq!(got, numbers(1..=15));
    let core2 = cluster.node(&id("core2")).stats();
    assert_eq!(core2.dropped.get(&DropReason::QueueFull), Some(&15));
    assert_eq!(
        core2.links["w3"].dropped.get(&DropReason::QueueFull),
        Some(&15)
    );
    let told: u64 = cluster
        .events(&id("core2"))
        .iter()
        .filter_map(|e| match e {
            Event::Dropped {
                peer,
                count,
                reason: DropReason::QueueFull,
                ..
            } if peer.as_str() == "w3" => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(told, 15);
}

#[test]
fn slow_consumer_with_policy_1_drops_the_oldest_queued_qos0_and_counts_them() {
    let (got, cluster) = slow_consumer(1, Qos::AtMostOnce);
    // The five in flight were already sent; the queue kept the ten newest.
    assert_eq!(got, numbers((1..=5).chain(21..=30)));
    let core2 = cluster.node(&id("core2")).stats();
    assert_eq!(core2.dropped.get(&DropReason::QueueFull), Some(&15));
}

fn confirmed_ids(cluster: &PumpedCluster, node: &str) -> Vec<PublishId> {
    cluster
        .events(&id(node))
        .iter()
        .filter_map(|e| match e {
            Event::Confirmed { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn not_confirmed(cluster: &PumpedCluster, node: &str) -> usize {
    cluster
        .events(&id(node))
        .iter()
        .filter(|e| matches!(e, Event::NotConfirmed { .. }))
        .count()
}

#[test]
fn a_slow_consumer_loses_no_qos1_message_under_either_policy() {
    for policy in [0, 1] {
        let (got, cluster) = slow_consumer(policy, Qos::AtLeastOnce);
        assert_eq!(got, numbers(1..=30), "policy {policy}");
        for node in ["core1", "core2", "w1"] {
            assert_eq!(
                cluster
                    .node(&id(node))
                    .stats()
                    .dropped
                    .values()
                    .sum::<u64>(),
                0,
                "policy {policy}, {node}"
            );
        }
        assert_eq!(confirmed_ids(&cluster, "w1").len(), 30, "policy {policy}");
        assert_eq!(not_confirmed(&cluster, "w1"), 0);
    }
}

/// A destination that confirms nothing holds its origin at the dedup
/// window: the publishes beyond it wait at the origin (`busy`), none is
/// dropped, and `Ready` says when they move again.
#[test]
fn a_stalled_destination_makes_its_origin_busy_then_ready_and_nothing_is_lost() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w3", "held");
    cluster.run_for(Duration::from_millis(300));
    cluster.stall(&id("w3"));
    let mut busy = Vec::new();
    let mut ids_handed_out = Vec::new();
    let window = WINDOW as u32;
    let total = window + 76;
    for i in 1..=total {
        let now = cluster.now();
        let message = Message::new("held", i.to_string())
            .unwrap()
            .with_qos(Qos::AtLeastOnce);
        let routing = cluster.node_mut(&id("w1")).publish(now, message).unwrap();
        ids_handed_out.push(routing.id.expect("a QoS 1 publish has an id"));
        if routing.busy {
            busy.push(i);
        }
        cluster.pump();
    }
    assert_eq!(
        busy.first(),
        Some(&(window + 1)),
        "the window is the dedup window"
    );
    assert_eq!(busy.len(), 76);
    assert!(
        !cluster
            .events(&id("w1"))
            .iter()
            .any(|e| matches!(e, Event::Ready)),
        "nothing moved yet"
    );
    // What a broker reads to throttle its clients.
    let status = cluster.node(&id("w1")).status();
    let w3 = status.destinations[&id("w3")];
    assert_eq!((w3.unconfirmed, w3.busy), (WINDOW as usize, true));
    assert_eq!(status.held, 76);
    assert!(status.oldest_unconfirmed_ms.is_some());
    let metrics = cluster.node(&id("w1")).metrics();
    assert!(metrics.contains(&format!(
        "mqtt_cluster_unconfirmed{{destination=\"w3\"}} {WINDOW}"
    )));
    assert!(metrics.contains("mqtt_cluster_held 76"));
    cluster.resume(&id("w3"));
    cluster.run_for(Duration::from_millis(800));
    assert_eq!(payloads(&cluster, "w3"), numbers(1..=total));
    assert!(cluster
        .events(&id("w1"))
        .iter()
        .any(|e| matches!(e, Event::Ready)));
    let mut confirmed = confirmed_ids(&cluster, "w1");
    confirmed.sort();
    ids_handed_out.sort();
    assert_eq!(confirmed, ids_handed_out);
    assert_eq!(not_confirmed(&cluster, "w1"), 0);
    let w1 = cluster.node(&id("w1")).stats();
    assert_eq!(w1.dropped.values().sum::<u64>(), 0);
    assert_eq!(w1.confirmed, u64::from(total));
    let status = cluster.node(&id("w1")).status();
    assert!(status.destinations.is_empty() && status.held == 0);
    assert!(cluster
        .node(&id("w1"))
        .metrics()
        .contains(&format!("mqtt_cluster_confirmed_total {total}")));
}

#[test]
fn messages_held_for_a_worker_that_dies_are_counted_for_it_and_named() {
    let mut cluster = six("");
    subscribe(&mut cluster, "w3", "held");
    cluster.run_for(Duration::from_millis(300));
    // w3 stops reading, then dies: core2 holds what it had for w3.
    cluster.stall(&id("w3"));
    for i in 1..=4 {
        publish(&mut cluster, "w1", "held", &i.to_string(), Qos::AtLeastOnce);
    }
    assert!(cluster.node(&id("core2")).status().queues["w3"].in_flight > 0);
    cluster.kill(&id("w3"));
    cluster.run_for(Duration::from_secs(2));
    let core2 = cluster.node(&id("core2"));
    let for_w3 = &core2.stats().links["w3"];
    assert_eq!(for_w3.dropped.get(&DropReason::PeerGone), Some(&4));
    assert!(core2
        .metrics()
        .contains(r#"mqtt_cluster_dropped_total{peer="w3",reason="peer_gone"} 4"#));
    let named: Vec<u64> = cluster
        .events(&id("core2"))
        .iter()
        .flat_map(|e| match e {
            Event::Dropped {
                reason: DropReason::PeerGone,
                copies,
                ..
            } => copies
                .iter()
                .filter(|c| c.to.as_str() == "w3")
                .map(|c| c.seq)
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(named.len(), 4, "each copy for w3 is named once: {named:?}");
}

/// A core whose `maxBodySize` is smaller than its worker's refuses the
/// worker's large message: the publish settles as refused at once, rather
/// than being sent again until it expires.
#[test]
fn a_message_a_hop_refuses_as_too_large_is_reported_refused() {
    let mut cluster = six("maxBodySize: 65536\n");
    subscribe(&mut cluster, "w3", "big");
    cluster.run_for(Duration::from_millis(300));
    let now = cluster.now();
    let message = Message::new("big", "x".repeat(100_000))
        .unwrap()
        .with_qos(Qos::AtLeastOnce);
    let routing = cluster.node_mut(&id("w1")).publish(now, message).unwrap();
    let publish = routing.id.unwrap();
    cluster.pump();
    cluster.run_for(Duration::from_millis(500));
    let settled: Vec<&Event> = cluster
        .events(&id("w1"))
        .iter()
        .filter(|e| matches!(e, Event::Confirmed { .. } | Event::NotConfirmed { .. }))
        .collect();
    assert_eq!(
        settled,
        vec![&Event::NotConfirmed {
            id: publish,
            reason: ConfirmFailure::Refused,
            failed: vec![id("w3")],
            confirmed: vec![],
        }]
    );
    assert!(payloads(&cluster, "w3").is_empty());
    assert_eq!(cluster.node(&id("w1")).stats().resent, 0);
}
