//! `mqtt-cluster simulate` runs a faulty cluster on the simulator, reports,
//! and is deterministic: the same seed prints the same transcript hash.

use std::process::Command;

fn simulate(seed: &str) -> String {
    run_simulate(&[
        "--nodes",
        "12",
        "--seed",
        seed,
        "--duration",
        "20s",
        "--faults",
        "loss,partition,crash,flap",
    ])
}

/// `mqtt-cluster simulate` with `args`; its standard output, once it
/// exited successfully.
fn run_simulate(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mqtt-cluster"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "simulate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn hash(report: &str) -> &str {
    report
        .lines()
        .find_map(|l| l.strip_prefix("transcript hash"))
        .map(str::trim)
        .expect("a transcript hash line")
}

#[test]
fn simulate_reports_no_violation_and_is_deterministic() {
    let first = simulate("5");
    assert!(first.contains("violations        0"), "{first}");
    assert!(first.contains("delivered"), "{first}");
    assert_eq!(hash(&first), hash(&simulate("5")));
    assert_ne!(hash(&first), hash(&simulate("6")));
}

/// A quiet cluster (`--faults none --rate 0`) reports what keeping it
/// together costs: control traffic per node and how fast routes spread.
#[test]
fn a_quiet_cluster_reports_its_control_traffic() {
    let stdout = run_simulate(&[
        "--nodes",
        "20",
        "--cores",
        "2",
        "--seed",
        "3",
        "--duration",
        "20s",
        "--faults",
        "none",
        "--rate",
        "0",
    ]);
    assert!(stdout.contains("2 cores, 18 workers"), "{stdout}");
    assert!(stdout.contains("violations        0"), "{stdout}");
    assert!(stdout.contains("dropped           0"), "{stdout}");
    let heartbeat = stdout
        .lines()
        .find(|l| l.starts_with("/heartbeat"))
        .unwrap_or_else(|| panic!("a heartbeat row: {stdout}"));
    let per_worker: f64 = heartbeat
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a rate in {heartbeat}"));
    // heartbeatInterval is 200 ms here: five a second per worker, give or
    // take a retry.
    assert!((4.0..=6.0).contains(&per_worker), "{heartbeat}");
    assert!(
        stdout.contains("subscriptions reached every core"),
        "{stdout}"
    );
}

/// The steady per-worker figures of a quiet cluster of `workers` workers and
/// three cores: (all bytes per worker per second, all bytes per core per
/// second) after the cluster formed.
fn steady_cost(workers: usize, faults: &str) -> (f64, f64) {
    let nodes = (workers + 3).to_string();
    let stdout = run_simulate(&[
        "--nodes",
        &nodes,
        "--cores",
        "3",
        "--seed",
        "1",
        "--duration",
        "20s",
        "--faults",
        faults,
        "--rate",
        "0",
    ]);
    let steady = stdout
        .split_once("after the first quarter")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("a steady table: {stdout}"));
    let all = steady
        .lines()
        .find(|l| l.starts_with("all"))
        .unwrap_or_else(|| panic!("an all row: {stdout}"));
    let numbers: Vec<f64> = all
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("a number in {all}")))
        .collect();
    (numbers[1], numbers[0])
}

/// Keeping a quiet cluster together costs each worker the same whatever
/// the cluster's size, and each core no more per member: heartbeats that
/// agree carry digests only, never member lists.
#[test]
fn control_bytes_per_node_do_not_grow_with_the_cluster() {
    let (small_worker, small_core) = steady_cost(30, "none");
    let (large_worker, large_core) = steady_cost(300, "none");
    assert!(small_worker > 0.0 && small_core > 0.0);
    let ratio = large_worker / small_worker;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "per worker: {small_worker} B/s with 30 workers, {large_worker} with 300"
    );
    let ratio = large_core / small_core;
    assert!(
        ratio <= 1.2,
        "per core: {small_core} B/s with 30 workers, {large_core} with 300"
    );
}

/// With one node's links going down and up every second, members change
/// all the time and digests disagree at most heartbeats: the answers carry
/// the changes, whose size is the flapping node's, not the cluster's.
#[test]
fn control_bytes_per_worker_under_churn_do_not_grow_with_the_cluster() {
    let (small, _) = steady_cost(30, "flap");
    let (large, _) = steady_cost(300, "flap");
    assert!(
        large <= small * 1.2,
        "per worker: {small} B/s with 30 workers, {large} with 300"
    );
}
