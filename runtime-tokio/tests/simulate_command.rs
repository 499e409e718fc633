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
