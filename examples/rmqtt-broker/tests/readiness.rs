//! A broker takes MQTT clients only once its node holds the cluster's
//! routes. Found by the chaos runner: a broker restarted after `kill -9`
//! took the publishes its client had queued before its node knew any other
//! broker's subscriptions, so they reached nobody and were acknowledged.
//! Here nothing waits for the cluster to settle: the first publish goes as
//! soon as the broker is up.

mod common;

use common::{QoS, SECRET, TIMEOUT, TIMINGS};
use mqtt_cluster_rmqtt_broker::settings::cluster_config;
use mqtt_cluster_rmqtt_broker::{Broker, Settings};
use mqtt_cluster_tokio::Options;

async fn expect(subscriber: &mut common::Client, topic: &str, payload: &str) {
    let got = tokio::time::timeout(TIMEOUT, subscriber.recv())
        .await
        .unwrap_or_else(|_| panic!("{topic} never arrived"));
    assert_eq!(got.topic, topic.as_bytes());
    assert_eq!(got.payload, payload.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_broker_routes_its_first_publish() {
    let (core, port) = common::core("a", &[]).await;
    let mut subscriber = common::connect(&core, "sub").await;
    subscriber.subscribe("ready/#", QoS::AtLeastOnce).await;

    let config = cluster_config(&format!(
        "core: false\nnodeName: w\nclusters: [http://127.0.0.1:{port}]\nsecret: {SECRET}\n{TIMINGS}"
    ))
    .unwrap();
    let worker = Broker::start(
        Settings::new(config, "127.0.0.1:0".parse().unwrap()),
        Options::new(),
    )
    .await
    .unwrap();
    let publisher = common::connect(&worker, "pub").await;
    publisher
        .publish("ready/worker", QoS::AtLeastOnce, "first")
        .await;
    expect(&mut subscriber, "ready/worker", "first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_broker_joining_a_cluster_routes_its_first_publish() {
    let (core, port) = common::core("a", &[]).await;
    let mut subscriber = common::connect(&core, "sub").await;
    subscriber.subscribe("ready/#", QoS::AtLeastOnce).await;

    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = api.local_addr().unwrap().port();
    let config = cluster_config(&format!(
        "core: true\nhost: 127.0.0.1\nport: {own}\nnodeName: b\n\
         clusters: [http://127.0.0.1:{own}, http://127.0.0.1:{port}]\nsecret: {SECRET}\n{TIMINGS}"
    ))
    .unwrap();
    let second = Broker::start(
        Settings::new(config, "127.0.0.1:0".parse().unwrap()),
        Options::new().listener(api),
    )
    .await
    .unwrap();
    let publisher = common::connect(&second, "pub").await;
    publisher
        .publish("ready/core", QoS::AtLeastOnce, "first")
        .await;
    expect(&mut subscriber, "ready/core", "first").await;
}
