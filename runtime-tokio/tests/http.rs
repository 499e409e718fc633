//! A core's HTTP surface, spoken to by hand over raw TCP: operators'
//! endpoints answer, and a push stream whose reader hangs up is reported
//! closed. (Bad requests are in the conformance suite, `tests/`, which runs
//! them on both runtimes.)

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{bind, core_config, eventually, start, Running, SECRET};
use http::{Method, Request};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::RegisterRequest;
use mqtt_cluster_core::{Incarnation, NodeId, Role, WallTime};
use mqtt_cluster_tokio::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_BODY: usize = 2048;

async fn solo() -> (Running, SocketAddr) {
    let bound = bind().await;
    let addr = bound.listener.local_addr().unwrap();
    let extra = format!("maxBodySize: {MAX_BODY}\n");
    let config = core_config("solo", bound.port, &[bound.url.as_str()], &extra);
    let node = start(config, Options::new().seed(9).listener(bound.listener)).await;
    (node, addr)
}

fn wall() -> WallTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    WallTime::from_unix_millis(ms as u64)
}

/// A request signed as `node` with `secret`.
fn signed(
    secret: &str,
    node: &str,
    counter: u64,
    method: Method,
    path: &str,
    body: &[u8],
) -> Request<Bytes> {
    let auth = Authenticator::new(Some(Secret::new(secret)), Duration::from_secs(30), 16);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .body(Bytes::copy_from_slice(body))
        .unwrap();
    let node = NodeId::new(node).unwrap();
    auth.sign(&mut request, &node, Incarnation(1), counter, wall());
    request
}

/// The request as HTTP/1.1 bytes, closing the connection after the answer.
fn raw(request: &Request<Bytes>) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n",
        request.method(),
        request.uri()
    );
    for (name, value) in request.headers() {
        out.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", request.body().len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(request.body());
    bytes
}

/// Sends raw bytes and reads the whole answer: (status, head, body).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("readable answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_status_are_served() {
    let (_node, addr) = solo().await;
    let (status, _, body) = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"solo\""), "{body}");
    let (status, head, body) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/plain"), "{head}");
    assert!(!body.is_empty());
    let request = signed(SECRET, "operator", 1, Method::GET, "/status", b"");
    let (status, _, body) = exchange(addr, &raw(&request)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"membersDigest\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stream_whose_reader_hangs_up_is_reported_closed() {
    let (node, addr) = solo().await;
    let register = RegisterRequest {
        node: NodeId::new("fake-worker").unwrap(),
        role: Role::Worker,
        incarnation: Incarnation(1),
        address: None,
    };
    let request = signed(
        SECRET,
        "fake-worker",
        1,
        Method::POST,
        "/register",
        &encode_json(&register),
    );
    let (status, _, body) = exchange(addr, &raw(&request)).await;
    assert_eq!(status, 200, "{body}");

    let request = signed(SECRET, "fake-worker", 2, Method::GET, "/stream", b"");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&raw(&request)).await.unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: hello") {
        let n = tokio::time::timeout(common::DEADLINE, stream.read(&mut buffer))
            .await
            .expect("the hello frame in time")
            .unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert_eq!(node.handle.status().await.unwrap().streams, 1);
    assert_eq!(node.handle.runtime_stats().await.unwrap().streams_served, 1);

    drop(stream);
    eventually("the core forgets the stream", || async {
        node.handle.status().await.unwrap().streams == 0
    })
    .await;
}
