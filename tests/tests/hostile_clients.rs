//! Unauthenticated clients cannot exhaust a core, on either runtime:
//! thousands of connections that announce bodies over 1 GiB and hang up,
//! trickle a head a byte at a time, or sit idle leave the process's file
//! descriptors and threads bounded, a head that never ends is cut off at
//! the header timeout, and a legitimate peer is served again as soon as
//! they let go.
//!
//! A binary of its own: it counts the descriptors and threads of the whole
//! process, which tests running beside it would disturb. Its tests take
//! turns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mqtt_cluster_tests::raw_http::exchange;
use mqtt_cluster_tests::runtimes::{bind, core_config, eventually};

/// How many hostile connections each wave opens.
const HOSTILE: usize = 2000;
/// What may come and go beside the core's connections: the test's own
/// descriptors and threads, the node's timers and pools.
const SLACK: usize = 32;
const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
/// A body announced far beyond any `maxBodySize`, of which only a little
/// is sent before the client hangs up.
const HUGE: &[u8] = b"POST /forward HTTP/1.1\r\nhost: t\r\ncontent-length: 2000000000\r\n\r\nabc";

static TURN: Mutex<()> = Mutex::new(());

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// A core on either runtime, with its defaults or a header timeout.
enum Core {
    Tokio(mqtt_cluster_tokio::ClusterHandle, tokio::runtime::Runtime),
    Blocking(mqtt_cluster_blocking::ClusterHandle),
}

impl Core {
    fn start(tokio: bool, header_timeout: Option<Duration>) -> (Core, SocketAddr) {
        let bound = bind();
        let addr = bound.listener.local_addr().unwrap();
        let config = core_config("solo", bound.port, &[bound.url.as_str()], "");
        let core = if tokio {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let handle = runtime.block_on(async move {
                bound.listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(bound.listener).unwrap();
                let mut options = mqtt_cluster_tokio::Options::new().listener(listener);
                if let Some(timeout) = header_timeout {
                    options = options.header_timeout(timeout);
                }
                mqtt_cluster_tokio::Cluster::start_with(config, options)
                    .await
                    .unwrap()
            });
            Core::Tokio(handle, runtime)
        } else {
            let mut options = mqtt_cluster_blocking::Options::new().listener(bound.listener);
            if let Some(timeout) = header_timeout {
                options = options.header_timeout(timeout);
            }
            Core::Blocking(mqtt_cluster_blocking::Cluster::start_with(config, options).unwrap())
        };
        (core, addr)
    }

    /// Connections it closed at once for being over its cap.
    fn connections_refused(&self) -> u64 {
        match self {
            Core::Tokio(handle, runtime) => {
                runtime
                    .block_on(handle.runtime_stats())
                    .unwrap()
                    .connections_refused
            }
            Core::Blocking(handle) => handle.runtime_stats().unwrap().connections_refused,
        }
    }
}

fn hostile_clients_leave_the_core_bounded(tokio: bool) {
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let max_connections = match tokio {
        true => mqtt_cluster_tokio::DEFAULT_MAX_CONNECTIONS,
        false => mqtt_cluster_blocking::DEFAULT_MAX_CONNECTIONS,
    };
    let (core, addr) = Core::start(tokio, None);
    assert_eq!(exchange(addr, HEALTH).0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let descriptors = open_descriptors();
    let threads_before = threads();

    // Bodies over 1 GiB announced, and the client gone.
    for _ in 0..HOSTILE {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.write_all(HUGE);
        }
    }
    assert_eq!(exchange(addr, HEALTH).0, 200, "served after the wave");
    eventually("what the hung-up clients left is closed", || {
        open_descriptors() <= descriptors + SLACK
    });

    // Heads trickled a byte at a time, and connections that say nothing.
    let mut held = Vec::new();
    for n in 0..HOSTILE {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        if n % 2 == 0 {
            let _ = stream.write_all(b"GET /health HTTP/1.1\r\nx-slow: ");
        }
        held.push(stream);
    }
    for _ in 0..10 {
        for stream in held.iter_mut().step_by(2) {
            let _ = stream.write_all(b"a");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The clients' own descriptors are the test's: what is left over is
    // the core's.
    let cores = open_descriptors().saturating_sub(descriptors + held.len());
    assert!(
        cores <= max_connections + SLACK,
        "{cores} descriptors held for {} hostile connections (cap {max_connections})",
        held.len()
    );
    let grown = threads().saturating_sub(threads_before);
    assert!(
        grown <= max_connections + SLACK,
        "{grown} more threads for {} hostile connections",
        held.len()
    );
    assert!(core.connections_refused() > 0, "the cap refused some");

    drop(held);
    eventually("a legitimate peer is served again", || {
        exchange_once(addr) == Some(200)
    });
    eventually("the core lets go of everything", || {
        open_descriptors() <= descriptors + SLACK
    });
}

/// One `GET /health`, or `None` if the connection was refused or closed.
fn exchange_once(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(HEALTH).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

fn a_trickled_head_is_cut_off_at_the_header_timeout(tokio: bool) {
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let timeout = Duration::from_millis(500);
    let (_core, addr) = Core::start(tokio, Some(timeout));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nx-slow: ")
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    // A byte every 100 ms: each read is quick, the head never ends.
    let closed = loop {
        if stream.write_all(b"a").is_err() {
            break true;
        }
        match stream.read(&mut buffer) {
            Ok(_) => break true,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => {}
        }
        if started.elapsed() > timeout * 10 {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(closed, "the core still waits for the head");
    assert!(started.elapsed() >= timeout, "not before the timeout");
    // An idle connection goes the same way.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(timeout * 10)).unwrap();
    let started = Instant::now();
    let ended = idle.read(&mut buffer);
    assert!(
        matches!(ended, Ok(0))
            || matches!(&ended, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed, not timed out on our side: {ended:?}"
    );
    assert!(started.elapsed() < timeout * 10);
}

#[test]
fn hostile_clients_leave_a_blocking_core_bounded() {
    hostile_clients_leave_the_core_bounded(false);
}

#[test]
fn hostile_clients_leave_a_tokio_core_bounded() {
    hostile_clients_leave_the_core_bounded(true);
}

#[test]
fn a_trickled_head_is_cut_off_at_the_header_timeout_on_blocking() {
    a_trickled_head_is_cut_off_at_the_header_timeout(false);
}

#[test]
fn a_trickled_head_is_cut_off_at_the_header_timeout_on_tokio() {
    a_trickled_head_is_cut_off_at_the_header_timeout(true);
}
