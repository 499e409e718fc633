//! Each node says whether its view agrees with every core's: converged once
//! a cluster formed, not converged while a change spreads or a core is
//! silent, converged again after; events mark each turn and `/metrics`
//! measures how long divergence lasted and how long routes took to reach
//! every core.

use std::collections::BTreeSet;
use std::time::Duration;

use mqtt_cluster_core::{Config, Event, NodeId, Phase};
use mqtt_cluster_tests::pump::PumpedCluster;

const SECRET: &str = "correct-horse-battery-staple";
/// Three heartbeat intervals: a change reaches every core and the answers
/// come back within it on a healthy network.
const BOUND: Duration = Duration::from_millis(300);

fn core_config(name: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: true\nhost: 0.0.0.0\nport: 8884\n\
         clusters:\n- http://core1:8884\n- http://core2:8884\n- http://core3:8884\n\
         nodeName: {name}\nsecret: {SECRET}\n\
         heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\n"
    ))
    .unwrap()
}

fn worker_config(name: &str, first: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: false\nclusters:\n- http://{first}:8884\n\
         nodeName: {name}\nsecret: {SECRET}\n\
         heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\n"
    ))
    .unwrap()
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn formed() -> PumpedCluster {
    let mut cluster = PumpedCluster::new();
    for (i, core) in ["core1", "core2", "core3"].iter().enumerate() {
        cluster.add(core_config(core), i as u64 + 1);
    }
    cluster.add(worker_config("w1", "core1"), 11);
    cluster.add(worker_config("w2", "core2"), 12);
    cluster.run_for(Duration::from_secs(2));
    cluster
}

/// The nodes that say they are converged.
fn converged(cluster: &PumpedCluster) -> BTreeSet<NodeId> {
    cluster
        .statuses()
        .into_iter()
        .filter(|(_, s)| s.phase == Phase::Running && s.convergence.converged)
        .map(|(id, _)| id)
        .collect()
}

fn running(cluster: &PumpedCluster) -> BTreeSet<NodeId> {
    cluster
        .statuses()
        .into_iter()
        .filter(|(_, s)| s.phase == Phase::Running)
        .map(|(id, _)| id)
        .collect()
}

/// When every running node says converged, their views are the same.
fn assert_honest(cluster: &PumpedCluster) {
    let statuses = cluster.statuses();
    let live: Vec<_> = statuses
        .values()
        .filter(|s| s.phase == Phase::Running)
        .collect();
    if live.iter().all(|s| s.convergence.converged) {
        let members: BTreeSet<&String> = live.iter().map(|s| &s.members_digest).collect();
        let routes: BTreeSet<&String> = live.iter().map(|s| &s.routes_digest).collect();
        assert_eq!(members.len(), 1, "all say converged, members differ");
        assert_eq!(routes.len(), 1, "all say converged, routes differ");
    }
}

fn run_checking(cluster: &mut PumpedCluster, total: Duration) {
    let step = Duration::from_millis(10);
    let mut spent = Duration::ZERO;
    while spent < total {
        cluster.run_for(step);
        assert_honest(cluster);
        spent += step;
    }
}

/// The value of an unlabelled sample in `/metrics` text.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
}

#[test]
fn a_formed_cluster_is_converged_and_says_so() {
    let cluster = formed();
    assert_eq!(converged(&cluster), running(&cluster));
    for node in running(&cluster) {
        let events = cluster.events(&node);
        assert!(
            events.iter().any(|e| matches!(e, Event::Converged { .. })),
            "{node} said it converged: {events:?}"
        );
        let status = &cluster.statuses()[&node];
        assert!(status.convergence.differing.is_empty());
    }
}

#[test]
fn a_subscription_diverges_the_views_until_every_core_holds_it() {
    let mut cluster = formed();
    let w1 = id("w1");
    let now = cluster.now();
    cluster.node_mut(&w1).subscribe(now, "plant/#").unwrap();
    // The change is not everywhere yet: its own node knows it is not done.
    assert!(!cluster.statuses()[&w1].convergence.converged);
    run_checking(&mut cluster, BOUND);
    assert_eq!(
        converged(&cluster),
        running(&cluster),
        "converged again within {BOUND:?}"
    );
    let w1_events = cluster.events(&w1);
    assert!(w1_events
        .iter()
        .any(|e| matches!(e, Event::Diverged { differing } if differing == &vec![id("core1")])));
    // core1 measured how long the route took to reach every core.
    let metrics = cluster.node(&id("core1")).metrics();
    let count = sample(&metrics, "mqtt_cluster_route_propagation_seconds_count");
    assert!(count >= 1, "{metrics}");
}

#[test]
fn a_silent_core_is_named_until_it_is_declared_dead() {
    let mut cluster = formed();
    cluster.kill(&id("core3"));
    run_checking(&mut cluster, Duration::from_millis(500));
    // Suspect: the others cannot vouch for its view.
    let status = &cluster.statuses()[&id("core1")];
    assert!(!status.convergence.converged);
    assert_eq!(status.convergence.differing, vec![id("core3")]);
    // Once it is dead it no longer counts, and the rest agree again.
    run_checking(&mut cluster, Duration::from_secs(2));
    assert_eq!(converged(&cluster), running(&cluster));
    let metrics = cluster.node(&id("core1")).metrics();
    assert!(metrics.contains("mqtt_cluster_converged 1"), "{metrics}");
    let count = sample(&metrics, "mqtt_cluster_divergence_seconds_count");
    assert!(count >= 2, "formation and the fault: {metrics}");
}

#[test]
fn a_worker_names_the_cores_its_core_differs_from() {
    let mut cluster = formed();
    cluster.kill(&id("core3"));
    // Past suspectTimeout: core1 and core2 cannot vouch for core3's view,
    // and their workers, which agree with their cores, hear it from them.
    run_checking(&mut cluster, Duration::from_millis(500));
    for worker in ["w1", "w2"] {
        let status = &cluster.statuses()[&id(worker)];
        assert!(!status.convergence.converged, "{worker}");
        assert_eq!(status.convergence.differing, vec![id("core3")], "{worker}");
    }
    run_checking(&mut cluster, Duration::from_secs(2));
    assert_eq!(converged(&cluster), running(&cluster));
}
