//! Clusters the simulation benches build: cores `core1..` and workers
//! `w1..`, each worker listing the cores from a different one.

use mqtt_cluster_core::sim::Simulation;
use mqtt_cluster_core::{Config, NodeId};

/// The plugin.yaml of a bench node; `extra` is appended.
pub(crate) fn config(name: &str, core: bool, cores: usize, rotate: usize, extra: &str) -> Config {
    let mut urls: Vec<String> = (1..=cores)
        .map(|i| format!("http://core{i}:8884"))
        .collect();
    urls.rotate_left(rotate % cores);
    let yaml = format!(
        "core: {core}\nnodeName: {name}\nsecret: bench-secret-bench\nclusters: [{}]\n{extra}",
        urls.join(", ")
    );
    Config::from_yaml_str(&yaml).expect("bench config")
}

/// Adds `core1..` and `w1..`, each worker starting at a different core;
/// returns the cores' and the workers' ids.
pub(crate) fn add_cluster(
    sim: &mut Simulation,
    cores: usize,
    workers: usize,
    extra: &str,
) -> (Vec<NodeId>, Vec<NodeId>) {
    let cores_ids = (1..=cores)
        .map(|i| sim.add_node(config(&format!("core{i}"), true, cores, i - 1, extra)))
        .collect();
    let workers_ids = (1..=workers)
        .map(|i| sim.add_node(config(&format!("w{i}"), false, cores, i, extra)))
        .collect();
    (cores_ids, workers_ids)
}
