//! Large messages never block a hop: batches are cut by bytes against the
//! receiver's `maxBodySize`, a message that can never fit one body is
//! refused at `publish` (typed error, counter, metric, event), and whatever
//! can still go goes. Every scenario runs with the suites' ordinary timing
//! and default expiry; deliveries are checked soon after the publishes, far
//! sooner than any retry or expiry would let a blocked hop recover.

use std::time::Duration;

use mqtt_cluster_core::node::{Message, PublishError};
use mqtt_cluster_core::sim::{Action, Simulation, Violation};
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Event, NodeId};
use mqtt_cluster_tests::scenario::{build, run_seeds};

const SEEDS: u64 = 5;

/// One core, a publishing worker and a subscribing worker, with `extra` in
/// every plugin.yaml; the subscription is in place when it returns.
fn cluster(sim: &mut Simulation, extra: &str) -> Result<(NodeId, NodeId), Violation> {
    let layout = build(sim, 1, 2, extra);
    sim.run_for(Duration::from_secs(1))?;
    let (publisher, subscriber) = (layout.workers[0].clone(), layout.workers[1].clone());
    sim.act(Action::Subscribe {
        node: subscriber.clone(),
        filter: "big/#".to_owned(),
    })?;
    sim.run_for(Duration::from_millis(500))?;
    Ok((publisher, subscriber))
}

fn publish(
    sim: &mut Simulation,
    node: &NodeId,
    topic: &str,
    payload: String,
) -> Result<(), Violation> {
    sim.act(Action::Publish {
        node: node.clone(),
        topic: topic.to_owned(),
        payload,
        qos: Qos::AtLeastOnce,
    })
}

/// The topics delivered to `node`, in order.
fn delivered(sim: &Simulation, node: &NodeId) -> Vec<String> {
    sim.deliveries_to(node)
        .iter()
        .map(|d| d.topic.as_str().to_owned())
        .collect()
}

fn small_topics() -> Vec<String> {
    (0..10).map(|i| format!("big/small/{i}")).collect()
}

fn fail(what: String) -> Violation {
    panic!("{what}")
}

#[test]
fn large_payloads_under_a_one_mebibyte_limit_do_not_hold_back_small_ones() {
    run_seeds(
        "large_payloads_under_a_one_mebibyte_limit_do_not_hold_back_small_ones",
        SEEDS,
        |sim, _| {
            let (publisher, subscriber) = cluster(sim, "maxBodySize: 1048576\n")?;
            // A first message takes the link's one request in flight, so
            // that everything after it is batched together.
            publish(sim, &publisher, "big/lead", "lead".to_owned())?;
            // Each fits a body on its own (600 KiB is 800 KiB in base64);
            // together, or with the small ones, they do not.
            publish(sim, &publisher, "big/a", "a".repeat(600 * 1024))?;
            publish(sim, &publisher, "big/b", "b".repeat(600 * 1024))?;
            for topic in small_topics() {
                publish(sim, &publisher, &topic, "small".to_owned())?;
            }
            sim.run_for(Duration::from_millis(500))?;
            let mut expected = vec![
                "big/lead".to_owned(),
                "big/a".to_owned(),
                "big/b".to_owned(),
            ];
            expected.extend(small_topics());
            assert_eq!(delivered(sim, &subscriber), expected);
            let payloads: Vec<usize> = sim
                .deliveries_to(&subscriber)
                .iter()
                .map(|d| d.payload.len())
                .collect();
            assert_eq!(&payloads[1..3], [600 * 1024, 600 * 1024]);
            sim.check_no_loss()
        },
    );
}

#[test]
fn a_900_kib_payload_under_a_one_mebibyte_limit_is_refused_and_the_rest_goes() {
    run_seeds(
        "a_900_kib_payload_under_a_one_mebibyte_limit_is_refused_and_the_rest_goes",
        SEEDS,
        |sim, _| {
            let (publisher, subscriber) = cluster(sim, "maxBodySize: 1048576\n")?;
            // 900 KiB is 1.2 MB in base64: no body of 1 MiB can carry it.
            let now = sim.now();
            let node = sim
                .node_mut(&publisher)
                .unwrap_or_else(|| panic!("publisher"));
            let limit = node.max_message_len();
            let big = Message::new("big/huge", "x".repeat(900 * 1024))
                .unwrap_or_else(|e| panic!("{e}"))
                .with_qos(Qos::AtLeastOnce);
            match node.publish(now, big) {
                Err(PublishError::TooLarge { size, limit: l }) => {
                    assert!(size > 1_228_800, "{size}");
                    assert_eq!(l, limit);
                    assert_eq!(limit, 1_048_576 - 65);
                }
                other => panic!("a 900 KiB payload under a 1 MiB limit: {other:?}"),
            }
            let refused = node.stats().publish_refused;
            assert_eq!(refused, 1);
            assert!(node
                .metrics()
                .contains("mqtt_cluster_publish_refused_total{reason=\"too_large\"} 1"));
            let mut saw_event = false;
            while let Some(event) = node.poll_event() {
                if let Event::PublishRefused {
                    topic,
                    size,
                    limit: l,
                } = event
                {
                    assert_eq!((topic.as_str(), l), ("big/huge", limit));
                    assert!(size > limit);
                    saw_event = true;
                }
            }
            assert!(saw_event, "no PublishRefused event");
            for topic in small_topics() {
                publish(sim, &publisher, &topic, "small".to_owned())?;
            }
            sim.run_for(Duration::from_millis(300))?;
            assert_eq!(delivered(sim, &subscriber), small_topics());
            sim.check_no_loss()
        },
    );
}

