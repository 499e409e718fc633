//! Whole clusters on loopback: joining, forwarding, a crashed worker, a
//! crashed core, and leaving.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{agree, bind, core_config, eventually, four, start, worker_config, Four, Running};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::{MemberState, Qos};
use mqtt_cluster_core::{Event, NodeId};
use mqtt_cluster_tokio::Options;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

async fn member_state(node: &Running, member: &str) -> Option<MemberState> {
    let status = node.handle.status().await.ok()?;
    status
        .members
        .iter()
        .find(|m| m.id.as_str() == member)
        .map(|m| m.state)
}

/// Waits until `publisher`'s copy of the routing table holds `count` routes.
async fn wait_for_routes(publisher: &Running, count: usize) {
    eventually(
        &format!("{} knows {count} route(s)", publisher.id()),
        || async { publisher.handle.status().await.unwrap().routes >= count },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_and_two_workers_agree_on_membership() {
    let cluster = four(false).await;
    let w1 = cluster.w1.handle.status().await.unwrap();
    let w2 = cluster.w2.handle.status().await.unwrap();
    assert_eq!(w1.core, Some(id("core1")));
    assert_eq!(w2.core, Some(id("core2")));
    let core1 = cluster.core1.handle.status().await.unwrap();
    let members: Vec<(&str, &str)> = core1
        .members
        .iter()
        .map(|m| (m.id.as_str(), m.home.as_str()))
        .collect();
    assert_eq!(
        members,
        [
            ("core1", "core1"),
            ("core2", "core2"),
            ("w1", "core1"),
            ("w2", "core2")
        ]
    );
    assert!(cluster
        .w1
        .events()
        .iter()
        .any(|e| matches!(e, Event::Registered { core, .. } if core.as_str() == "core1")));
    // A core is reachable at the address it was given.
    assert!(cluster.core1.handle.local_addr().is_some());
    assert!(cluster.w1.handle.local_addr().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_and_qos1_cross_from_a_worker_through_both_cores_to_a_worker() {
    let cluster = four(false).await;
    assert!(cluster.w2.handle.subscribe("sensors/#").await.unwrap());
    wait_for_routes(&cluster.w1, 1).await;

    let q0 = Message::new("sensors/1/temp", "twenty-one").unwrap();
    let q1 = Message::new("sensors/2/temp", "twenty-two")
        .unwrap()
        .with_qos(Qos::AtLeastOnce)
        .retained();
    let r0 = cluster.w1.handle.publish(q0).await.unwrap();
    let r1 = cluster.w1.handle.publish(q1).await.unwrap();
    assert_eq!((r0.local, r0.remote), (false, vec![id("w2")]));
    assert_eq!(r1.remote, vec![id("w2")]);
    let nobody = Message::new("other/topic", "x").unwrap();
    assert!(cluster
        .w1
        .handle
        .publish(nobody)
        .await
        .unwrap()
        .remote
        .is_empty());

    eventually("both messages reach w2", || async {
        cluster.w2.deliveries().len() >= 2
    })
    .await;
    let mut got = cluster.w2.deliveries();
    got.sort();
    assert_eq!(
        got,
        [
            ("sensors/1/temp".to_owned(), b"twenty-one".to_vec(), 0),
            ("sensors/2/temp".to_owned(), b"twenty-two".to_vec(), 1),
        ]
    );
    let retained: Vec<bool> = cluster
        .w2
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d.retain),
            _ => None,
        })
        .collect();
    assert_eq!(
        retained.iter().filter(|r| **r).count(),
        1,
        "retain survives the hops"
    );
    // Nothing arrived twice, and the origin is the publisher.
    let stats = cluster.w2.handle.stats().await.unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (2, 0));
    assert!(cluster.w2.events().iter().all(|e| match e {
        Event::Deliver(d) => d.origin.as_str() == "w1",
        _ => true,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_declared_dead_in_time_and_its_routes_vanish() {
    let Four {
        core1,
        core2,
        w1,
        w2,
    } = four(false).await;
    w1.handle.subscribe("alerts/#").await.unwrap();
    wait_for_routes(&w2, 1).await;
    let probe = || Message::new("alerts/1", "probe").unwrap();
    assert_eq!(
        w2.handle.publish(probe()).await.unwrap().remote,
        vec![id("w1")]
    );

    let killed = tokio::time::Instant::now();
    w1.kill();
    eventually("core1 declares w1 dead", || async {
        member_state(&core1, "w1").await == Some(MemberState::Dead)
    })
    .await;
    let detected = killed.elapsed();
    // deadTimeout is 600ms of silence, counted from the last heartbeat
    // (up to 50ms before the kill) and checked every 50ms.
    assert!(
        detected >= Duration::from_millis(500),
        "declared dead after only {detected:?}: not by the failure detector"
    );
    assert!(
        detected < Duration::from_millis(600 + 2_000),
        "declared dead only after {detected:?}"
    );
    eventually("every other node sees w1 dead", || async {
        for node in [&core2, &w2] {
            if member_state(node, "w1").await != Some(MemberState::Dead) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(w2
        .events()
        .iter()
        .any(|e| matches!(e, Event::MemberDead { node } if node.as_str() == "w1")));
    eventually("publishing on w2 no longer targets w1", || async {
        w2.handle.publish(probe()).await.unwrap().remote.is_empty()
    })
    .await;
    eventually("w1's route is gone from every copy", || async {
        for node in [&core1, &core2, &w2] {
            if node.handle.status().await.unwrap().routes != 0 {
                return false;
            }
        }
        true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_a_killed_core_fail_over_and_lose_no_qos1_message() {
    // Both workers start on core1.
    let Four {
        core1,
        core2,
        w1,
        w2,
    } = four(true).await;
    assert_eq!(w1.handle.status().await.unwrap().core, Some(id("core1")));
    assert_eq!(w2.handle.status().await.unwrap().core, Some(id("core1")));
    w2.handle.subscribe("orders/#").await.unwrap();
    wait_for_routes(&w1, 1).await;

    let message = |n: usize| {
        Message::new(&format!("orders/{}", n % 7), format!("order-{n}"))
            .unwrap()
            .with_qos(Qos::AtLeastOnce)
    };
    for n in 0..50 {
        assert_eq!(
            w1.handle.publish(message(n)).await.unwrap().remote,
            vec![id("w2")]
        );
    }
    eventually("the first 50 arrive", || async {
        w2.deliveries().len() >= 50
    })
    .await;

    core1.kill();
    // Publish through the failover: from the kill until well after both
    // workers are expected on core2 (suspectTimeout is 200ms).
    for n in 50..150 {
        let routing = w1.handle.publish(message(n)).await.unwrap();
        assert_eq!(
            routing.remote,
            vec![id("w2")],
            "message {n} must still target w2"
        );
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    eventually("both workers fail over to core2", || async {
        w1.handle.status().await.unwrap().core == Some(id("core2"))
            && w2.handle.status().await.unwrap().core == Some(id("core2"))
    })
    .await;
    eventually("all 150 QoS 1 messages arrive", || async {
        w2.deliveries().len() >= 150
    })
    .await;
    // Exactly once: give late duplicates a moment to show up, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (_, payload, qos) in w2.deliveries() {
        assert_eq!(qos, 1);
        *counts.entry(payload).or_default() += 1;
    }
    assert_eq!(counts.len(), 150, "every message arrived");
    assert!(counts.values().all(|c| *c == 1), "no message arrived twice");
    for worker in [&w1, &w2] {
        assert!(worker
            .events()
            .iter()
            .any(|e| matches!(e, Event::CoreUnreachable { core } if core.as_str() == "core1")));
    }
    eventually("core2 declares core1 dead", || async {
        member_state(&core2, "core1").await == Some(MemberState::Dead)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_shuts_down_is_seen_left_before_any_timeout() {
    let Four {
        core1,
        core2,
        w1,
        w2,
    } = four(false).await;
    w1.handle.subscribe("a/#").await.unwrap();
    wait_for_routes(&w2, 1).await;
    let started = tokio::time::Instant::now();
    w1.handle.shutdown().await;
    // Left, not dead: the leave was told, not detected.
    for node in [&core1, &core2, &w2] {
        eventually("w1 is seen left", || async {
            member_state(node, "w1").await == Some(MemberState::Left)
        })
        .await;
    }
    assert!(w1.events().contains(&Event::Left));
    assert!(w2
        .events()
        .iter()
        .any(|e| matches!(e, Event::MemberLeft { node } if node.as_str() == "w1")));
    assert!(
        !core1
            .events()
            .iter()
            .any(|e| matches!(e, Event::MemberDead { .. })),
        "nobody was declared dead"
    );
    let _ = started;
    // A stopped node answers no more calls.
    w1.handle.stopped().await;
    assert!(w1.handle.status().await.is_err());
    eventually("w1's route is gone", || async {
        w2.handle.status().await.unwrap().routes == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_stops_the_node_and_its_server() {
    let bound = bind().await;
    let addr = bound.listener.local_addr().unwrap();
    let config = core_config("solo", bound.port, &[bound.url.as_str()], "");
    let node = start(config, Options::new().listener(bound.listener)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(node.handle);
    eventually("the port is closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let _ = agree;
    let _ = worker_config;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_slow_to_read_events_holds_up_deliveries_without_losing_any() {
    let bound = bind().await;
    // Timings long enough that the pause below looks like no failure.
    let url = bound.url.clone();
    let core = core_config("core1", bound.port, &[url.as_str()], "");
    let _core = start(core, Options::new().listener(bound.listener)).await;
    let w1 = start(worker_config("w1", &[&url], ""), Options::new()).await;
    let mut w2_config = worker_config("w2", &[&url], "");
    w2_config.suspect_timeout = Duration::from_secs(3);
    w2_config.dead_timeout = Duration::from_secs(6);
    // w2's host reads no events for now, through a channel of 4.
    let w2 = mqtt_cluster_tokio::Cluster::start_with(w2_config, Options::new().event_capacity(4))
        .await
        .unwrap();
    w2.subscribe("jobs/#").await.unwrap();
    eventually("w1 knows the route", || async {
        w1.handle.status().await.unwrap().routes == 1
    })
    .await;
    for n in 0..60 {
        let message = Message::new("jobs/x", format!("{n:02}"))
            .unwrap()
            .with_qos(Qos::AtLeastOnce);
        w1.handle.publish(message).await.unwrap();
    }
    // Host calls are still answered while events wait.
    eventually("events back up behind the unread channel", || async {
        w2.runtime_stats().await.unwrap().events_waiting > 0
    })
    .await;
    let routing = w2
        .publish(Message::new("elsewhere", "x").unwrap())
        .await
        .unwrap();
    assert!(routing.remote.is_empty());

    // Now read: everything arrives, once, in publish order.
    let mut payloads = Vec::new();
    let events = w2.events();
    while payloads.len() < 60 {
        let event = tokio::time::timeout(common::DEADLINE, events.next())
            .await
            .expect("deliveries keep coming")
            .expect("node running");
        if let Event::Deliver(delivery) = event {
            payloads.push(String::from_utf8(delivery.payload.to_vec()).unwrap());
        }
    }
    let expected: Vec<String> = (0..60).map(|n| format!("{n:02}")).collect();
    assert_eq!(payloads, expected);
    let stats = w2.stats().await.unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (60, 0));
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn https_peers_without_the_tls_feature_are_refused_at_start() {
    let config = worker_config("w1", &["https://127.0.0.1:8884"], "");
    let error = mqtt_cluster_tokio::Cluster::start(config)
        .await
        .unwrap_err();
    assert!(
        matches!(error, mqtt_cluster_tokio::StartError::TlsUnavailable { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_the_wrong_secret_is_rejected_and_shuts_down_at_once() {
    let bound = bind().await;
    let url = bound.url.clone();
    let core = core_config("core1", bound.port, &[url.as_str()], "");
    let core = start(core, Options::new().listener(bound.listener)).await;
    let mut config = worker_config("intruder", &[&url], "");
    config.secret = Some(mqtt_cluster_core::auth::Secret::new(
        "not-the-cluster-secret",
    ));
    let intruder = start(config, Options::new()).await;
    eventually("the intruder is told it is rejected", || async {
        intruder
            .events()
            .iter()
            .any(|e| matches!(e, Event::RegistrationRejected { .. }))
    })
    .await;
    let status = intruder.handle.status().await.unwrap();
    assert_eq!(status.phase, mqtt_cluster_core::Phase::Rejected);
    assert_eq!(core.handle.status().await.unwrap().members.len(), 1);
    tokio::time::timeout(Duration::from_secs(2), intruder.handle.shutdown())
        .await
        .expect("a rejected node stops without waiting for anyone");
}
