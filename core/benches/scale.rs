//! What a cluster costs as it grows: for 3 cores with 100 and 1 000 workers
//! and 10 cores with 1 000 workers, a quiet cluster (a perfect network, no
//! faults) that forms, then takes subscriptions now and then. Reports the
//! wall time, the simulated events, the control bytes each node sends and
//! receives per simulated second once the cluster formed, the heap one core
//! and one worker hold (measured: what the process frees when the simulator
//! drops that node), how long a new subscription takes to reach every core,
//! and the whole-list resyncs counted.
//!
//! `cargo bench -p mqtt-cluster-core --features sim --bench scale`
//! (`SCALE_SECONDS=600` for ten simulated minutes; `SCALE_ONLY=10x1000` for
//! one configuration).

use std::alloc::System;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cap::Cap;
use mqtt_cluster_core::sim::{Action, NetworkModel, Simulation, TrafficCount};
use mqtt_cluster_core::NodeId;

/// The system allocator, counting the bytes it holds for the process.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

mod cluster;

/// Timing as `mqtt-cluster simulate` sets it.
const TIMING: &str =
    "heartbeatInterval: 200ms\nsuspectTimeout: 1s\ndeadTimeout: 3s\nrequestTimeout: 1s\n";

struct Outcome {
    wall: Duration,
    events: u64,
    /// Bytes per second after the cluster formed: (per core, per worker).
    steady: (f64, f64),
    /// The same over the whole run.
    whole: (f64, f64),
    /// Heap freed when one core, then one worker, is dropped.
    memory: (usize, usize),
    propagation: (u64, u64, u64, usize),
    resyncs: (u64, u64),
}

fn per_node(
    traffic: &BTreeMap<String, TrafficCount>,
    before: &BTreeMap<String, TrafficCount>,
    role: &str,
    nodes: usize,
    seconds: f64,
) -> f64 {
    let bytes: u64 = traffic
        .iter()
        .filter(|(k, _)| k.starts_with(role))
        .map(|(k, v)| v.bytes - before.get(k).map_or(0, |b| b.bytes))
        .sum();
    bytes as f64 / nodes.max(1) as f64 / seconds.max(1.0)
}

fn run(cores: usize, workers: usize, seconds: u64) -> Outcome {
    let started = Instant::now();
    let mut sim = Simulation::new(1, NetworkModel::reliable());
    let (core_ids, worker_ids) = cluster::add_cluster(&mut sim, cores, workers, TIMING);
    let formed_at = seconds / 4;
    let second = Duration::from_secs(1);
    let mut formed = BTreeMap::new();
    let mut formed_ms = 0;
    for s in 0..seconds {
        if s == formed_at {
            let report = sim.report();
            formed = report.traffic;
            formed_ms = report.simulated_ms;
        }
        // After the cluster formed, a subscription every other second on
        // one worker or another: how fast each reaches every core.
        if s >= formed_at && s % 2 == 0 {
            let node = worker_ids[(s as usize * 37) % worker_ids.len()].clone();
            sim.act(Action::Subscribe {
                node,
                filter: format!("room/{s}/#"),
            })
            .expect("subscribe");
        }
        sim.run_for(second).expect("no violation");
    }
    let report = sim.report();
    let wall = started.elapsed();
    let steady_s = (report.simulated_ms - formed_ms) as f64 / 1000.0;
    let whole_s = report.simulated_ms as f64 / 1000.0;
    let steady = (
        per_node(&report.traffic, &formed, "core ", cores, steady_s),
        per_node(&report.traffic, &formed, "worker ", workers, steady_s),
    );
    let nothing = BTreeMap::new();
    let whole = (
        per_node(&report.traffic, &nothing, "core ", cores, whole_s),
        per_node(&report.traffic, &nothing, "worker ", workers, whole_s),
    );
    let resyncs = core_ids
        .iter()
        .chain(&worker_ids)
        .filter_map(|id| sim.node(id).map(|n| n.stats()))
        .fold((0, 0), |(m, r), s| {
            (m + s.member_resyncs, r + s.route_resyncs)
        });
    let mut dropped = |node: &NodeId| {
        let before = ALLOCATOR.allocated();
        sim.act(Action::Crash { node: node.clone() })
            .expect("crash");
        before.saturating_sub(ALLOCATOR.allocated())
    };
    let core_bytes = dropped(&core_ids[cores - 1]);
    let worker_bytes = dropped(&worker_ids[workers - 1]);
    let p = report.route_propagation;
    Outcome {
        wall,
        events: report.steps,
        steady,
        whole,
        memory: (core_bytes, worker_bytes),
        propagation: (p.p50_ms, p.p99_ms, p.max_ms, p.count),
        resyncs,
    }
}

fn main() {
    let seconds: u64 = std::env::var("SCALE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let only = std::env::var("SCALE_ONLY").ok();
    println!(
        "quiet clusters, {seconds} simulated s; bytes: request and response bodies and stream \
         frames a node sends or is answered, per simulated second"
    );
    println!(
        "{:<13} {:>8} {:>9} {:>22} {:>22} {:>18} {:>20} {:>10}",
        "cores x wkrs",
        "wall s",
        "events",
        "formed: core/wkr B/s",
        "whole: core/wkr B/s",
        "heap: core/wkr",
        "propagation ms",
        "resyncs"
    );
    for (cores, workers) in [(3, 100), (3, 1000), (10, 1000)] {
        let name = format!("{cores}x{workers}");
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let o = run(cores, workers, seconds);
        println!(
            "{:<13} {:>8.2} {:>9} {:>10.0} / {:>9.0} {:>10.0} / {:>9.0} {:>8} / {:>7} {:>5}/{:>5}/{:>5} n={:<3} {:>4}/{:<4}",
            name,
            o.wall.as_secs_f64(),
            o.events,
            o.steady.0,
            o.steady.1,
            o.whole.0,
            o.whole.1,
            format!("{} KiB", o.memory.0 / 1024),
            format!("{} KiB", o.memory.1 / 1024),
            o.propagation.0,
            o.propagation.1,
            o.propagation.2,
            o.propagation.3,
            o.resyncs.0,
            o.resyncs.1,
        );
    }
}
