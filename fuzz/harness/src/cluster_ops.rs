//! Operation sequences on a small simulated cluster (two cores, two or
//! three workers, short timings): subscriptions, publishes, partitions,
//! crashes, restarts, departures, a lossy network and slow readers. The
//! simulator checks its invariants at every step; at the end the faults
//! stop (heal, reliable network, every node running again) and after a
//! quiet period all members must agree ([`Simulation::check_converged`]).

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use mqtt_cluster_core::sim::{Action, NetworkModel, Simulation, Violation};
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, NodeId, Phase};

use crate::fixture::{SECRET, TIMING};

/// Filters the operations subscribe to (all valid).
const FILTERS: [&str; 8] = [
    "sensors/+/temp",
    "sensors/#",
    "alerts/fire",
    "$SYS/#",
    "#",
    "+/+/temp",
    "$share/g1/jobs/#",
    "$share/g2/jobs/+",
];
/// Topics the operations publish on (all valid).
const TOPICS: [&str; 7] = [
    "sensors/1/temp",
    "sensors/2/hum",
    "alerts/fire",
    "$SYS/load",
    "jobs/a",
    "jobs/a/b",
    "misc",
];
/// The most operations one input runs.
const MAX_OPS: usize = 64;
/// The most simulated time the operations may take, in milliseconds.
const MAX_MS: u64 = 30_000;
/// The quiet period before the final convergence check.
const QUIET: Duration = Duration::from_secs(8);

#[derive(Arbitrary, Debug)]
enum Op {
    Subscribe {
        node: u8,
        filter: u8,
    },
    Unsubscribe {
        node: u8,
        filter: u8,
    },
    Publish {
        node: u8,
        topic: u8,
        qos: u8,
        payload: u8,
    },
    Partition {
        mask: u8,
    },
    Heal,
    Crash {
        node: u8,
    },
    Restart {
        node: u8,
    },
    Leave {
        node: u8,
    },
    SlowReader {
        node: u8,
        ms: u8,
    },
    Network {
        drop: u8,
        duplicate: u8,
    },
    Reliable,
    Advance(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    three_workers: bool,
    ops: Vec<Op>,
}

fn config(name: &str, core: bool, rotate: bool) -> Config {
    let clusters = if rotate {
        "[http://core2:8884, http://core1:8884]"
    } else {
        "[http://core1:8884, http://core2:8884]"
    };
    let yaml = format!(
        "core: {core}\nport: 8884\nnodeName: {name}\nsecret: {SECRET}\nclusters: {clusters}\n\
         queueLength: 64\nmaxInFlight: 32\nbatchSize: 16\n{TIMING}"
    );
    match Config::from_yaml_str(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("cluster_ops config for {name}: {e}"),
    }
}

fn pick(nodes: &[NodeId], i: u8) -> NodeId {
    nodes[usize::from(i) % nodes.len()].clone()
}

fn probability(p: u8) -> f64 {
    // At most 25%: beyond that little gets through at all.
    f64::from(p) / 1020.0
}

fn scenario(sim: &mut Simulation, input: &Input) -> Result<(), Violation> {
    let mut nodes = vec![
        sim.add_node(config("core1", true, false)),
        sim.add_node(config("core2", true, true)),
        sim.add_node(config("w1", false, false)),
        sim.add_node(config("w2", false, true)),
    ];
    if input.three_workers {
        nodes.push(sim.add_node(config("w3", false, false)));
    }
    sim.run_for(Duration::from_millis(500))?;
    let mut elapsed = 0u64;
    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Subscribe { node, filter } => sim.act(Action::Subscribe {
                node: pick(&nodes, *node),
                filter: FILTERS[usize::from(*filter) % FILTERS.len()].to_owned(),
            })?,
            Op::Unsubscribe { node, filter } => sim.act(Action::Unsubscribe {
                node: pick(&nodes, *node),
                filter: FILTERS[usize::from(*filter) % FILTERS.len()].to_owned(),
            })?,
            Op::Publish {
                node,
                topic,
                qos,
                payload,
            } => sim.act(Action::Publish {
                node: pick(&nodes, *node),
                topic: TOPICS[usize::from(*topic) % TOPICS.len()].to_owned(),
                payload: format!("p{payload}"),
                qos: Qos::from_u8(qos % 3).unwrap_or_default(),
            })?,
            Op::Partition { mask } => {
                let on_side_a = |i: usize| mask & (1 << i) != 0;
                let side_a: Vec<NodeId> = nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| on_side_a(*i))
                    .map(|(_, n)| n.clone())
                    .collect();
                let side_b: Vec<NodeId> = nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !on_side_a(*i))
                    .map(|(_, n)| n.clone())
                    .collect();
                if !side_a.is_empty() && !side_b.is_empty() {
                    sim.act(Action::Partition { side_a, side_b })?;
                }
            }
            Op::Heal => sim.act(Action::Heal)?,
            Op::Crash { node } => sim.act(Action::Crash {
                node: pick(&nodes, *node),
            })?,
            Op::Restart { node } => sim.act(Action::Restart {
                node: pick(&nodes, *node),
            })?,
            Op::Leave { node } => sim.act(Action::Leave {
                node: pick(&nodes, *node),
            })?,
            Op::SlowReader { node, ms } => sim.act(Action::SlowReader {
                node: pick(&nodes, *node),
                delay: Duration::from_millis(u64::from(*ms)),
            })?,
            Op::Network { drop, duplicate } => sim.set_network(NetworkModel::lossy(
                probability(*drop),
                probability(*duplicate),
            )),
            Op::Reliable => sim.set_network(NetworkModel::reliable()),
            Op::Advance(ms) => {
                let ms = (u64::from(*ms) % 2_000 + 1).min(MAX_MS.saturating_sub(elapsed));
                elapsed += ms;
                sim.run_for(Duration::from_millis(ms))?;
            }
        }
    }
    // The faults stop: every link works, the network is reliable, readers
    // keep up, and every node that crashed or left runs again.
    sim.set_network(NetworkModel::reliable());
    sim.act(Action::Heal)?;
    nodes.sort();
    for node in &nodes {
        sim.act(Action::SlowReader {
            node: node.clone(),
            delay: Duration::ZERO,
        })?;
        let running = sim.node(node).is_some_and(|n| n.phase() == Phase::Running);
        if !running {
            sim.act(Action::Crash { node: node.clone() })?;
            sim.act(Action::Restart { node: node.clone() })?;
        }
    }
    sim.run_for(QUIET)?;
    sim.check_converged()
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut sim = Simulation::new(input.seed, NetworkModel::reliable())
        .with_replay_hint("(replay the fuzz input with the cluster_ops target)")
        .with_step_limit(2_000_000);
    if let Err(violation) = scenario(&mut sim, &input) {
        panic!("cluster_ops: {violation}");
    }
}
