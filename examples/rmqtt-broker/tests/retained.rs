//! Row 6: retained messages are cluster-wide.

mod common;

use std::time::Duration;

use common::*;
use mqtt_cluster_rmqtt_broker::Broker;

async fn retained_topics(client: &mut Client) -> Vec<(String, String)> {
    client
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .map(|p| {
            assert!(p.retain, "delivered as retained");
            (
                String::from_utf8_lossy(&p.topic).into_owned(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

async fn wait_retained(broker: &Broker, topics: usize) {
    let wait = async {
        while broker.context().extends.retain().await.count().await != topics as isize {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .expect("retained set converges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_reaches_later_subscribers_on_every_broker() {
    let (a, port) = core("a", &[]).await;
    let b = worker("b", port).await;
    settle(&[&a, &b]).await;

    // Nobody subscribed anywhere when it is published.
    let publisher = connect(&a, "publisher").await;
    publisher
        .publish_retained("r/1", QoS::AtLeastOnce, "v1")
        .await;
    publisher
        .publish_retained("r/2", QoS::AtLeastOnce, "v2")
        .await;
    wait_retained(&b, 2).await;
    let mut on_b = connect(&b, "late").await;
    on_b.subscribe("r/#", QoS::AtLeastOnce).await;
    let mut got = retained_topics(&mut on_b).await;
    got.sort();
    assert_eq!(
        got,
        [("r/1".into(), "v1".into()), ("r/2".into(), "v2".into())]
    );

    // A broker that joins later receives the set too.
    let c = worker("c", port).await;
    wait_retained(&c, 2).await;
    let mut on_c = connect(&c, "later-still").await;
    on_c.subscribe("r/1", QoS::AtLeastOnce).await;
    assert_eq!(
        retained_topics(&mut on_c).await,
        [("r/1".into(), "v1".into())]
    );

    // An empty retained payload clears it everywhere.
    publisher
        .publish_retained("r/1", QoS::AtLeastOnce, "")
        .await;
    wait_retained(&b, 1).await;
    wait_retained(&c, 1).await;
    let mut fresh = connect(&c, "fresh").await;
    fresh.subscribe("r/#", QoS::AtLeastOnce).await;
    assert_eq!(
        retained_topics(&mut fresh).await,
        [("r/2".into(), "v2".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_retained_set_is_bounded_and_counts_what_it_refuses() {
    let (a, port) = core_with("a", &[], "retainedLimit: 2\n").await;
    let b = worker_with("b", port, "retainedLimit: 2\n").await;
    settle(&[&a, &b]).await;

    let publisher = connect(&a, "publisher").await;
    for topic in ["lim/1", "lim/2", "lim/3"] {
        publisher
            .publish_retained(topic, QoS::AtLeastOnce, topic)
            .await;
    }
    wait_retained(&b, 2).await;
    let refused = a.cluster().stats().await.unwrap().retained_refused;
    assert_eq!(refused, 1, "the third topic is refused and counted");
    let mut on_b = connect(&b, "late").await;
    on_b.subscribe("lim/#", QoS::AtLeastOnce).await;
    let mut got = retained_topics(&mut on_b).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("lim/1".into(), "lim/1".into()),
            ("lim/2".into(), "lim/2".into())
        ]
    );
}
