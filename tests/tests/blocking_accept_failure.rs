//! A blocking core whose `accept` fails (here: the process has run out of
//! file descriptors) counts it, tries again, and serves on once it can.
//!
//! A test binary of its own: it takes every file descriptor of the process
//! for a moment, which would upset any test running beside it. The client
//! runs in a child process (this binary again), whose descriptors are its
//! own.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use mqtt_cluster_blocking::{Cluster, Options};
use mqtt_cluster_tests::raw_http::exchange;
use mqtt_cluster_tests::runtimes::{bind, core_config, eventually, DEADLINE};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
/// Set in the child: where to connect.
const CONNECT_TO: &str = "MQTT_CLUSTER_TEST_CONNECT_TO";

/// The child's part: connect a little later (while the parent has no
/// descriptor left), then ask for /health until answered, and print the
/// status line. Run only by the test below, in a child process.
#[test]
#[ignore = "the client half of a_failed_accept_is_tried_again_and_the_core_serves_on, run by it"]
fn child_asks_for_health() {
    let Ok(addr) = std::env::var(CONNECT_TO) else {
        return;
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let mut status = String::from("none");
    while started.elapsed() < DEADLINE {
        if let Ok(mut stream) = TcpStream::connect(addr.as_str()) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.write_all(HEALTH);
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            status = String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or("none")
                .to_owned();
            if status.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("ANSWER {status}");
}

#[test]
fn a_failed_accept_is_tried_again_and_the_core_serves_on() {
    if std::env::var(CONNECT_TO).is_ok() {
        return;
    }
    let bound = bind();
    let config = core_config("solo", bound.port, &[bound.url.as_str()], "");
    let node = Cluster::start_with(config, Options::new().listener(bound.listener)).unwrap();
    let addr = node.local_addr().unwrap();
    assert_eq!(exchange(addr, HEALTH).0, 200);

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_asks_for_health",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CONNECT_TO, addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let the connection of the first exchange wind down on the server.
    std::thread::sleep(Duration::from_millis(200));
    // Every descriptor taken: the child's connection finds none to be
    // accepted into.
    let mut hog = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hog.push(file);
        assert!(hog.len() < 1_000_000, "no descriptor limit to run into");
    }
    std::thread::sleep(Duration::from_millis(1_000));
    drop(hog);

    let output = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("ANSWER HTTP/1.1 200"), "{printed}");
    // At least once: while descriptors are short, every try fails.
    eventually("the failed accepts are counted", || {
        node.runtime_stats().unwrap().accept_failures >= 1
    });
    assert_eq!(exchange(addr, HEALTH).0, 200);
}
