//! What is particular to the tokio runtime on loopback: dropped handles,
//! a host slow to read events, a build without TLS. Joining, forwarding,
//! crashes, failover, leaving, bad requests, the operators' endpoints and
//! push streams are in the conformance suite (`tests/`), which runs them on
//! both runtimes and on clusters that mix them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
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

/// The suite's ordinary timings (`suspectTimeout` 200 ms): a host that
/// reads no events for five times that while deliveries pile up makes its
/// node look no less alive. Its heartbeats and their answers keep flowing,
/// so there is no failover and no suspicion; deliveries wait, bounded, and
/// all arrive once the host reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_slow_to_read_events_holds_up_deliveries_without_losing_any() {
    let bound = bind().await;
    let url = bound.url.clone();
    let core = core_config("core1", bound.port, &[url.as_str()], "");
    let core = start(core, Options::new().listener(bound.listener)).await;
    let w1 = start(worker_config("w1", &[&url], ""), Options::new()).await;
    let w2_config = worker_config("w2", &[&url], "");
    let suspect_timeout = w2_config.suspect_timeout;
    // w2's host reads no events for now, through a channel of 4.
    let w2 = mqtt_cluster_tokio::Cluster::start_with(w2_config, Options::new().event_capacity(4))
        .await
        .unwrap();
    w2.subscribe("jobs/#").await.unwrap();
    eventually("w1 knows the route", || async {
        w1.handle.status().await.unwrap().routes == 1
    })
    .await;
    let paused = tokio::time::Instant::now();
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
    tokio::time::sleep_until(paused + suspect_timeout * 5).await;
    let waiting = w2.runtime_stats().await.unwrap().events_waiting;
    assert!(waiting > 0, "the host has not read yet");
    assert_eq!(w2.stats().await.unwrap().failovers, 0, "no failover");
    assert_eq!(
        w2.status().await.unwrap().core.map(|c| c.to_string()),
        Some("core1".to_owned())
    );

    // Now read: everything arrives, once, in publish order.
    let mut payloads = Vec::new();
    let mut seen = Vec::new();
    let events = w2.events();
    while payloads.len() < 60 {
        let event = tokio::time::timeout(common::DEADLINE, events.next())
            .await
            .expect("deliveries keep coming")
            .expect("node running");
        match event {
            Event::Deliver(delivery) => {
                payloads.push(String::from_utf8(delivery.payload.to_vec()).unwrap());
            }
            other => seen.push(other),
        }
    }
    let expected: Vec<String> = (0..60).map(|n| format!("{n:02}")).collect();
    assert_eq!(payloads, expected);
    let stats = w2.stats().await.unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (60, 0));
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            Event::CoreUnreachable { .. } | Event::MemberSuspect { .. }
        )),
        "w2 suspected no one: {seen:?}"
    );
    let suspected = |events: Vec<Event>| {
        events
            .into_iter()
            .any(|e| matches!(e, Event::MemberSuspect { node } if node.as_str() == "w2"))
    };
    assert!(!suspected(core.events()), "the core never suspected w2");
    assert!(!suspected(w1.events()), "w1 never suspected w2");
}

/// A shutdown with no time limit neither panics nor hangs: the node leaves
/// and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_timeout_of_duration_max_is_no_limit() {
    static PANICKED: AtomicBool = AtomicBool::new(false);
    let bound = bind().await;
    let config = core_config("solo", bound.port, &[bound.url.as_str()], "");
    let options = Options::new()
        .listener(bound.listener)
        .shutdown_timeout(Duration::MAX);
    let node = mqtt_cluster_tokio::Cluster::start_with(config, options)
        .await
        .unwrap();
    // A panic in the driver would end it too, so it is watched for.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        PANICKED.store(true, Ordering::SeqCst);
        eprintln!("{info}");
    }));
    let finished = tokio::time::timeout(common::DEADLINE, node.shutdown()).await;
    std::panic::set_hook(previous);
    assert!(finished.is_ok(), "the shutdown finished");
    assert!(!PANICKED.load(Ordering::SeqCst), "the driver panicked");
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
