//! `mqtt-cluster simulate` runs a faulty cluster on the simulator, reports,
//! and is deterministic: the same seed prints the same transcript hash.

use std::process::Command;

fn simulate(seed: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mqtt-cluster"))
        .args([
            "simulate",
            "--nodes",
            "12",
            "--seed",
            seed,
            "--duration",
            "20s",
            "--faults",
            "loss,partition,crash,flap",
        ])
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
    let output = Command::new(env!("CARGO_BIN_EXE_mqtt-cluster"))
        .args([
            "simulate",
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
        ])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}");
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
