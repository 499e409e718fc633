//! A core's HTTP/1.1 server on plain threads: every request, read with a
//! size limit, goes to the node's thread, which answers it with
//! `Node::handle_request`; a push stream is then written here, frame by
//! frame, as the node produces them.
//!
//! Nothing a client does unauthenticated can make it hold more than
//! [`Options::max_connections`](crate::Options::max_connections)
//! connections (each served on one thread), or more than twice
//! [`Options::max_pending_requests`](crate::Options::max_pending_requests)
//! bodies: a connection over the cap is closed as soon as it is accepted, a
//! head must arrive within
//! [`Options::header_timeout`](crate::Options::header_timeout) and a body
//! within `requestTimeout`, a body is read no further than one byte past
//! `maxBodySize`, and a connection whose body is not read whole is closed
//! after its answer.

mod body;
mod head;
mod slots;
mod timed;

use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use http::{header, Request, Response, StatusCode, Version};
use mqtt_cluster_core::runtime::carries_deliveries;
use mqtt_cluster_core::wire::error_response;
use mqtt_cluster_core::StreamId;

use crate::driver::{Input, InputSender, Reply};
use crate::stats::Counters;
use crate::threads::Threads;
use body::read_body;
use head::{read_head, Framing, Head, HeadError};
pub(crate) use slots::Slots;
use timed::Timed;

/// A pause after a failed `accept` (out of file descriptors, say), so the
/// loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// What is read and thrown away of a body left unread before the
/// connection closes, so that the peer sees the answer rather than a reset.
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// What every connection of one core shares.
pub(crate) struct ServerContext {
    pub(crate) inputs: InputSender,
    pub(crate) max_body: usize,
    /// How long a body may take to arrive, and a write may block.
    pub(crate) timeout: Duration,
    /// How long a head may take to arrive, idle time included.
    pub(crate) header_timeout: Duration,
    /// One slot per connection served.
    pub(crate) connections: Arc<Slots>,
    /// One slot per request held, from its head to its answer: requests
    /// that may bring deliveries, and the others, apart, so that
    /// `/forward`s waiting for a slow host never crowd out heartbeats.
    pub(crate) pending_deliveries: Arc<Slots>,
    pub(crate) pending_control: Arc<Slots>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) threads: Threads,
}

/// Serves until dropped: then the listener closes. Connections already
/// open are served on, and answered `503` once the node has stopped.
pub(crate) struct Serving {
    stop: Arc<AtomicBool>,
    /// Where to connect to wake the accept loop.
    wake: SocketAddr,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop blocks in `accept`: one connection wakes it, and
        // it sees the flag. Should this fail, the next client does it.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

/// Serves `listener` on threads of its own until the returned guard drops.
pub(crate) fn spawn(
    listener: TcpListener,
    context: Arc<ServerContext>,
) -> std::io::Result<Serving> {
    let addr = listener.local_addr()?;
    let wake = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("mqtt-cluster-accept".into())
        .spawn(move || accept_loop(&listener, &stopped, &context))?;
    Ok(Serving { stop, wake })
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, context: &Arc<ServerContext>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            // Returning drops the listener: the port closes.
            return;
        }
        match accepted {
            Ok((stream, remote)) => {
                Counters::bump(&context.counters.connections);
                let Some(slot) = context.connections.try_take() else {
                    // Closed at once: holding it, even unread, would hold a
                    // file descriptor (and here a thread).
                    Counters::bump(&context.counters.connections_refused);
                    log::debug!("refusing a connection from {remote}: too many served");
                    continue;
                };
                let context = context.clone();
                context.threads.clone().run(move || {
                    serve_connection(stream, &context);
                    drop(slot);
                });
            }
            Err(error) => {
                // Out of file descriptors, say: the listener is still
                // there, and serves again once the condition passes.
                Counters::bump(&context.counters.accept_failures);
                log::error!("accepting a connection failed: {error}");
                std::thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Serves the requests of one connection, one after the other, until the
/// client closes it, sends nothing in time, or a request leaves it unusable.
fn serve_connection(stream: TcpStream, context: &ServerContext) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(context.timeout));
    let deadline = Instant::now() + context.header_timeout;
    let mut reader = BufReader::new(Timed::new(stream, deadline));
    loop {
        reader
            .get_mut()
            .until(Instant::now() + context.header_timeout);
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            // Closed, broken or silent: nobody to answer.
            Ok(None) | Err(HeadError::Io(_)) => return,
            Err(error @ (HeadError::TooLarge | HeadError::Malformed(_))) => {
                Counters::bump(&context.counters.requests);
                Counters::bump(&context.counters.refused);
                let status = match error {
                    HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                let refused = refusal(status, "malformed", error.to_string());
                let _ = write_response(reader.get_ref().stream(), refused, true);
                return linger(&mut reader);
            }
        };
        Counters::bump(&context.counters.requests);
        if !serve_request(&mut reader, head, context) {
            return;
        }
    }
}

/// Serves one request; whether the connection can carry another.
fn serve_request(reader: &mut BufReader<Timed>, head: Head, context: &ServerContext) -> bool {
    let pending = match carries_deliveries(&head.uri) {
        true => &context.pending_deliveries,
        false => &context.pending_control,
    };
    // Held until the node has answered: the body read meanwhile is what it
    // bounds.
    let Some(held) = pending.try_take() else {
        let message = "too many requests are being served; try again";
        let busy = refusal(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
        return refuse(reader, busy, context);
    };
    let over = matches!(head.body, Framing::Length(n) if n > context.max_body as u64);
    if head.expects_continue && !over {
        let invite = b"HTTP/1.1 100 Continue\r\n\r\n";
        if reader.get_ref().stream().write_all(invite).is_err() {
            return false;
        }
    }
    reader.get_mut().until(Instant::now() + context.timeout);
    let body = match read_body(reader, head.body, context.max_body) {
        Ok(body) => body,
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
            let message = "the request body did not arrive within requestTimeout";
            let late = refusal(StatusCode::REQUEST_TIMEOUT, "timeout", message);
            return refuse(reader, late, context);
        }
        Err(error) => {
            let message = format!("the request body could not be read: {error}");
            let broken = refusal(StatusCode::BAD_REQUEST, "malformed", message);
            return refuse(reader, broken, context);
        }
    };
    let keep = body.complete && !head.close;
    let mut request = Request::new(Bytes::from(body.bytes));
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;

    let (reply, replied) = crossbeam_channel::bounded(1);
    let stopped = || {
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node has stopped",
        )
    };
    if context
        .inputs
        .send(Input::Request { request, reply })
        .is_err()
    {
        return refuse(reader, stopped(), context);
    }
    let replied = replied.recv();
    // Answered: a push stream holds its connection, not a request slot.
    drop(held);
    match replied {
        Ok(Reply {
            response,
            stream: Some((frames, id)),
        }) => {
            write_stream(reader.get_ref().stream(), response, &frames, id, context);
            false
        }
        Ok(Reply {
            response,
            stream: None,
        }) => {
            let written = write_response(reader.get_ref().stream(), response, !keep);
            if !keep {
                linger(reader);
            }
            keep && written.is_ok()
        }
        Err(_) => refuse(reader, stopped(), context),
    }
}

