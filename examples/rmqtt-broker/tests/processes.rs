//! Row 8: processes die. `kill -9` of broker C while A publishes QoS 1 to
//! subscribers on A and B loses nothing on A and B; C's routes vanish
//! within `deadTimeout`, what was queued for C is dropped and counted with
//! its reason; C restarted rejoins and its new subscribers receive new
//! messages.
//!
//! (The second half of the row, a worker's failover when its core is
//! killed while its clients publish QoS 1, needs delivery confirmed end to
//! end and lands with that change.)

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{QoS, SECRET, TIMEOUT, TIMINGS};
use rumqttc::v5::MqttOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A broker process, killed when dropped.
struct Process {
    child: Child,
    mqtt: SocketAddr,
}

impl Process {
    fn start(config: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqtt-cluster-broker"))
            .arg("--config")
            .arg(config)
            .args(["--mqtt", "127.0.0.1:0"])
            .env("MQTT_CLUSTER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the broker binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mqtt = line
            .trim()
            .strip_prefix("MQTT ")
            .unwrap_or_else(|| panic!("unexpected output {line:?}"));
        Process {
            mqtt: mqtt.parse().unwrap(),
            child,
        }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(process: &Process, id: &str) -> common::Client {
    let mut options = MqttOptions::new(id, process.mqtt.ip().to_string(), process.mqtt.port());
    options.set_keep_alive(Duration::from_secs(30));
    common::Client::connect(options).await
}

/// The core's `/metrics` (unauthenticated), as text.
async fn metrics(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// The value of the metric line starting with `prefix`, if present.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn wait_metric(port: u16, prefix: &str, want: f64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let text = metrics(port).await;
        if metric(&text, prefix) == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{prefix} never became {want} within {within:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_configs(dir: &Path, port: u16) -> [PathBuf; 3] {
    std::fs::create_dir_all(dir).unwrap();
    let core = dir.join("a.yaml");
    std::fs::write(
        &core,
        format!(
            "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: a\nclusters: [http://127.0.0.1:{port}]\n\
             secret: {SECRET}\n{TIMINGS}"
        ),
    )
    .unwrap();
    let worker = |name: &str| {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!("core: false\nnodeName: {name}\nclusters: [http://127.0.0.1:{port}]\nsecret: {SECRET}\n{TIMINGS}"),
        )
        .unwrap();
        path
    };
    [core, worker("b"), worker("c")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_loses_nothing_elsewhere_and_it_rejoins() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("mqtt-cluster-broker-kill-{}", std::process::id()));
    let [a_yaml, b_yaml, c_yaml] = write_configs(&dir, port);
    let a = Process::start(&a_yaml);
    let b = Process::start(&b_yaml);
    let mut c = Process::start(&c_yaml);
    wait_metric(port, "mqtt_cluster_members{state=\"alive\"}", 3.0, TIMEOUT).await;

    let mut on_a = client(&a, "on-a").await;
    let mut on_b = client(&b, "on-b").await;
    let on_c = client(&c, "on-c").await;
    for sub in [&on_a, &on_b, &on_c] {
        sub.subscribe("k/#", QoS::AtLeastOnce).await;
    }
    wait_metric(port, "mqtt_cluster_routes", 3.0, TIMEOUT).await;

    let publisher = client(&a, "publisher").await;
    let n = 400;
    let mut killed_at = None;
    for i in 0..n {
        if i == n / 4 {
            c.kill();
            killed_at = Some(Instant::now());
        }
        publisher
            .publish("k/x", QoS::AtLeastOnce, &i.to_string())
            .await;
    }
    for (name, sub) in [("A", &mut on_a), ("B", &mut on_b)] {
        let mut got = Vec::new();
        while got.len() < n {
            got.push(
                String::from_utf8_lossy(&sub.recv().await.payload)
                    .parse::<usize>()
                    .unwrap(),
            );
        }
        assert_eq!(
            got,
            (0..n).collect::<Vec<_>>(),
            "every message once, in order, on {name}"
        );
    }

    // C's route vanishes within deadTimeout (2 s) of its death, plus a
    // heartbeat to notice.
    wait_metric(port, "mqtt_cluster_routes", 2.0, TIMEOUT).await;
    let gone_after = killed_at.unwrap().elapsed();
    assert!(
        gone_after < Duration::from_millis(3500),
        "routes vanished after {gone_after:?}"
    );
    let text = metrics(port).await;
    assert_eq!(
        metric(&text, "mqtt_cluster_members{state=\"dead\"}"),
        Some(1.0)
    );
    // What waited for C was dropped and counted, with its reason; nothing
    // waits for C any more.
    let dropped: f64 = text
        .lines()
        .filter(|l| l.starts_with("mqtt_cluster_dropped_total{peer=\"c\",reason=\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        dropped > 0.0,
        "messages queued for C are counted as dropped:\n{text}"
    );
    assert!(metric(&text, "mqtt_cluster_queue_depth{peer=\"c\"}").unwrap_or(0.0) == 0.0);
    assert!(metric(&text, "mqtt_cluster_in_flight{peer=\"c\"}").unwrap_or(0.0) == 0.0);

    // C comes back (a new incarnation of the same name) and serves again.
    let c = Process::start(&c_yaml);
    wait_metric(port, "mqtt_cluster_members{state=\"alive\"}", 3.0, TIMEOUT).await;
    let mut again = client(&c, "on-c-again").await;
    again.subscribe("k/#", QoS::AtLeastOnce).await;
    wait_metric(port, "mqtt_cluster_routes", 3.0, TIMEOUT).await;
    publisher.publish("k/x", QoS::AtLeastOnce, "after").await;
    assert_eq!(&again.recv().await.payload[..], b"after");
    let _ = std::fs::remove_dir_all(&dir);
}
