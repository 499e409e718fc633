//! A core's HTTP server: every request, read with a size limit, goes to the
//! driver, which answers it with `Node::handle_request`.
//!
//! Nothing a client does unauthenticated can make it hold more than
//! [`Options::max_connections`](crate::Options::max_connections)
//! connections, or more than twice
//! [`Options::max_pending_requests`](crate::Options::max_pending_requests)
//! bodies; a connection that sends nothing is closed after
//! [`Options::header_timeout`](crate::Options::header_timeout), a body that
//! does not arrive within `requestTimeout` is refused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mqtt_cluster_core::runtime::carries_deliveries;
use mqtt_cluster_core::wire::error_response;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::body::{drain_in_background, read_limited, Limited, OutBody};
use crate::client::chain;
use crate::driver::{Input, InputSender, Reply};
use crate::stats::Counters;

/// What is read and thrown away of a refused body, so that the peer sees the
/// answer rather than a reset.
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// A pause after a failed `accept` (out of file descriptors, say), so the
/// loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every connection of one core shares.
pub(crate) struct ServerContext {
    pub(crate) inputs: InputSender,
    pub(crate) max_body: usize,
    pub(crate) timeout: Duration,
    /// How long a connection may take to send a head, or sit idle.
    pub(crate) header_timeout: Duration,
    /// One permit per connection served.
    pub(crate) connections: Arc<Semaphore>,
    /// One permit per request held, from its head to its answer: requests
    /// that may bring deliveries, and the others, apart.
    pub(crate) pending_deliveries: Arc<Semaphore>,
    pub(crate) pending_control: Arc<Semaphore>,
    pub(crate) counters: Arc<Counters>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Aborts a task when dropped: the driver holds the server this way, so a
/// node that stops, or whose driver is aborted, stops serving at once.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `listener` until the returned guard is dropped.
pub(crate) fn spawn(listener: TcpListener, context: Arc<ServerContext>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(accept_loop(listener, context)))
}

async fn accept_loop(listener: TcpListener, context: Arc<ServerContext>) {
    // Owning the connections here means aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    Counters::bump(&context.counters.connections);
                    match context.connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let context = context.clone();
                            connections.spawn(async move {
                                connection(stream, remote, context).await;
                                drop(permit);
                            });
                        }
                        // Closed at once: holding it, even unread, would
                        // hold a file descriptor.
                        Err(_) => {
                            Counters::bump(&context.counters.connections_refused);
                            tracing::debug!(%remote, "refusing a connection: too many served");
                            drop(stream);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, remote: SocketAddr, context: Arc<ServerContext>) {
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(acceptor) = context.tls.clone() {
        match tokio::time::timeout(context.timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve(TokioIo::new(stream), remote, context).await,
            Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
        }
        return;
    }
    serve(TokioIo::new(stream), remote, context).await;
}

async fn serve<I>(io: I, remote: SocketAddr, context: Arc<ServerContext>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = context.header_timeout;
    let service = service_fn(move |request| answer(request, context.clone()));
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
    if let Err(error) = served {
        // Peers hanging up mid-request are routine; nothing to shout about.
        tracing::debug!(%remote, error = %chain(&error), "connection ended");
    }
}

async fn answer(
    request: Request<Incoming>,
    context: Arc<ServerContext>,
) -> Result<Response<OutBody>, Infallible> {
    Counters::bump(&context.counters.requests);
    let (parts, body) = request.into_parts();
    let pending = if carries_deliveries(&parts.uri) {
        &context.pending_deliveries
    } else {
        &context.pending_control
    };
    // Held until the node has answered: the body read meanwhile is what it
    // bounds. Refused without reading the body, which also closes the
    // connection.
    let Ok(_held) = pending.clone().try_acquire_owned() else {
        let message = "too many requests are being served; try again";
        return Ok(refuse(
            &context,
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            message,
        ));
    };
    let limit = context.max_body;
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = if announced.is_some_and(|n| n > limit as u64) {
        // The core refuses it from the header alone: read none of it. A
        // client waiting for `100 Continue` is spared sending it at all;
        // reading would be what tells hyper to invite it.
        let waits = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits {
            drain_in_background(body, DRAIN_BYTES, DRAIN_TIME);
        }
        Bytes::new()
    } else {
        match tokio::time::timeout(context.timeout, read_limited(body, limit)).await {
            Ok(Ok(Limited::Complete(bytes))) => bytes,
            Ok(Ok(Limited::Overflow(bytes, rest))) => {
                drain_in_background(rest, DRAIN_BYTES, DRAIN_TIME);
                bytes
            }
            Ok(Err(error)) => {
                let message = format!("the request body could not be read: {}", chain(&error));
                return Ok(refuse(
                    &context,
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    message,
                ));
            }
            Err(_) => {
                let message = "the request body did not arrive within requestTimeout";
                return Ok(refuse(
                    &context,
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    message,
                ));
            }
        }
    };
    let (reply, replied) = oneshot::channel();
    let input = Input::Request {
        request: Request::from_parts(parts, body),
        reply,
    };
    let stopped = "the node has stopped";
    if context.inputs.send(input).await.is_err() {
        return Ok(refuse(
            &context,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            stopped,
        ));
    }
    let Ok(Reply { response, stream }) = replied.await else {
        return Ok(refuse(
            &context,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            stopped,
        ));
    };
    let (parts, body) = response.into_parts();
    let body = match stream {
        Some((frames, guard)) => OutBody::Stream {
            frames,
            _guard: guard,
        },
        None => OutBody::full(body),
    };
    Ok(Response::from_parts(parts, body))
}

/// An answer the runtime gives itself, in the core's error format.
fn refuse(
    context: &ServerContext,
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
) -> Response<OutBody> {
    Counters::bump(&context.counters.refused);
    error_response(status, kind, message).map(OutBody::full)
}

/// The stream's frames and its guard, as the driver hands them over.
pub(crate) type StreamParts = (mpsc::Receiver<Bytes>, crate::body::StreamGuard);
