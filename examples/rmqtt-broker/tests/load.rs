//! `mqtt-cluster-bench`'s load generator against a core-broker and a
//! worker-broker: everything published on one arrives once, in order, on
//! the other, and the report says so.

mod common;

use std::time::Duration;

use mqtt_cluster_rmqtt_broker::load::{run, Load};

/// Two publishers on the first broker, two subscribers on the second (none
/// given: the caller sets them).
fn cross(brokers: &[mqtt_cluster_rmqtt_broker::Broker], qos: u8, rate: u64) -> Load {
    let addr = |i: usize| brokers.get(i).map(|b| b.mqtt_addr().to_string());
    Load {
        publish_on: addr(0).into_iter().collect(),
        subscribe_on: addr(1).into_iter().collect(),
        publishers: 2,
        subscribers: 2,
        qos,
        size: 100,
        rate,
        duration: Duration::from_millis(800),
        drain: Duration::from_millis(700),
        settle: Duration::from_millis(500),
        topic: "bench".into(),
        inflight: 50,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_load_across_brokers_arrives_once_each_and_is_counted() {
    let brokers = common::cluster(1).await;
    let report = run(&cross(&brokers, 1, 1_000), |_| {}).await.unwrap();
    assert!(report.sent >= 500, "{report:?}");
    assert_eq!(report.expected, report.sent * 2);
    assert_eq!(report.received, report.expected, "{report:?}");
    assert_eq!((report.lost, report.duplicated), (0, 0), "{report:?}");
    assert!(report.latency.p50_us > 0 && report.latency.p99_us >= report.latency.p50_us);
    assert!(report.received_per_s > 0.0);
    for b in brokers {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_nobody_are_reported_lost() {
    // Subscribers on a broker of another cluster that never hears of them:
    // everything sent counts as lost, nothing as received.
    let left = common::cluster(1).await;
    let (right, _) = common::core("lonely", &[]).await;
    let mut load = cross(&left, 0, 500);
    load.subscribe_on = vec![right.mqtt_addr().to_string()];
    let report = run(&load, |_| {}).await.unwrap();
    assert!(report.sent > 0);
    assert_eq!(report.received, 0);
    assert_eq!(report.lost, report.expected);
    for b in left {
        b.shutdown().await;
    }
    right.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_broker_serves_its_clients_and_tells_its_node_nothing() {
    use mqtt_cluster_rmqtt_broker::settings::cluster_config;
    use mqtt_cluster_rmqtt_broker::{Broker, Settings};
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = api.local_addr().unwrap().port();
    let config = cluster_config(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: alone\n\
         clusters: [http://127.0.0.1:{port}]\nsecret: {}\n",
        common::SECRET
    ))
    .unwrap();
    let mut settings = Settings::new(config, "127.0.0.1:0".parse().unwrap());
    settings.standalone = true;
    let options = mqtt_cluster_tokio::Options::new().listener(api);
    let broker = Broker::start(settings, options).await.unwrap();
    let addr = broker.mqtt_addr().to_string();
    let load = Load {
        publish_on: vec![addr.clone()],
        subscribe_on: vec![addr],
        ..cross(&[], 1, 1_000)
    };
    let report = run(&load, |_| {}).await.unwrap();
    assert_eq!(report.received, report.expected, "{report:?}");
    assert_eq!((report.lost, report.duplicated), (0, 0));
    // rmqtt's own router took the subscriptions: the node has no route.
    assert_eq!(broker.cluster().status().await.unwrap().routes, 0);
    broker.shutdown().await;
}
