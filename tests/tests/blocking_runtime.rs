//! What is particular to the blocking runtime: a terabyte announced is
//! refused without harm, dropped handles close the port, a host slow to
//! read its events holds up deliveries without losing any, and what the
//! runtime cannot do is refused at start.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mqtt_cluster_blocking::{Cluster, ClusterHandle, Options, StartError};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::Event;
use mqtt_cluster_tests::raw_http::{error_kind, exchange, exchange_within};
use mqtt_cluster_tests::runtimes::{bind, core_config, eventually, worker_config, DEADLINE};

fn solo() -> ClusterHandle {
    let bound = bind();
    let config = core_config(
        "solo",
        bound.port,
        &[bound.url.as_str()],
        "maxBodySize: 2048\n",
    );
    Cluster::start_with(config, Options::new().seed(9).listener(bound.listener)).unwrap()
}

#[test]
fn a_body_announced_as_a_terabyte_is_refused_and_the_core_serves_on() {
    let node = solo();
    let addr = node.local_addr().unwrap();
    let before = node.status().unwrap();
    let absurd = b"POST /forward HTTP/1.1\r\nhost: t\r\ncontent-length: 1000000000000\r\n\r\nabc";
    let (status, body) = exchange_within(addr, absurd, Duration::from_secs(2));
    assert_eq!((status, error_kind(&body).as_str()), (413, "too_large"));
    // A body over the limit but small is refused the same way.
    let large =
        b"POST /forward HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 5000\r\n\r\n";
    let (status, body) = exchange(addr, large);
    assert_eq!((status, error_kind(&body).as_str()), (413, "too_large"));
    let health = b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    assert_eq!(exchange(addr, health).0, 200);
    assert_eq!(node.status().unwrap(), before);
}

#[test]
fn dropping_every_handle_stops_the_node_and_its_server() {
    let node = solo();
    let addr = node.local_addr().unwrap();
    let events = node.events();
    assert!(TcpStream::connect(addr).is_ok());
    drop(node);
    eventually("the port is closed", || TcpStream::connect(addr).is_err());
    // The events end too: nothing more will come.
    let started = Instant::now();
    while events.next_timeout(DEADLINE).is_some() {}
    assert!(started.elapsed() < DEADLINE, "the event channel closed");
}

/// The suite's ordinary timings (`suspectTimeout` 500 ms): a host that
/// reads no events for five times that while deliveries pile up makes its
/// node look no less alive. Its heartbeats and their answers keep flowing,
/// so there is no failover and no suspicion; deliveries wait, bounded, and
/// all arrive once the host reads again.
#[test]
fn a_host_slow_to_read_events_holds_up_deliveries_without_losing_any() {
    let bound = bind();
    let url = bound.url.clone();
    let core = core_config("core1", bound.port, &[url.as_str()], "");
    let core = Cluster::start_with(core, Options::new().listener(bound.listener)).unwrap();
    let w1 = Cluster::start(worker_config("w1", &[&url], "")).unwrap();
    let w2_config = worker_config("w2", &[&url], "");
    let suspect_timeout = w2_config.suspect_timeout;
    // w2's host reads no events for now, through a channel of 4.
    let w2 = Cluster::start_with(w2_config, Options::new().event_capacity(4)).unwrap();
    w2.subscribe("jobs/#").unwrap();
    eventually("w1 knows the route", || w1.status().unwrap().routes == 1);
    let paused = Instant::now();
    for n in 0..60 {
        let message = Message::new("jobs/x", format!("{n:02}"))
            .unwrap()
            .with_qos(Qos::AtLeastOnce);
        w1.publish(message).unwrap();
    }
    eventually("events back up behind the unread channel", || {
        w2.runtime_stats().unwrap().events_waiting > 0
    });
    // Host calls are still answered while events wait.
    let routing = w2.publish(Message::new("elsewhere", "x").unwrap()).unwrap();
    assert!(routing.remote.is_empty());
    std::thread::sleep((paused + suspect_timeout * 5).saturating_duration_since(Instant::now()));
    assert!(
        w2.runtime_stats().unwrap().events_waiting > 0,
        "the host has not read yet"
    );
    assert_eq!(w2.stats().unwrap().failovers, 0, "no failover");
    assert_eq!(
        w2.status().unwrap().core.map(|c| c.to_string()),
        Some("core1".to_owned())
    );

    // Now read: everything arrives, once, in publish order.
    let mut payloads = Vec::new();
    let mut seen = Vec::new();
    let events = w2.events();
    while payloads.len() < 60 {
        match events
            .next_timeout(DEADLINE)
            .expect("deliveries keep coming")
        {
            Event::Deliver(delivery) => {
                payloads.push(String::from_utf8(delivery.payload.to_vec()).unwrap());
            }
            other => seen.push(other),
        }
    }
    let expected: Vec<String> = (0..60).map(|n| format!("{n:02}")).collect();
    assert_eq!(payloads, expected);
    let stats = w2.stats().unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (60, 0));
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            Event::CoreUnreachable { .. } | Event::MemberSuspect { .. }
        )),
        "w2 suspected no one: {seen:?}"
    );
    let suspected = |node: &ClusterHandle| {
        let events = node.events();
        std::iter::from_fn(|| events.try_next())
            .any(|e| matches!(e, Event::MemberSuspect { node } if node.as_str() == "w2"))
    };
    assert!(!suspected(&core), "the core never suspected w2");
    assert!(!suspected(&w1), "w1 never suspected w2");
}

/// A shutdown with no time limit neither panics nor hangs: the node leaves
/// and stops.
#[test]
fn a_shutdown_timeout_of_duration_max_is_no_limit() {
    static PANICKED: AtomicBool = AtomicBool::new(false);
    let bound = bind();
    let config = core_config("solo", bound.port, &[bound.url.as_str()], "");
    let options = Options::new()
        .listener(bound.listener)
        .shutdown_timeout(Duration::MAX);
    let node = Cluster::start_with(config, options).unwrap();
    // A panic on the node's thread would end it too, so it is watched for.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        PANICKED.store(true, Ordering::SeqCst);
        eprintln!("{info}");
    }));
    node.shutdown();
    let stopped = node.stopped_within(DEADLINE);
    std::panic::set_hook(previous);
    assert!(stopped);
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "the node's thread panicked"
    );
}

#[test]
fn what_the_runtime_cannot_do_is_refused_at_start() {
    let config = worker_config("w1", &["https://127.0.0.1:8884"], "");
    let error = Cluster::start(config).unwrap_err();
    assert!(
        matches!(error, StartError::TlsUnavailable { .. }),
        "{error}"
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = worker_config("w1", &["http://127.0.0.1:8884"], "");
    let error = Cluster::start_with(config, Options::new().listener(listener)).unwrap_err();
    assert!(matches!(error, StartError::ListenerForWorker), "{error}");

    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = core_config("c", port, &[&format!("http://127.0.0.1:{port}")], "");
    let error = Cluster::start(config).unwrap_err();
    assert!(matches!(error, StartError::Bind { .. }), "{error}");
}

#[test]
fn a_stopped_node_answers_every_call_with_stopped() {
    let node = solo();
    node.shutdown();
    assert!(node.stopped_within(Duration::from_secs(1)));
    assert_eq!(
        node.subscribe("a/b"),
        Err(mqtt_cluster_blocking::ClusterError::Stopped)
    );
    assert!(node.status().is_err());
    // Shutting down twice is harmless.
    node.shutdown();
}
