//! Speaking to a core by hand over raw TCP: signed requests as bytes, and
//! answers read back whole, for the suites that test what a core does with
//! requests no well-behaved peer would send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::{Incarnation, NodeId, WallTime};

use crate::runtimes::DEADLINE;

fn wall() -> WallTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    WallTime::from_unix_millis(ms as u64)
}

/// A request signed as `node` with `secret`.
pub fn signed(
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
    auth.sign(
        &mut request,
        &NodeId::new(node).expect("a node id"),
        Incarnation(1),
        counter,
        wall(),
    );
    request
}

/// The request as HTTP/1.1 bytes, closing the connection after the answer.
pub fn raw(request: &Request<Bytes>) -> Vec<u8> {
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

/// Sends raw bytes and reads the answer: (status, body). Reads until the
/// peer closes, or until the body its `content-length` announces is in.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    exchange_within(addr, bytes, DEADLINE)
}

/// [`exchange`], reading for at most `patience` (for an answer that may
/// have no length and no end).
pub fn exchange_within(addr: SocketAddr, bytes: &[u8], patience: Duration) -> (u16, String) {
    let (status, _, body) = answer_within(addr, bytes, patience);
    (status, body)
}

/// [`exchange`], with the head too: (status, head, body).
pub fn exchange_with_head(addr: SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    answer_within(addr, bytes, DEADLINE)
}

fn answer_within(addr: SocketAddr, bytes: &[u8], patience: Duration) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    // The peer may answer before it has read everything: a failed write
    // is fine, the answer is what counts.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
        if complete(&answer) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// Whether `answer` holds a whole response with a `content-length`.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer).to_ascii_lowercase();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// The `error` field of a JSON error body.
pub fn error_kind(body: &str) -> String {
    let start = body.find("\"error\":\"").map(|i| i + 9).unwrap_or(0);
    body[start..].split('"').next().unwrap_or("").to_owned()
}
