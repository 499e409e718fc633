//! `--puback-after-confirm`: a client's PUBACK means every broker with a
//! matching subscriber already took the message, and a core that dies
//! while messages cross it loses none of the acknowledged ones.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{connect, core, settle, wait_routes, Client, QoS, SECRET, TIMEOUT, TIMINGS};
use mqtt_cluster_rmqtt_broker::settings::cluster_config;
use mqtt_cluster_rmqtt_broker::{Broker, Settings};
use mqtt_cluster_tokio::Options;

/// A worker broker registered with the cores at `core_ports` (the first one
/// first), answering PUBACK after confirmation when `confirm` says so.
async fn worker(name: &str, core_ports: &[u16], confirm: bool) -> Broker {
    let clusters: Vec<String> = core_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let config = cluster_config(&format!(
        "core: false\nnodeName: {name}\nclusters: [{}]\nsecret: {SECRET}\n{TIMINGS}",
        clusters.join(", ")
    ))
    .unwrap();
    let mut settings = Settings::new(config, "127.0.0.1:0".parse().unwrap());
    settings.puback_after_confirm = confirm;
    let broker = Broker::start(settings, Options::new()).await.unwrap();
    tokio::time::timeout(TIMEOUT, broker.joined())
        .await
        .expect("worker joins")
        .unwrap();
    broker
}

/// How many messages the node of `broker` delivered to its host so far.
async fn delivered(broker: &Broker) -> u64 {
    broker.cluster().stats().await.unwrap().delivered
}

async fn received(client: &mut Client, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        let publish = tokio::time::timeout(TIMEOUT, client.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} arrived", got.len()));
        got.push(String::from_utf8_lossy(&publish.payload).into_owned());
    }
    got
}

/// With the option, each PUBACK comes after the subscriber's broker took
/// the message; without it, PUBACKs run ahead of the cluster.
async fn pubacks_follow_the_subscribers_broker(confirm: bool) -> usize {
    let (a, port) = core("a", &[]).await;
    let b = worker("b", &[port], confirm).await;
    let c = worker("c", &[port], false).await;
    settle(&[&a, &b, &c]).await;
    let mut subscriber = connect(&c, "subscriber").await;
    subscriber.subscribe("confirmed/#", QoS::AtLeastOnce).await;
    wait_routes(&[&a, &b, &c], 1).await;
    let publisher = connect(&b, "publisher").await;
    let mut ahead = 0;
    for n in 0..50u64 {
        publisher
            .publish("confirmed/x", QoS::AtLeastOnce, &format!("m{n:02}"))
            .await;
        if delivered(&c).await <= n {
            ahead += 1;
        }
    }
    let got = received(&mut subscriber, 50).await;
    let expected: Vec<String> = (0..50).map(|n| format!("m{n:02}")).collect();
    assert_eq!(got, expected);
    if confirm {
        assert_eq!(b.stats().confirmed.get(), 50);
        assert_eq!(b.stats().not_confirmed.get(), 0);
    }
    ahead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_option_a_puback_means_the_subscribers_broker_has_the_message() {
    assert_eq!(pubacks_follow_the_subscribers_broker(true).await, 0);
}

/// The same check without the option: rmqtt's own PUBACK goes as soon as
/// the local node took the message, so the check above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_pubacks_run_ahead_of_the_cluster() {
    assert!(pubacks_follow_the_subscribers_broker(false).await > 0);
}

/// Two core brokers; the publishing worker broker is registered with the
/// first, which dies (its node stops without a word) while QoS 1 messages
/// cross it. Every message the publisher had a PUBACK for reaches the
/// subscriber, on the other core's worker broker, exactly once; the
/// client library publishes the others again on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_that_dies_under_traffic_loses_no_acknowledged_message() {
    let api1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (p1, p2) = (
        api1.local_addr().unwrap().port(),
        api2.local_addr().unwrap().port(),
    );
    let core_settings = |name: &str, port: u16| {
        let config = cluster_config(&format!(
            "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: {name}\n\
             clusters: [http://127.0.0.1:{p1}, http://127.0.0.1:{p2}]\nsecret: {SECRET}\n{TIMINGS}"
        ))
        .unwrap();
        Settings::new(config, "127.0.0.1:0".parse().unwrap())
    };
    let core1 = Broker::start(core_settings("core1", p1), Options::new().listener(api1))
        .await
        .unwrap();
    let core2 = Broker::start(core_settings("core2", p2), Options::new().listener(api2))
        .await
        .unwrap();
    let publishing = worker("b", &[p1, p2], true).await;
    let subscribing = worker("c", &[p2, p1], false).await;
    settle(&[&core1, &core2, &publishing, &subscribing]).await;
    let mut subscriber = connect(&subscribing, "subscriber").await;
    subscriber.subscribe("failover/#", QoS::AtLeastOnce).await;
    wait_routes(&[&core1, &core2, &publishing, &subscribing], 1).await;
    let publisher = connect(&publishing, "publisher").await;

    const MESSAGES: usize = 300;
    let sending = tokio::spawn(async move {
        for n in 0..MESSAGES {
            publisher
                .publish("failover/x", QoS::AtLeastOnce, &format!("m{n:03}"))
                .await;
        }
        publisher
    });
    // Let some cross, then the publisher's core dies.
    let mut got = received(&mut subscriber, 20).await;
    core1.cluster().abort();
    let publisher = sending.await.expect("every publish acknowledged");
    got.extend(received(&mut subscriber, MESSAGES - got.len()).await);
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(Some(extra)) =
        tokio::time::timeout(Duration::from_millis(50), subscriber.received.recv()).await
    {
        got.push(String::from_utf8_lossy(&extra.payload).into_owned());
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for payload in &got {
        *counts.entry(payload.clone()).or_default() += 1;
    }
    let expected: Vec<String> = (0..MESSAGES).map(|n| format!("m{n:03}")).collect();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        expected,
        "every acknowledged message arrived"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "arrived more than once: {twice:?}");
    assert_eq!(
        publishing.stats().confirmed.get(),
        MESSAGES as u64,
        "each PUBACK followed a confirmation"
    );
    assert_eq!(
        publishing
            .cluster()
            .status()
            .await
            .unwrap()
            .core
            .map(|c| c.to_string()),
        Some("core2".to_owned())
    );
    drop(publisher);
}
