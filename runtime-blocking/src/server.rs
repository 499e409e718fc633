//! A core's HTTP server on tiny_http: every request, read with a size
//! limit, goes to the node's thread, which answers it with
//! `Node::handle_request`; a push stream is then written here, frame by
//! frame, as the node produces them.

use std::io::{Cursor, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use mqtt_cluster_core::wire::error_response;
use mqtt_cluster_core::StreamId;

use crate::driver::{Input, Reply};
use crate::stats::Counters;
use crate::threads::Threads;

/// tiny_http keeps bodies of up to this size in memory before it hands the
/// request over; only longer ones still sit unread on the socket.
const BUFFERED_BY_SERVER: usize = 1024;

/// The most of an unread body the server may be left to discard.
///
/// tiny_http discards what is left of a body when the request is dropped,
/// into one buffer the size of what is left, allocated up front. That is
/// harmless for sizes the machine can lend address space for, and aborts
/// the process beyond: a peer announcing a terabyte must never get there.
const SAFE_TO_DISCARD: usize = 1 << 30;

/// What every request of one core shares.
pub(crate) struct ServerContext {
    pub(crate) inputs: Sender<Input>,
    pub(crate) max_body: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) threads: Threads,
}

/// Serves until dropped: then the listener closes and requests still
/// arriving are answered `503`.
pub(crate) struct Serving(Arc<Supervision>);

impl Drop for Serving {
    fn drop(&mut self) {
        // Under the lock, so the watchdog cannot start a server after this.
        if let Ok(servers) = self.0.servers.lock() {
            self.0.stop.store(true, Ordering::SeqCst);
            for server in servers.iter() {
                server.unblock();
            }
        }
    }
}

/// The tiny_http servers of one core, and the watchdog that replaces a
/// deaf one.
///
/// tiny_http's acceptor ends for good at its first failed `accept` (out of
/// file descriptors, say: with an error, or with a panic when it cannot
/// duplicate the socket it accepted), which would leave the core deaf. Its
/// end closes the listening socket, which is what the watchdog looks for:
/// it binds the address again and starts a new server. The old one keeps
/// serving the connections it has, and retires once nothing came for a
/// while.
struct Supervision {
    stop: AtomicBool,
    servers: Mutex<Vec<Arc<tiny_http::Server>>>,
    /// Where the core listens.
    addr: SocketAddr,
    context: Arc<ServerContext>,
}

/// How often the watchdog checks that the port still listens.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long a server whose acceptor ended serves on without a request
/// before it retires. Longer than clients keep idle pooled connections
/// (20 s in both runtimes), so no live connection is left behind.
const RETIRE_AFTER: Duration = Duration::from_secs(60);

impl Supervision {
    /// Starts a tiny_http server on `listener` with an accept loop of its
    /// own; nothing once stopping.
    fn start(self: &Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        let mut servers = self
            .servers
            .lock()
            .map_err(|_| std::io::Error::other("the server list is poisoned"))?;
        if self.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let server = tiny_http::Server::from_listener(listener, None)
            .map(Arc::new)
            .map_err(std::io::Error::other)?;
        servers.push(server.clone());
        let supervision = self.clone();
        std::thread::Builder::new()
            .name("mqtt-cluster-accept".into())
            .spawn(move || {
                supervision.accept_loop(&server);
                if let Ok(mut servers) = supervision.servers.lock() {
                    servers.retain(|s| !Arc::ptr_eq(s, &server));
                }
            })?;
        Ok(())
    }

