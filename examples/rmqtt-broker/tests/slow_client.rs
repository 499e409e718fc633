//! A client too slow for what it subscribed to: rmqtt drops what its
//! session cannot hold, and the broker counts every such drop.

mod common;

use common::*;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_slow_client_cannot_take_is_counted_not_lost_silently() {
    const QUEUE: usize = 5;
    const PUBLISHED: u64 = 50;
    let (broker, _) = core_tuned("a", "", |settings| {
        settings.max_mqueue_len = QUEUE;
        settings.max_inflight = 1;
    })
    .await;

    // Subscribes, then stops reading: it never acknowledges the one
    // message rmqtt sends it, so the rest wait in its session's queue.
    let (slow, mut events) = AsyncClient::new(options(&broker, "slow"), 10);
    slow.subscribe("slow/#", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.unwrap() {
            break;
        }
    }
    settle(&[&broker]).await;

    let publisher = connect(&broker, "publisher").await;
    for i in 0..PUBLISHED {
        publisher
            .publish("slow/x", QoS::AtLeastOnce, &i.to_string())
            .await;
    }
    // One in flight, QUEUE waiting, every other one dropped and counted.
    let dropped = PUBLISHED - 1 - QUEUE as u64;
    wait_count("session drops", dropped, || {
        broker.stats().session_dropped.get()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(broker.stats().session_dropped.get(), dropped);
    assert_eq!(broker.stats().cluster_dropped.get(), 0);
    drop(events);
    broker.shutdown().await;
}
