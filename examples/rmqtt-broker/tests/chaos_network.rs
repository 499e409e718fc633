//! The chaos suite's network: brokers in their own network namespaces on
//! a bridge, an MQTT client in another. A message crosses from a worker
//! broker to a core broker; a partition (blackhole routes) stops it, and
//! the worker's failure shows in the core's member list; healing brings it
//! back; a stopped broker (SIGSTOP) takes nothing until continued; a
//! broker killed with `kill -9` and started again in its namespace takes
//! part again; where the kernel has netem, a link losing every packet
//! stops it until the rule is cleared; nothing is left behind. Each fault
//! is applied and undone as the chaos suite's plans do. Needs root and `ip`: without them the test
//! says why and checks nothing.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mqtt_cluster_rmqtt_broker::chaos::faults::{Fault, FaultKind};
use mqtt_cluster_rmqtt_broker::chaos::netns::{self, Network};
use mqtt_cluster_rmqtt_broker::chaos::process::BrokerProcess;

const PREFIX: &str = "mcnet";
const SECRET: &str = "chaos-network-test-secret";
const TIMINGS: &str = "heartbeatInterval: 100ms\nsuspectTimeout: 500ms\ndeadTimeout: 1500ms\n";

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

/// Tries until a message crosses from the worker to the core.
fn until_it_crosses(network: &Network, after: &str) {
    let started = Instant::now();
    while !crosses(network, "worker", "core") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing crossed after {after}"
        );
    }
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
fn brokers_in_namespaces_come_back_after_a_partition_a_pause_and_kill_9() {
    if let Some(why) = netns::unavailable() {
        eprintln!("skipped: network namespaces are not available here ({why})");
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("mqtt-cluster-chaos-network-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut network = Network::create(PREFIX, 213, &["core", "worker", "clients"]).unwrap();
    let netem = netns::netem_unavailable(&network);
    match &netem {
        None => eprintln!("netem is available: a link losing every packet is tried too"),
        Some(why) => {
            eprintln!("netem is not available ({why}): partitions and process faults only")
        }
    }
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
        let program = Path::new(env!("CARGO_BIN_EXE_mqtt-cluster-broker"));
        let mut brokers = vec![
            BrokerProcess::new(&network, "core", program, &core_yaml),
            BrokerProcess::new(&network, "worker", program, &worker_yaml),
        ];
        for broker in &mut brokers {
            broker.start(&network).unwrap();
        }
        until_it_crosses(&network, "the cluster formed");

        let worker = || "worker".to_owned();
        let mut faults = vec![
            // Blackhole routes both ways.
            Fault::Partition {
                side_a: vec![worker()],
                side_b: vec!["core".into()],
            },
            // A stopped broker takes no message; continued, it goes on.
            Fault::Pause { host: worker() },
            // kill -9, then a new process in the same namespace.
            Fault::Kill { host: worker() },
        ];
        if netem.is_none() {
            faults.push(Fault::Netem {
                host: worker(),
                kind: FaultKind::Loss,
                rule: "loss 100%".into(),
            });
        }
        for fault in faults {
            fault.apply(&mut network, &mut brokers).unwrap();
            assert!(
                !crosses(&network, "worker", "core"),
                "crossed despite {fault}"
            );
            fault.undo(&mut network, &mut brokers).unwrap();
            until_it_crosses(&network, &format!("the end of {fault}"));
        }
        assert!(brokers.iter().all(BrokerProcess::is_running));
    }
    network.destroy().unwrap();
    assert_eq!(namespaces_left(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run interrupted or killed leaves processes in its namespaces (the
/// clients, a broker): removing the namespaces kills them, so neither
/// dropping the network nor `mqtt-cluster-chaos cleanup` leaves anything
/// running unseen.
#[test]
fn removing_the_namespaces_stops_what_still_runs_in_them() {
    if let Some(why) = netns::unavailable() {
        eprintln!("skipped: network namespaces are not available here ({why})");
        return;
    }
    const LEFT: &str = "mcleft";
    let network = Network::create(LEFT, 212, &["host"]).unwrap();
    let mut left_running = network
        .command("host", "sleep")
        .unwrap()
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // As a runner that never got to stop its processes.
    drop(network);
    let deadline = Instant::now() + Duration::from_secs(5);
    while left_running.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the process outlived its namespace"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.lines().any(|l| l.starts_with(&format!("{LEFT}-"))),
        "{listed}"
    );
}