    /// Checks the port every [`WATCH_EVERY`] until the core stops; a port
    /// that refuses connections has lost its acceptor.
    fn watch(self: &Arc<Self>) {
        let probe = match self.addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.addr.port()))
            }
            ip if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, self.addr.port())),
            _ => self.addr,
        };
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(WATCH_EVERY);
            let refused = matches!(
                TcpStream::connect_timeout(&probe, WATCH_EVERY),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused
            );
            if !refused || self.stop.load(Ordering::SeqCst) {
                continue;
            }
            log::error!(
                "the cluster API on {} stopped accepting; serving it anew",
                self.addr
            );
            match TcpListener::bind(self.addr).and_then(|listener| self.start(listener)) {
                Ok(()) => Counters::bump(&self.context.counters.acceptors_replaced),
                // Tried again at the next check.
                Err(error) => log::error!("cannot listen on {} again: {error}", self.addr),
            }
        }
    }

    fn accept_loop(&self, server: &tiny_http::Server) {
        let mut deaf = false;
        loop {
            let request = if deaf {
                match server.recv_timeout(RETIRE_AFTER) {
                    Ok(Some(request)) => Ok(request),
                    Ok(None) => return,
                    Err(error) => Err(error),
                }
            } else {
                server.recv()
            };
            if self.stop.load(Ordering::SeqCst) {
                return self.answer_queued(request, server);
            }
            match request {
                Ok(request) => {
                    let context = self.context.clone();
                    let threads = context.threads.clone();
                    threads.run(move || serve(Incoming::new(request), &context));
                }
                // Only the end of the acceptor puts an error in the queue;
                // the watchdog sees the port closed and serves it anew.
                Err(error) => {
                    log::error!("accepting connections failed: {error}");
                    deaf = true;
                }
            }
        }
    }

    /// Answers what is still queued at a stop instead of dropping it: a
    /// dropped request makes tiny_http discard its body (see `finish`).
    fn answer_queued(
        &self,
        first: std::io::Result<tiny_http::Request>,
        server: &tiny_http::Server,
    ) {
        let queued = first.ok().into_iter();
        for request in queued.chain(std::iter::from_fn(|| server.try_recv().ok().flatten())) {
            let stopped = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the node has stopped",
            );
            Incoming::new(request).finish(stopped, &self.context);
        }
    }
}

/// Serves `listener` on threads of its own until the returned guard drops.
pub(crate) fn spawn(
    listener: TcpListener,
    context: Arc<ServerContext>,
) -> std::io::Result<Serving> {
    let supervision = Arc::new(Supervision {
        stop: AtomicBool::new(false),
        servers: Mutex::new(Vec::new()),
        addr: listener.local_addr()?,
        context,
    });
    supervision.start(listener)?;
    let watchdog = supervision.clone();
    std::thread::Builder::new()
        .name("mqtt-cluster-watch".into())
        .spawn(move || watchdog.watch())?;
    Ok(Serving(supervision))
}

/// A request as tiny_http gives it, and how much of its body is still
/// unread on the socket.
struct Incoming {
    request: tiny_http::Request,
    unread: usize,
}

impl Incoming {
    fn new(request: tiny_http::Request) -> Self {
        let unread = match request.body_length() {
            Some(n) if n > BUFFERED_BY_SERVER => n,
            _ => 0,
        };
        Incoming { request, unread }
    }

    /// Answers and lets go of the request, without ever leaving tiny_http
    /// more of the body to discard than is safe (see [`SAFE_TO_DISCARD`]).
    fn finish(self, response: Response<Bytes>, context: &ServerContext) {
        if self.unread <= SAFE_TO_DISCARD {
            // An error means the peer went away; there is no one to tell.
            let _ = self.request.respond(to_tiny(response));
            return;
        }
        // Answered through the one door that hands the connection over
        // instead of discarding the rest of the body. That door writes the
        // head only, with no length, so the body follows by hand and ends
        // where the peer gives up. The connection is then kept, never
        // dropped, so that the discard cannot run.
        Counters::bump(&context.counters.abandoned);
        log::warn!(
            "abandoning a connection that announced a {}-byte body",
            self.unread
        );
        let (parts, body) = response.into_parts();
        let head = to_tiny(Response::from_parts(parts, Bytes::new()));
        let mut connection = self.request.upgrade("none", head);
        let _ = connection
            .write_all(&body)
            .and_then(|()| connection.flush());
        std::mem::forget(connection);
    }
}

