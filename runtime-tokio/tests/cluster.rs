//! What is particular to the tokio runtime on loopback: dropped handles,
//! a host slow to read events, a build without TLS. Joining, forwarding,
//! crashes, failover, leaving, bad requests, the operators' endpoints and
//! push streams are in the conformance suite (`tests/`), which runs them on
//! both runtimes and on clusters that mix them.

mod common;

use std::time::Duration;

use common::{bind, core_config, eventually, start, worker_config};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::Event;
use mqtt_cluster_tokio::Options;

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
