//! The promise of end-to-end confirmation over real HTTP, on each runtime:
//! the core that relays a worker's QoS 1 messages is killed while 10 000
//! of them cross it, some acknowledged by it and not yet passed on; after
//! the workers fail over, every one arrives exactly once and the publisher
//! is told each was confirmed.

use std::collections::BTreeSet;

use mqtt_cluster_core::forward::confirm::PublishId;
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Event, NodeId};
use mqtt_cluster_tests::runtimes::{eventually, Four, LiveNode, Mix, Runtime};

const MESSAGES: usize = 10_000;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn confirmed(node: &LiveNode) -> BTreeSet<PublishId> {
    node.events()
        .iter()
        .filter_map(|e| match e {
            Event::Confirmed { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn a_core_killed_while_qos1_messages_cross_it_loses_none(mix: Mix) {
    // Both workers start on core1, which relays every message.
    let Four {
        core1,
        core2: _core2,
        w1,
        w2,
    } = Four::start_on_core1(mix);
    w2.subscribe("bulk/#");
    eventually("w1 knows w2's route", || {
        w1.status().is_some_and(|s| s.routes >= 1)
    });
    let mut ids = BTreeSet::new();
    let mut held = 0;
    let mut arrived_before_the_kill = None;
    let mut core1 = Some(core1);
    for n in 0..MESSAGES {
        if n == 3_000 {
            // Kill the relaying core while messages are on their way
            // through it: some it acknowledged and had not passed on, some
            // on their way to it; the rest are published during the
            // failover.
            arrived_before_the_kill = Some(w2.deliveries().len());
            if let Some(core) = core1.take() {
                core.kill();
            }
        }
        let message = Message::new("bulk/data", format!("m{n:05}"))
            .unwrap()
            .with_qos(Qos::AtLeastOnce);
        let routing = w1.publish(message);
        assert_eq!(routing.remote, vec![id("w2")]);
        // Beyond the confirmation window the message waits at w1: taken,
        // not dropped.
        held += usize::from(routing.busy);
        assert!(ids.insert(routing.id.expect("a QoS 1 publish has an id")));
    }
    let arrived_before_the_kill = arrived_before_the_kill.unwrap_or_default();
    eventually("both workers fail over to core2", || {
        [&w1, &w2]
            .iter()
            .all(|w| w.status().is_some_and(|s| s.core == Some(id("core2"))))
    });
    eventually("every message arrives", || {
        w2.deliveries().len() >= MESSAGES
    });
    eventually("w1 is told every publish was confirmed", || {
        confirmed(&w1).len() >= MESSAGES
    });
    let mut payloads: Vec<Vec<u8>> = w2.deliveries().into_iter().map(|d| d.1).collect();
    let arrived = payloads.len();
    payloads.sort();
    payloads.dedup();
    assert_eq!(arrived, payloads.len(), "no message arrived twice");
    let expected: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|n| format!("m{n:05}").into_bytes())
        .collect();
    assert_eq!(payloads, expected, "every message arrived");
    assert_eq!(confirmed(&w1), ids);
    assert!(
        !w1.events()
            .iter()
            .any(|e| matches!(e, Event::NotConfirmed { .. })),
        "nothing reported unconfirmed"
    );
    let stats = w1.stats();
    assert_eq!(stats.confirmed, MESSAGES as u64);
    assert!(
        arrived_before_the_kill < 3_000,
        "the kill came while messages crossed core1 ({arrived_before_the_kill} had arrived)"
    );
    eprintln!(
        "{mix:?}: {arrived_before_the_kill} arrived before the kill, {} resent by w1, {held} held \
         at w1 by the window",
        stats.resent
    );
}

#[test]
fn tokio() {
    a_core_killed_while_qos1_messages_cross_it_loses_none(Mix {
        cores: Runtime::Tokio,
        workers: Runtime::Tokio,
    });
}

#[test]
fn blocking() {
    a_core_killed_while_qos1_messages_cross_it_loses_none(Mix {
        cores: Runtime::Blocking,
        workers: Runtime::Blocking,
    });
}
