//! The README's quickstart, run as written: the demo command, then the
//! `mosquitto_sub` / `mosquitto_pub` lines, with the Debian package
//! `mosquitto-clients`. Without those binaries the test says so loudly and
//! passes, except under CI (`CI` set), where it fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(binary: &str) -> bool {
    Command::new(binary)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The quickstart's commands from the README at the repository root: the
/// demo's arguments (after `--`), the subscribe line and the publish line.
fn quickstart() -> (Vec<String>, String, String) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let line = |start: &str| {
        readme
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("the README has a line starting with {start:?}"))
            .to_owned()
    };
    let demo = line("cargo run --release --manifest-path examples/rmqtt-broker/Cargo.toml");
    let args = demo.split_once(" -- ").expect("demo arguments after --").1;
    (
        args.split_whitespace().map(str::to_owned).collect(),
        line("mosquitto_sub"),
        line("mosquitto_pub"),
    )
}

#[test]
fn the_readme_quickstart_shows_a_message_crossing() {
    if !have("mosquitto_sub") || !have("mosquitto_pub") {
        assert!(
            std::env::var_os("CI").is_none(),
            "mosquitto_sub/mosquitto_pub are missing under CI: install mosquitto-clients"
        );
        eprintln!("\n!!!!!!!!\n!!! SKIPPED: mosquitto_sub / mosquitto_pub not found; install the Debian package mosquitto-clients to run the README quickstart smoke test\n!!!!!!!!\n");
        return;
    }
    let (demo_args, sub, publish) = quickstart();
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_mqtt-cluster-broker"))
            .args(&demo_args)
            .env("MQTT_CLUSTER_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The demo prints its ports once both brokers run and the worker has
    // joined; it prints the same commands as the README.
    let mut out = BufReader::new(demo.0.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the demo stopped early: {printed}"
        );
        printed.push_str(&line);
    }
    assert!(
        printed.contains(&sub) && printed.contains(&publish),
        "the demo prints the README's commands:\n{printed}"
    );

    // The README's subscriber, told to stop after one message.
    let subscriber = Killed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{sub} -C 1 -W 20"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its subscription reaches the other broker within a heartbeat or two:
    // publish as written until it has arrived.
    let start = Instant::now();
    let mut subscriber = subscriber;
    loop {
        let status = Command::new("sh").arg("-c").arg(&publish).status().unwrap();
        assert!(status.success(), "{publish}");
        if subscriber.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "nothing crossed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut got = String::new();
    std::io::Read::read_to_string(subscriber.0.stdout.as_mut().unwrap(), &mut got).unwrap();
    assert_eq!(got.trim(), "demo/hello hello across the cluster");
}
