//! Row 2: MQTT 5 properties cross intact; message expiry crosses as the
//! time left.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

fn properties(expiry: u32) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(expiry),
        response_topic: Some("reply/to/me".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\xffcorrelation")),
        user_properties: vec![
            ("b-key".into(), "second value first".into()),
            ("a-key".into(), "1".into()),
            ("a-key".into(), "2".into()),
        ],
        content_type: Some("application/json".into()),
        ..PublishProperties::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_properties_cross_intact() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    let mut sub = connect(b, "sub").await;
    sub.subscribe("props/#", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;

    let publisher = connect(a, "publisher").await;
    publisher
        .publish_with("props/x", QoS::AtLeastOnce, "{}", Some(properties(120)))
        .await;
    let got = sub.recv().await;
    let props = got.properties.expect("properties arrive");
    let sent = properties(120);
    assert_eq!(
        props.payload_format_indicator,
        sent.payload_format_indicator
    );
    assert_eq!(props.response_topic, sent.response_topic);
    assert_eq!(props.correlation_data, sent.correlation_data);
    assert_eq!(
        props.user_properties, sent.user_properties,
        "same pairs, same order"
    );
    assert_eq!(props.content_type, sent.content_type);
    let expiry = props.message_expiry_interval.expect("expiry crosses");
    assert!((118..=120).contains(&expiry), "expiry {expiry}");

    // Without properties, none appear.
    publisher
        .publish("props/plain", QoS::AtLeastOnce, "x")
        .await;
    let plain = sub.recv().await;
    let empty = plain.properties.unwrap_or_default();
    assert!(
        empty.user_properties.is_empty()
            && empty.content_type.is_none()
            && empty.response_topic.is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_expiry_counts_down_and_is_not_reset_by_the_hop() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    // An offline persistent session on B holds the message while time passes.
    let sub = connect_persistent(b, "sleeper", true).await;
    sub.subscribe("exp/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    settle(&[a, b]).await;

    let publisher = connect(a, "publisher").await;
    publisher
        .publish_with("exp/soon", QoS::AtLeastOnce, "gone", Some(properties(2)))
        .await;
    publisher
        .publish_with("exp/later", QoS::AtLeastOnce, "kept", Some(properties(30)))
        .await;
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let mut sub = connect_persistent(b, "sleeper", false).await;
    let got = sub.recv().await;
    // The 2 s message expired while it waited; the other lost the time it
    // waited (3.5 s of 30).
    assert_eq!(&got.topic[..], b"exp/later");
    let left = got.properties.unwrap().message_expiry_interval.unwrap();
    assert!((20..=27).contains(&left), "expiry left {left}");
    assert!(sub.drain(Duration::from_millis(300)).await.is_empty());
}
