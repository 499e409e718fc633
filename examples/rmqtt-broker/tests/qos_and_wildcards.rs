//! Row 1: QoS 0, 1 and 2 reach remote subscribers at min(publish, subscription)
//! QoS, each exactly once; `+` and `#` match across brokers; `#` does not
//! match `$`-topics.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_qos_crosses_once_at_the_lower_qos_and_wildcards_match() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);

    let mut plus = connect(b, "plus").await;
    plus.subscribe("t/+/x", QoS::ExactlyOnce).await;
    let mut hash = connect(b, "hash").await;
    hash.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut all = connect(b, "all").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    let mut dollar = connect(b, "dollar").await;
    dollar.subscribe("$app/+", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;

    let publisher = connect(a, "publisher").await;
    publisher.publish("t/a/x", QoS::AtMostOnce, "q0").await;
    publisher.publish("t/a/x", QoS::AtLeastOnce, "q1").await;
    publisher.publish("t/a/x", QoS::ExactlyOnce, "q2").await;
    publisher.publish("t/a/y", QoS::ExactlyOnce, "y2").await;
    publisher
        .publish("$app/x", QoS::AtLeastOnce, "dollar")
        .await;
    // Last, on a topic every subscriber matches: messages from one broker
    // arrive in order, so what came before the marker is everything.
    publisher.publish("t/end/x", QoS::AtLeastOnce, "end").await;
    publisher.publish("$app/end", QoS::AtLeastOnce, "end").await;

    let s = |t: &str, p: &str, q| (t.to_owned(), p.to_owned(), q);
    assert_eq!(
        plus.until("t/end/x").await,
        [
            s("t/a/x", "q0", QoS::AtMostOnce),
            s("t/a/x", "q1", QoS::AtLeastOnce),
            s("t/a/x", "q2", QoS::ExactlyOnce),
            s("t/end/x", "end", QoS::AtLeastOnce),
        ]
    );
    assert_eq!(
        hash.until("t/end/x").await,
        [
            s("t/a/x", "q0", QoS::AtMostOnce),
            s("t/a/x", "q1", QoS::AtLeastOnce),
            s("t/a/x", "q2", QoS::AtLeastOnce),
            s("t/a/y", "y2", QoS::AtLeastOnce),
            s("t/end/x", "end", QoS::AtLeastOnce),
        ]
    );
    // `#` takes everything at QoS 0 except the `$`-topic.
    assert_eq!(
        all.until("t/end/x").await,
        [
            s("t/a/x", "q0", QoS::AtMostOnce),
            s("t/a/x", "q1", QoS::AtMostOnce),
            s("t/a/x", "q2", QoS::AtMostOnce),
            s("t/a/y", "y2", QoS::AtMostOnce),
            s("t/end/x", "end", QoS::AtMostOnce),
        ]
    );
    // The `$`-topic did cross, to the filter that names it.
    assert_eq!(
        dollar.until("$app/end").await,
        [
            s("$app/x", "dollar", QoS::AtLeastOnce),
            s("$app/end", "end", QoS::AtLeastOnce)
        ]
    );
    // Nothing arrives twice.
    for client in [&mut plus, &mut hash, &mut all, &mut dollar] {
        let more = client.drain(std::time::Duration::from_millis(300)).await;
        assert!(more.is_empty(), "duplicates: {more:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_qos1_crosses_without_loss() {
    let brokers = cluster(1).await;
    let (a, b) = (&brokers[0], &brokers[1]);
    let mut sub = connect(b, "sub").await;
    sub.subscribe("burst/#", QoS::AtLeastOnce).await;
    settle(&[a, b]).await;

    // Sent without waiting for each acknowledgement: more than the
    // library's and rmqtt's default queue lengths (1024 and 1000).
    let publisher = connect(a, "publisher").await;
    let n = 3000;
    for i in 0..n {
        publisher
            .client
            .publish(
                "burst/x",
                QoS::AtLeastOnce,
                false,
                i.to_string().into_bytes(),
            )
            .await
            .unwrap();
    }
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let p = sub.recv().await;
        got.push(
            String::from_utf8_lossy(&p.payload)
                .parse::<usize>()
                .unwrap(),
        );
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert_eq!(a.stats().publish_errors.get(), 0);
    assert_eq!(
        b.stats().cluster_dropped.get() + a.stats().cluster_dropped.get(),
        0
    );
}