/// Answers with a refusal of the runtime's own and ends the connection.
fn refuse(
    reader: &mut BufReader<Timed>,
    response: Response<Bytes>,
    context: &ServerContext,
) -> bool {
    Counters::bump(&context.counters.refused);
    let _ = write_response(reader.get_ref().stream(), response, true);
    linger(reader);
    false
}

/// Before a connection closes with a body still unread: says no more is
/// coming, and reads and throws away a little of what the peer still
/// sends, so that its stack does not answer our close with a reset that
/// can destroy the answer before the peer read it.
fn linger(reader: &mut BufReader<Timed>) {
    let _ = reader.get_ref().stream().shutdown(Shutdown::Write);
    reader.get_mut().until(Instant::now() + DRAIN_TIME);
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// An answer the runtime gives itself, in the core's error format.
fn refusal(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Bytes> {
    error_response(status, kind, message)
}

/// Writes a whole response, framed by its length; `close` says so to the
/// client.
fn write_response(
    mut connection: &TcpStream,
    response: Response<Bytes>,
    close: bool,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let mut out = Vec::with_capacity(256 + body.len());
    status_line(&mut out, parts.status);
    headers_less_framing(&mut out, &parts.headers);
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    connection.write_all(&out)?;
    connection.flush()
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    let line = format!(
        "{:?} {} {}\r\n",
        Version::HTTP_11,
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    out.extend_from_slice(line.as_bytes());
}

/// The core's headers, less those that frame the body: the server frames
/// it itself.
fn headers_less_framing(out: &mut Vec<u8>, headers: &http::HeaderMap) {
    for (name, value) in headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a push stream: the core's head, then each frame as one HTTP
/// chunk, flushed at once (SSE is useless if it waits for a buffer to fill),
/// until the node ends the stream or the reader goes away (or stops reading
/// for longer than the write timeout).
fn write_stream(
    mut connection: &TcpStream,
    response: Response<Bytes>,
    frames: &Receiver<Bytes>,
    id: StreamId,
    context: &ServerContext,
) {
    let written = (|| -> std::io::Result<()> {
        connection.write_all(&stream_head(&response))?;
        connection.flush()?;
        while let Ok(frame) = frames.recv() {
            write_chunk(&mut connection, &frame)?;
            // Whatever else is ready goes out in the same flush.
            while let Ok(frame) = frames.try_recv() {
                write_chunk(&mut connection, &frame)?;
            }
            connection.flush()?;
        }
        // The node ended the stream (or stopped): end the body properly.
        connection.write_all(b"0\r\n\r\n")?;
        connection.flush()
    })();
    if let Err(error) = written {
        log::debug!("push stream {} ended: {error}", id.0);
    }
    // The node is gone only if it stopped; then nobody needs telling.
    let _ = context.inputs.send(Input::StreamClosed { stream: id });
}

fn write_chunk(connection: &mut impl Write, frame: &[u8]) -> std::io::Result<()> {
    if frame.is_empty() {
        // An empty chunk would end the body.
        return Ok(());
    }
    write!(connection, "{:x}\r\n", frame.len())?;
    connection.write_all(frame)?;
    connection.write_all(b"\r\n")
}

/// The status line and headers of a push stream's response: the core's,
/// less any framing header, with chunked framing and `Connection: close`
/// (a stream never gives its connection back).
fn stream_head(response: &Response<Bytes>) -> Vec<u8> {
    let mut head = Vec::new();
    status_line(&mut head, response.status());
    headers_less_framing(&mut head, response.headers());
    head.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_head_keeps_the_cores_headers_and_frames_itself() {
        let response = Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CONTENT_LENGTH, "0")
            .body(Bytes::new())
            .unwrap();
        let head = String::from_utf8(stream_head(&response)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn frames_become_chunks_and_empty_frames_are_skipped() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"data: 1\n\n").unwrap();
        write_chunk(&mut out, b"").unwrap();
        write_chunk(&mut out, &[b'x'; 26]).unwrap();
        let mut expected = b"9\r\ndata: 1\n\n\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 26]);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(out, expected);
    }
}