fn serve(mut incoming: Incoming, context: &ServerContext) {
    Counters::bump(&context.counters.requests);
    let request = match read_request(&mut incoming, context.max_body) {
        Ok(request) => request,
        Err(malformed) => {
            Counters::bump(&context.counters.refused);
            let refused = refusal(StatusCode::BAD_REQUEST, "malformed", malformed);
            return incoming.finish(refused, context);
        }
    };
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
        Counters::bump(&context.counters.refused);
        return incoming.finish(stopped(), context);
    }
    match replied.recv() {
        Ok(Reply {
            response,
            stream: Some((frames, id)),
        }) => write_stream(incoming.request, response, &frames, id, context),
        Ok(Reply {
            response,
            stream: None,
        }) => incoming.finish(response, context),
        Err(_) => {
            Counters::bump(&context.counters.refused);
            incoming.finish(stopped(), context);
        }
    }
}

/// The request in the core's terms, its body read up to `limit + 1` bytes:
/// one byte over is enough for the core to refuse it as too large, and the
/// rest is never held in memory. A body announced larger than the limit is
/// not read at all; the core refuses it from the header.
///
/// Refused with what makes it malformed.
fn read_request(incoming: &mut Incoming, limit: usize) -> Result<Request<Bytes>, String> {
    let raw = &incoming.request;
    let mut builder = Request::builder()
        .method(raw.method().as_str())
        .uri(raw.url());
    for field in raw.headers() {
        let name = HeaderName::from_bytes(field.field.as_str().as_str().as_bytes());
        let value = HeaderValue::from_bytes(field.value.as_str().as_bytes());
        match (name, value) {
            (Ok(name), Ok(value)) => builder = builder.header(name, value),
            _ => return Err(format!("header {} is not valid HTTP", field.field)),
        }
    }
    let announced = incoming.request.body_length();
    let body = if announced.is_some_and(|n| n > limit) {
        Bytes::new()
    } else {
        let mut body = Vec::with_capacity(announced.unwrap_or(0).min(limit + 1));
        let read = incoming
            .request
            .as_reader()
            .take(limit as u64 + 1)
            .read_to_end(&mut body);
        incoming.unread = incoming.unread.saturating_sub(body.len());
        if let Err(error) = read {
            return Err(format!("the request body could not be read: {error}"));
        }
        Bytes::from(body)
    };
    builder
        .body(body)
        .map_err(|error| format!("the request is not valid HTTP: {error}"))
}

/// An answer the runtime gives itself, in the core's error format.
fn refusal(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Bytes> {
    error_response(status, kind, message)
}

/// The core's response in tiny_http's terms. tiny_http writes the framing
/// headers (`Content-Length`, `Connection`) itself and ignores ours.
fn to_tiny(response: Response<Bytes>) -> tiny_http::Response<Cursor<Bytes>> {
    let (parts, body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            tiny_http::Header::from_bytes(name.as_str(), value.as_bytes()).ok()
        })
        .collect();
    let length = body.len();
    tiny_http::Response::new(
        tiny_http::StatusCode(parts.status.as_u16()),
        headers,
        Cursor::new(body),
        Some(length),
        None,
    )
}

/// Writes a push stream: the core's head, then each frame as one HTTP
/// chunk, flushed at once (SSE is useless if it waits for a buffer to fill),
/// until the node ends the stream or the reader goes away. tiny_http's own
/// chunked writer buffers 8 KiB before it sends, so the connection is taken
/// over and framed here.
fn write_stream(
    request: tiny_http::Request,
    response: Response<Bytes>,
    frames: &Receiver<Bytes>,
    id: StreamId,
    context: &ServerContext,
) {
    let mut connection = request.into_writer();
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
    drop(connection);
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
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in response.headers() {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
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
