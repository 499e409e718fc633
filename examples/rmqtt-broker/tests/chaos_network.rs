//! The chaos suite's network: brokers in their own network namespaces on
//! a bridge, an MQTT client in another. A message crosses from a worker
//! broker to a core broker; a partition (blackhole routes) stops it, and
//! the worker's failure shows in the core's member list; healing brings it
//! back; nothing is left behind. Needs root and `ip`: without them the test
//! says why and checks nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mqtt_cluster_rmqtt_broker::chaos::netns::{self, Network};

const PREFIX: &str = "mcnet";
const SECRET: &str = "chaos-network-test-secret";
const TIMINGS: &str = "heartbeatInterval: 100ms\nsuspectTimeout: 500ms\ndeadTimeout: 1500ms\n";

/// A broker in a namespace, killed when dropped.
struct Broker(Child);

impl Broker {
    fn start(network: &Network, host: &str, config: &Path) -> Broker {
        let address = network.host(host).unwrap().address;
        let mut child = network
            .command(host, env!("CARGO_BIN_EXE_mqtt-cluster-broker"))
            .unwrap()
            .arg("--config")
            .arg(config)
            .args(["--mqtt", &format!("{address}:1883"), "--threads", "1"])
            .env("MQTT_CLUSTER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the broker starts in its namespace");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("MQTT "), "unexpected output {line:?}");
        Broker(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One QoS 1 message from a publisher on `from` to a subscriber on `to`,
/// by the load generator run in the clients' namespace: whether it came.
fn crosses(network: &Network, from: &str, to: &str) -> bool {
    let at = |host: &str| format!("{}:1883", network.host(host).unwrap().address);
    let output = network
        .command("clients", env!("CARGO_BIN_EXE_mqtt-cluster-bench"))
        .unwrap()
        .args(["--publish-on", &at(from), "--subscribe-on", &at(to)])
        .args(["--qos", "1", "--rate", "20", "--duration", "1s"])
        .args(["--settle", "1s", "--drain", "2s"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    report.is_some_and(|r| r["sent"].as_u64() > Some(0) && r["lost"].as_u64() == Some(0))
}

fn namespaces_left() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{PREFIX}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn brokers_in_namespaces_talk_until_partitioned_and_again_once_healed() {
    if let Some(why) = netns::unavailable() {
        eprintln!("skipped: network namespaces are not available here ({why})");
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("mqtt-cluster-chaos-network-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut network = Network::create(PREFIX, 213, &["core", "worker", "clients"]).unwrap();
    let core = network.host("core").unwrap().address;
    let url = format!("http://{core}:8884");
    let core_yaml = dir.join("core.yaml");
    std::fs::write(
        &core_yaml,
        format!(
            "core: true\nhost: {core}\nport: 8884\nnodeName: core\nclusters: [{url}]\nsecret: {SECRET}\n{TIMINGS}"
        ),
    )
    .unwrap();
    let worker_yaml = dir.join("worker.yaml");
    std::fs::write(
        &worker_yaml,
        format!("core: false\nnodeName: worker\nclusters: [{url}]\nsecret: {SECRET}\n{TIMINGS}"),
    )
    .unwrap();
    {
        let _core = Broker::start(&network, "core", &core_yaml);
        let _worker = Broker::start(&network, "worker", &worker_yaml);
        let started = Instant::now();
        while !crosses(&network, "worker", "core") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no message crossed from the worker to the core"
            );
        }

        network.partition(&["worker"], &["core"]).unwrap();
        assert!(!crosses(&network, "worker", "core"), "crossed a partition");

        network.heal().unwrap();
        let healed = Instant::now();
        while !crosses(&network, "worker", "core") {
            assert!(
                healed.elapsed() < Duration::from_secs(30),
                "nothing crossed after the partition healed"
            );
        }
    }
    network.destroy().unwrap();
    assert_eq!(namespaces_left(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
