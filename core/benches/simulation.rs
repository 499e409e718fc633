//! Simulator throughput: simulated events per second, and the wall time of
//! 100 nodes over 10 simulated minutes with faults.
//!
//! `cargo bench -p mqtt-cluster-core --features sim --bench simulation`
//!
//! Each event is a real input to a real node (HTTP mapping, signatures, JSON,
//! SSE), so the figure measures the whole core, not an empty loop. The small
//! cluster in the same run is the baseline: it shows how cost per event grows
//! with cluster size. The quiet runs (heartbeats only, a perfect network) have
//! the same shape as the `node_inputs` group of the forwarding bench, which
//! feeds the same inputs to the nodes without a simulator: the difference is
//! what the simulator itself costs per event.

use std::time::{Duration, Instant};

use mqtt_cluster_core::sim::{Action, NetworkModel, Report, Simulation};
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::NodeId;

mod cluster;

fn add_cluster(sim: &mut Simulation, cores: usize, workers: usize) -> (Vec<NodeId>, Vec<NodeId>) {
    cluster::add_cluster(sim, cores, workers, "")
}

/// `cores` cores and `workers` workers for `minutes` simulated minutes: ten
/// subscriptions, five publishes a second, a partition, and a core crash.
fn run(seed: u64, cores: usize, workers: usize, minutes: u64) -> (Report, Duration) {
    let started = Instant::now();
    let mut sim = Simulation::new(seed, NetworkModel::lossy(0.001, 0.001));
    let (cores_ids, workers_ids) = add_cluster(&mut sim, cores, workers);
    let step = |sim: &mut Simulation, d: Duration| sim.run_for(d).expect("no violation");
    step(&mut sim, Duration::from_secs(5));
    for (i, w) in workers_ids.iter().enumerate().take(10) {
        sim.act(Action::Subscribe {
            node: w.clone(),
            filter: format!("room/{i}/#"),
        })
        .expect("subscribe");
    }
    let seconds = minutes * 60;
    for s in 0..seconds {
        for k in 0..5 {
            let from = workers_ids[((s * 5 + k) as usize * 7) % workers_ids.len()].clone();
            sim.schedule(
                Duration::from_millis(s * 1000 + k * 200),
                Action::Publish {
                    node: from,
                    topic: format!("room/{}/t", (s + k) % 12),
                    payload: "x".repeat(100),
                    qos: if k % 2 == 0 {
                        Qos::AtMostOnce
                    } else {
                        Qos::AtLeastOnce
                    },
                },
            );
        }
    }
    let quarter = Duration::from_secs(seconds / 4);
    step(&mut sim, quarter);
    let cut: Vec<NodeId> = workers_ids.iter().take(workers / 5).cloned().collect();
    sim.act(Action::Partition {
        side_a: cut,
        side_b: cores_ids.clone(),
    })
    .expect("partition");
    step(&mut sim, Duration::from_secs(30));
    sim.act(Action::Heal).expect("heal");
    step(&mut sim, quarter);
    sim.act(Action::Crash {
        node: cores_ids[0].clone(),
    })
    .expect("crash");
    step(&mut sim, Duration::from_secs(60));
    sim.act(Action::Restart {
        node: cores_ids[0].clone(),
    })
    .expect("restart");
    let rest = Duration::from_secs(seconds).saturating_sub(quarter * 2 + Duration::from_secs(90));
    step(&mut sim, rest);
    (sim.report(), started.elapsed())
}

/// `cores` cores and `workers` workers for `seconds` simulated seconds with
/// no traffic and a perfect network: only timers, heartbeats and their
/// answers.
fn quiet(cores: usize, workers: usize, seconds: u64) -> (Report, Duration) {
    let started = Instant::now();
    let mut sim = Simulation::new(1, NetworkModel::reliable());
    add_cluster(&mut sim, cores, workers);
    sim.run_for(Duration::from_secs(seconds))
        .expect("no violation");
    (sim.report(), started.elapsed())
}

/// Runs `run` three times (the machines these run on are noisy) and prints
/// the events, the wall-time range and the events-per-second range.
fn measure(label: &str, run: impl Fn() -> (Report, Duration)) {
    let runs: Vec<(Report, Duration)> = (0..3).map(|_| run()).collect();
    let walls: Vec<f64> = runs.iter().map(|(_, wall)| wall.as_secs_f64()).collect();
    let (fastest, slowest) = walls
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), w| (lo.min(*w), hi.max(*w)));
    let report = &runs[0].0;
    // Every run of one seed is the same run: the same events.
    assert!(runs.iter().all(|(r, _)| r.steps == report.steps));
    let events = report.steps as f64;
    println!(
        "{label}: {} events in {fastest:.3}-{slowest:.3} s wall = {:.0}-{:.0} events/s; \
         {} published, {} delivered, {} dropped",
        report.steps,
        events / slowest,
        events / fastest,
        report.published,
        report.delivered,
        report.dropped
    );
}

/// One bench case: a run that reports what happened and how long it took.
type Case = dyn Fn() -> (Report, Duration);

fn main() {
    // `cargo bench` passes `--bench`; a plain run does the same work. Any
    // other argument is a filter: only cases whose label contains it run
    // (`... --bench simulation -- quiet`).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let chosen = |label: &str| filters.is_empty() || filters.iter().any(|f| label.contains(f));
    let cases: [(&str, Box<Case>); 4] = [
        (
            "quiet 1 core + 2 workers, 100 000 simulated seconds",
            Box::new(|| quiet(1, 2, 100_000)),
        ),
        (
            "quiet 3 cores + 97 workers, 1 000 simulated seconds",
            Box::new(|| quiet(3, 97, 1_000)),
        ),
        (
            "baseline 2 cores + 8 workers, 10 simulated minutes",
            Box::new(|| run(1, 2, 8, 10)),
        ),
        (
            "3 cores + 97 workers, 10 simulated minutes",
            Box::new(|| run(1, 3, 97, 10)),
        ),
    ];
    for (label, case) in &cases {
        if chosen(label) {
            measure(label, case);
        }
    }
}
