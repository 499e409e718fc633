//! Row 3: unsubscribe and a clean-session disconnect stop the flow to that
//! broker; an offline persistent session keeps its route and gets its
//! queued QoS 1 messages on reconnect.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_and_clean_disconnect_stop_the_flow() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    let mut marker = connect(b, "marker").await;
    marker.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut leaving = connect(b, "leaving").await;
    leaving.subscribe("u/#", QoS::AtLeastOnce).await;
    let clean = connect(b, "clean").await;
    clean.subscribe("c/#", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;

    let publisher = connect(a, "publisher").await;
    publisher.publish("u/1", QoS::AtLeastOnce, "before").await;
    assert_eq!(&leaving.recv().await.payload[..], b"before");

    leaving.unsubscribe("u/#").await;
    clean.disconnect().await;
    // Only the marker's route is left.
    wait_routes(&[a, b], 1).await;

    let received = b.stats().received.get();
    publisher.publish("u/2", QoS::AtLeastOnce, "after").await;
    publisher.publish("c/2", QoS::AtLeastOnce, "after").await;
    publisher.publish("m/1", QoS::AtLeastOnce, "marker").await;
    assert_eq!(marker.until("m/1").await.len(), 1);
    // Only the marker crossed to B.
    assert_eq!(b.stats().received.get(), received + 1);
    assert!(leaving.drain(Duration::from_millis(200)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_persistent_session_keeps_its_route_and_its_messages() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    let sub = connect_persistent(b, "persistent", true).await;
    sub.subscribe("p/#", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;
    sub.disconnect().await;
    settle(&[a, b]).await;
    assert_eq!(
        a.cluster().status().await.unwrap().routes,
        1,
        "the route stays"
    );

    let publisher = connect(a, "publisher").await;
    for i in 1..=5 {
        publisher
            .publish(&format!("p/{i}"), QoS::AtLeastOnce, &i.to_string())
            .await;
    }
    wait_count("messages crossed to B", 5, || b.stats().received.get()).await;
    let mut sub = connect_persistent(b, "persistent", false).await;
    let got = sub.until("p/5").await;
    let payloads: Vec<_> = got.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(payloads, ["1", "2", "3", "4", "5"]);
    assert!(sub.drain(Duration::from_millis(200)).await.is_empty());
}
