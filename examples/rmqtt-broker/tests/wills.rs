//! Row 5: a client's will, published when it drops, reaches subscribers on
//! other brokers.

mod common;

use common::*;
use rumqttc::v5::mqttbytes::v5::LastWill;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_crosses_when_its_client_drops() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    let mut sub = connect(b, "watcher").await;
    sub.subscribe("status/#", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;

    let will = LastWill::new("status/device-1", "offline", QoS::AtLeastOnce, false, None);
    let device = connect_with_will(a, "device-1", will).await;
    device
        .publish("status/device-1", QoS::AtLeastOnce, "online")
        .await;
    assert_eq!(&sub.recv().await.payload[..], b"online");

    device.drop_connection();
    let got = sub.recv().await;
    assert_eq!(&got.topic[..], b"status/device-1");
    assert_eq!(&got.payload[..], b"offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_disconnect_sends_no_will() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    let mut sub = connect(b, "watcher").await;
    sub.subscribe("status/#", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;

    let will = LastWill::new("status/device-2", "offline", QoS::AtLeastOnce, false, None);
    let device = connect_with_will(a, "device-2", will).await;
    device.disconnect().await;
    let publisher = connect(a, "marker").await;
    publisher
        .publish("status/marker", QoS::AtLeastOnce, "m")
        .await;
    assert_eq!(sub.until("status/marker").await.len(), 1);
}