#[test]
fn two_hundred_fifty_six_payloads_of_twelve_kilobytes_go_with_defaults() {
    run_seeds(
        "two_hundred_fifty_six_payloads_of_twelve_kilobytes_go_with_defaults",
        SEEDS,
        |sim, _| {
            let (publisher, subscriber) = cluster(sim, "")?;
            // 256 × 16 KiB of base64: one batch of `batchSize` 256 would
            // be larger than the default 4 MiB body.
            publish(sim, &publisher, "big/lead", "lead".to_owned())?;
            let topics: Vec<String> = (0..256).map(|i| format!("big/{i}")).collect();
            for topic in &topics {
                publish(sim, &publisher, topic, "p".repeat(12 * 1024))?;
            }
            sim.run_for(Duration::from_millis(500))?;
            let mut expected = vec!["big/lead".to_owned()];
            expected.extend(topics);
            assert_eq!(delivered(sim, &subscriber), expected);
            sim.check_no_loss()
        },
    );
}

#[test]
fn a_payload_of_3_1_mib_is_refused_with_defaults_and_nothing_else_waits() {
    run_seeds(
        "a_payload_of_3_1_mib_is_refused_with_defaults_and_nothing_else_waits",
        SEEDS,
        |sim, _| {
            let (publisher, subscriber) = cluster(sim, "")?;
            // A first message takes the link's one request in flight, so
            // that everything after it is batched together.
            publish(sim, &publisher, "big/lead", "lead".to_owned())?;
            // Two payloads that fit one body each, but not together.
            publish(sim, &publisher, "big/first", "f".repeat(2_000_000))?;
            let now = sim.now();
            let node = sim
                .node_mut(&publisher)
                .unwrap_or_else(|| panic!("publisher"));
            let huge = Message::new("big/huge", vec![7u8; 3_250_586])
                .unwrap_or_else(|e| panic!("{e}"))
                .with_qos(Qos::AtLeastOnce);
            let refused = node.publish(now, huge);
            if !matches!(refused, Err(PublishError::TooLarge { .. })) {
                return Err(fail(format!("3.1 MiB with defaults: {refused:?}")));
            }
            assert_eq!(node.stats().publish_refused, 1);
            publish(sim, &publisher, "big/second", "s".repeat(2_000_000))?;
            for topic in small_topics() {
                publish(sim, &publisher, &topic, "small".to_owned())?;
            }
            sim.run_for(Duration::from_millis(500))?;
            let mut expected = vec![
                "big/lead".to_owned(),
                "big/first".to_owned(),
                "big/second".to_owned(),
            ];
            expected.extend(small_topics());
            assert_eq!(delivered(sim, &subscriber), expected);
            sim.check_no_loss()
        },
    );
}

#[test]
fn a_message_only_for_local_subscribers_is_not_refused_for_its_size() {
    run_seeds(
        "a_message_only_for_local_subscribers_is_not_refused_for_its_size",
        1,
        |sim, _| {
            let (publisher, _) = cluster(sim, "maxBodySize: 1048576\n")?;
            let now = sim.now();
            let node = sim
                .node_mut(&publisher)
                .unwrap_or_else(|| panic!("publisher"));
            node.subscribe(now, "local/#")
                .unwrap_or_else(|e| panic!("{e}"));
            let routing = node
                .publish(
                    now,
                    Message::new("local/x", "x".repeat(2 << 20)).unwrap_or_else(|e| panic!("{e}")),
                )
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(routing.local && routing.remote.is_empty());
            assert_eq!(node.stats().publish_refused, 0);
            Ok(())
        },
    );
}

#[test]
fn a_member_list_and_routing_table_larger_than_one_body_sync() {
    run_seeds(
        "a_member_list_and_routing_table_larger_than_one_body_sync",
        SEEDS,
        |sim, choose| {
            // With bodies of 1 KiB, the 18 member records take about twice
            // that, the routing table several times, and one worker's own
            // routes alone more than a body.
            let layout = build(sim, 2, 16, "maxBodySize: 1024\n");
            sim.run_for(Duration::from_secs(2))?;
            for (i, worker) in layout.workers.iter().enumerate() {
                for filter in ["sensors/+/temp", "alerts/#", "jobs/a"] {
                    sim.act(Action::Subscribe {
                        node: worker.clone(),
                        filter: format!("w{i}/{filter}"),
                    })?;
                }
            }
            // One subscription at a time, so that the worker's own updates
            // to its core stay small; its whole table does not.
            let wide = layout.workers[0].clone();
            for i in 0..60 {
                sim.act(Action::Subscribe {
                    node: wide.clone(),
                    filter: format!("wide/device-{i:04}/#"),
                })?;
                sim.run_for(Duration::from_millis(20))?;
            }
            sim.run_for(Duration::from_secs(3))?;
            sim.check_converged()?;
            let core = layout.cores[0].clone();
            let status = sim.node(&core).map(|n| n.status());
            let routes = status.as_ref().map_or(0, |s| s.routes);
            assert_eq!(routes, 16 * 3 + 60);

            // A core restarted empty learns everything again: its register
            // answers, and its workers' hellos, come in pages.
            let victim = choose.pick(&layout.cores).clone();
            sim.act(Action::Crash {
                node: victim.clone(),
            })?;
            sim.run_for(Duration::from_secs(2))?;
            sim.act(Action::Restart { node: victim })?;
            sim.run_for(Duration::from_secs(5))?;
            sim.check_converged()?;
            sim.act(Action::Publish {
                node: layout.workers[5].clone(),
                topic: "wide/device-0042/x".to_owned(),
                payload: "hello".to_owned(),
                qos: Qos::AtLeastOnce,
            })?;
            sim.run_for(Duration::from_millis(500))?;
            assert_eq!(delivered(sim, &wide), ["wide/device-0042/x"]);
            sim.check_no_loss()
        },
    );
}
