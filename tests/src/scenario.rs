//! Building blocks for simulation suites: configs for a cluster of named
//! cores and workers, a seeded chooser for the scenario's own random
//! choices, and a runner over many seeds that reports the first failure
//! with the command that replays it.

use std::time::Duration;

use mqtt_cluster_core::sim::{Action, NetworkModel, Report, Simulation, Violation};
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, NodeId};

/// Default timing of suite clusters: fast, so that seconds of simulated time
/// cover many heartbeats.
pub const TIMING: &str = "heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\n\
                          requestTimeout: 300ms\nretryBackoff: 50ms\nretryBackoffMax: 400ms\n";

/// How many seeds each scenario runs: `MQTT_CLUSTER_SEEDS`, else `default`.
/// `MQTT_CLUSTER_SEED` runs exactly that one seed (to replay a failure).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("MQTT_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("MQTT_CLUSTER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=count).collect()
}

/// Runs `scenario` once per seed; panics with the violation (seed, step and
/// replay command) of the first seed that breaks a guarantee.
pub fn run_seeds(
    name: &str,
    default_seeds: u64,
    scenario: impl Fn(&mut Simulation, &mut Chooser) -> Result<(), Violation>,
) {
    for seed in seeds(default_seeds) {
        let mut sim = Simulation::new(seed, NetworkModel::reliable())
            .with_replay_hint(format!(
                "cargo test -p mqtt-cluster-tests --test simulation {name} -- --exact"
            ))
            .with_step_limit(5_000_000);
        // `MQTT_CLUSTER_TRANSCRIPT=path`: a failing run's every event goes
        // to `path`, one per line, to read beside the replay.
        let transcript = std::env::var_os("MQTT_CLUSTER_TRANSCRIPT");
        if transcript.is_some() {
            sim = sim.record_transcript();
        }
        let mut chooser = Chooser::new(seed);
        if let Err(violation) = scenario(&mut sim, &mut chooser) {
            if let (Some(path), Some(lines)) = (&transcript, sim.transcript()) {
                if let Err(error) = std::fs::write(path, lines.join("\n") + "\n") {
                    eprintln!("transcript not written: {error}");
                }
            }
            panic!("{name}: {violation}");
        }
    }
}

/// The scenario's own random choices, from the seed.
#[derive(Debug, Clone)]
pub struct Chooser(u64);

impl Chooser {
    /// A chooser for `seed`.
    pub fn new(seed: u64) -> Self {
        Chooser(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A duration up to `max`.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.below(max.as_millis() as u64 + 1))
    }

    /// A QoS level.
    pub fn qos(&mut self) -> Qos {
        *self.pick(&[Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce])
    }
}

/// A cluster layout: cores `core1..=coreN` and workers `w1..=wM`, each
/// worker listing the cores starting from a different one.
pub struct Layout {
    /// The cores.
    pub cores: Vec<NodeId>,
    /// The workers.
    pub workers: Vec<NodeId>,
}

impl Layout {
    /// Every node, cores first.
    pub fn all(&self) -> Vec<NodeId> {
        self.cores.iter().chain(&self.workers).cloned().collect()
    }
}

/// The plugin.yaml of a node of the suites.
pub fn config(name: &str, core: bool, cores: usize, rotate: usize, extra: &str) -> Config {
    let mut urls: Vec<String> = (1..=cores)
        .map(|i| format!("http://core{i}:8884"))
        .collect();
    urls.rotate_left(rotate % cores.max(1));
    let clusters = urls.iter().map(|u| format!("- {u}\n")).collect::<String>();
    let yaml = format!(
        "core: {core}\nport: 8884\nnodeName: {name}\nsecret: simulated-cluster-secret\nclusters:\n{clusters}{TIMING}{extra}"
    );
    match Config::from_yaml_str(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("suite config for {name}: {e}\n{yaml}"),
    }
}

/// Adds `cores` cores and `workers` workers, all with `extra` appended to
/// their plugin.yaml.
pub fn build(sim: &mut Simulation, cores: usize, workers: usize, extra: &str) -> Layout {
    let cores: Vec<NodeId> = (1..=cores)
        .map(|i| sim.add_node(config(&format!("core{i}"), true, cores, i - 1, extra)))
        .collect();
    let n = cores.len();
    let workers = (1..=workers)
        .map(|i| sim.add_node(config(&format!("w{i}"), false, n, i - 1, extra)))
        .collect();
    Layout { cores, workers }
}

/// Subscriptions the scenarios draw from.
pub const FILTERS: &[&str] = &[
    "sensors/+/temp",
    "sensors/#",
    "alerts/fire",
    "$SYS/#",
    "#",
    "+/+/temp",
    "$share/g1/jobs/#",
    "$share/g2/jobs/+",
];

/// Topics the scenarios publish on.
pub const TOPICS: &[&str] = &[
    "sensors/1/temp",
    "sensors/2/hum",
    "alerts/fire",
    "$SYS/load",
    "jobs/a",
    "jobs/a/b",
    "misc",
];

/// Gives a few random nodes random subscriptions now.
pub fn subscribe_some(
    sim: &mut Simulation,
    choose: &mut Chooser,
    nodes: &[NodeId],
    count: usize,
) -> Result<(), Violation> {
    for _ in 0..count {
        let node = choose.pick(nodes).clone();
        let filter = (*choose.pick(FILTERS)).to_owned();
        sim.act(Action::Subscribe { node, filter })?;
    }
    Ok(())
}

/// Schedules `count` publishes from random nodes over `window`.
pub fn schedule_traffic(
    sim: &mut Simulation,
    choose: &mut Chooser,
    nodes: &[NodeId],
    count: usize,
    window: Duration,
) {
    for i in 0..count {
        let node = choose.pick(nodes).clone();
        let topic = (*choose.pick(TOPICS)).to_owned();
        let qos = choose.qos();
        let at = choose.up_to(window);
        sim.schedule(
            at,
            Action::Publish {
                node,
                topic,
                payload: format!("m{i}"),
                qos,
            },
        );
    }
}

/// Topics the scenarios keep retained messages on.
pub const RETAINED_TOPICS: &[&str] = &["state/a", "state/b", "state/c/d", "$SYS/state"];

/// Schedules `count` retained publishes from random nodes over `window`;
/// about one in four is a clear (an empty payload).
pub fn schedule_retained(
    sim: &mut Simulation,
    choose: &mut Chooser,
    nodes: &[NodeId],
    count: usize,
    window: Duration,
) {
    for i in 0..count {
        let node = choose.pick(nodes).clone();
        let topic = (*choose.pick(RETAINED_TOPICS)).to_owned();
        let payload = if choose.below(4) == 0 {
            String::new()
        } else {
            format!("r{i}")
        };
        let at = choose.up_to(window);
        sim.schedule(
            at,
            Action::Retain {
                node,
                topic,
                payload,
            },
        );
    }
}

/// Lets the cluster settle, then checks convergence and that nothing was
/// lost.
pub fn settle_and_check(sim: &mut Simulation) -> Result<Report, Violation> {
    sim.run_for(Duration::from_secs(8))?;
    sim.check_converged()?;
    sim.check_no_loss()?;
    Ok(sim.report())
}
