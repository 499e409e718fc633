//! Row 7: a publish the origin's ACL denies reaches nobody; `$SYS/...`
//! topics stay on their broker.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_publish_reaches_nobody_and_sys_topics_stay_local() {
    let (a, port) = core("a", &["secret/#"]).await;
    let b = worker("b", port).await;
    let mut on_a = connect(&a, "on-a").await;
    on_a.subscribe("#", QoS::AtLeastOnce).await;
    on_a.subscribe("$SYS/#", QoS::AtLeastOnce).await;
    let mut on_b = connect(&b, "on-b").await;
    on_b.subscribe("#", QoS::AtLeastOnce).await;
    on_b.subscribe("$SYS/#", QoS::AtLeastOnce).await;
    settle(&[&a, &b]).await;

    // The client library ends a connection whose publish was refused.
    let refused = connect(&a, "refused").await;
    refused
        .publish("secret/plans", QoS::AtLeastOnce, "denied")
        .await;
    assert_eq!(refused.acks().refused_pubacks, 1, "the broker refused it");
    let publisher = connect(&a, "publisher").await;
    publisher
        .publish("$SYS/test/local", QoS::AtLeastOnce, "local")
        .await;
    publisher
        .publish("public/end", QoS::AtLeastOnce, "end")
        .await;

    // The local subscriber gets the $SYS message, nobody the denied one.
    let a_got: Vec<_> = on_a
        .until("public/end")
        .await
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(a_got, ["$SYS/test/local", "public/end"]);
    let b_got: Vec<_> = on_b
        .until("public/end")
        .await
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(b_got, ["public/end"]);
    assert_eq!(b.stats().received.get(), 1);
    assert_eq!(a.stats().kept_local.get(), 1);
    assert!(on_b.drain(Duration::from_millis(200)).await.is_empty());
}
