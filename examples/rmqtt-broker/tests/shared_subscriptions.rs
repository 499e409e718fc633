//! Row 4: `$share/g/f` across brokers: each message goes to exactly one
//! member of the group, cluster-wide.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_reaches_one_member_of_the_group_cluster_wide() {
    let brokers = cluster(2).await;
    let (a, b, c) = (&brokers[0], &brokers[1], &brokers[2]);
    let mut members = Vec::new();
    for (i, broker) in [a, b, c].into_iter().enumerate() {
        let member = connect(broker, &format!("member-{i}")).await;
        member.subscribe("$share/g/s/#", QoS::AtLeastOnce).await;
        members.push(member);
    }
    // B also holds an ordinary subscription on the same filter: it gets
    // every message, and does not make B's member get them all.
    let mut plain = connect(b, "plain").await;
    plain.subscribe("s/#", QoS::AtLeastOnce).await;
    settle(&[a, b, c]).await;

    let from_a = connect(a, "publisher-a").await;
    let from_b = connect(b, "publisher-b").await;
    let n = 30;
    for i in 0..n {
        let publisher = if i % 2 == 0 { &from_a } else { &from_b };
        publisher
            .publish(&format!("s/{i}"), QoS::AtLeastOnce, &i.to_string())
            .await;
    }

    let mut plain_got = BTreeSet::new();
    while plain_got.len() < n {
        plain_got.insert(String::from_utf8_lossy(&plain.recv().await.payload).into_owned());
    }
    let mut per_member = vec![Vec::new(); members.len()];
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while total < n && tokio::time::Instant::now() < deadline {
        for (i, member) in members.iter_mut().enumerate() {
            for p in member.drain(Duration::from_millis(50)).await {
                per_member[i].push(String::from_utf8_lossy(&p.payload).into_owned());
                total += 1;
            }
        }
    }
    // Stragglers would be duplicates.
    for (i, member) in members.iter_mut().enumerate() {
        for p in member.drain(Duration::from_millis(300)).await {
            per_member[i].push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    let all: Vec<&String> = per_member.iter().flatten().collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        n,
        "each message once in the group: {per_member:?}"
    );
    assert_eq!(distinct.len(), n, "no message twice: {per_member:?}");
    assert!(
        per_member.iter().all(|got| !got.is_empty()),
        "every broker's member takes turns: {per_member:?}"
    );
    assert!(plain.drain(Duration::from_millis(200)).await.is_empty());
}
