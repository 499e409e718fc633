//! Sending a node's requests: a pooled keep-alive HTTP/1.1 client, one task
//! per request, each reporting its outcome to the driver exactly once.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mqtt_cluster_core::{NodeId, Transmit, TransportError};

use crate::body::{read_limited, Limited};
use crate::driver::{Input, InputSender};
use crate::stats::Counters;
use crate::traffic::{Observer, Traffic};

#[cfg(not(feature = "tls"))]
pub(crate) type Connector = hyper_util::client::legacy::connect::HttpConnector;
#[cfg(feature = "tls")]
pub(crate) type Connector = crate::tls::Connector;

/// How long an idle pooled connection is kept: less than the server's idle
/// timeout, so the client retires a connection before a server closes it
/// under a request.
const POOL_IDLE: Duration = Duration::from_secs(20);
/// TCP keepalive on every connection: a push stream can sit idle for long,
/// and without probes a peer that vanished (power loss, a dropped route) would
/// hold its reader open forever.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// The pooled keep-alive client every request of a node goes out on.
pub(crate) fn build_client(
    timeout: Duration,
    #[cfg(feature = "tls")] tls: Option<tokio_rustls::TlsConnector>,
) -> Client<Connector, Full<Bytes>> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEPALIVE));
    #[cfg(not(feature = "tls"))]
    let connector = http;
    #[cfg(feature = "tls")]
    let connector = crate::tls::Connector::new(http, tls);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Everything a request task needs; shared by all of a node's tasks.
pub(crate) struct Carrier {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
    inputs: InputSender,
    observer: Option<Observer>,
    node: NodeId,
    /// TLS is configured: no request goes to an `http://` peer.
    tls_only: bool,
    counters: Arc<Counters>,
}

impl Carrier {
    pub(crate) fn new(
        node: NodeId,
        timeout: Duration,
        max_body: usize,
        inputs: InputSender,
        observer: Option<Observer>,
        counters: Arc<Counters>,
        // Outside: TLS is configured; inside: the connector for `https://`.
        #[cfg(feature = "tls")] tls: Option<Option<tokio_rustls::TlsConnector>>,
    ) -> Self {
        #[cfg(feature = "tls")]
        let tls_only = tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls_only = false;
        let client = build_client(
            timeout,
            #[cfg(feature = "tls")]
            tls.flatten(),
        );
        Carrier {
            client,
            timeout,
            max_body,
            inputs,
            observer,
            node,
            tls_only,
            counters,
        }
    }

    /// Why a request to `to` must not be sent: with TLS configured, a plain
    /// `http://` peer would see the signed request, and anyone on the path
    /// its body, in the clear. Counted and logged once per refusal.
    fn refuse_in_clear(&self, to: &str) -> Option<TransportError> {
        let plain = to
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
        if !(self.tls_only && plain) {
            return None;
        }
        Counters::bump(&self.counters.refused_in_clear);
        tracing::warn!(node = %self.node, peer = %to, "not sending a request in the clear: TLS is configured and the peer is not https");
        Some(TransportError::Insecure { url: to.to_owned() })
    }

    async fn report(&self, input: Input) {
        // The driver is gone only when the node stopped; nobody waits for
        // the outcome then.
        let _ = self.inputs.send(input).await;
    }

    fn observe(&self, traffic: Traffic) {
        if let Some(observer) = &self.observer {
            observer(&traffic);
        }
    }
}

/// Sends an ordinary request and reports its response, read whole up to the
/// size limit, or why there was none. `requestTimeout` covers the lot.
pub(crate) async fn exchange(carrier: Arc<Carrier>, transmit: Transmit) {
    let Transmit {
        id,
        to,
        peer,
        request,
        ..
    } = transmit;
    if let Some(error) = carrier.refuse_in_clear(&to) {
        let result = Err(error);
        return carrier
            .report(Input::Response {
                id,
                result,
                streaming: false,
            })
            .await;
    }
    let started = tokio::time::Instant::now();
    let (method, path, size) = describe_request(&request);
    let attempt = async {
        let response = carrier
            .client
            .request(request.map(Full::new))
            .await
            .map_err(classify)?;
        let (parts, body) = response.into_parts();
        let body = read_whole(body, carrier.max_body).await?;
        Ok(Response::from_parts(parts, body))
    };
    let result = tokio::time::timeout(carrier.timeout, attempt)
        .await
        .unwrap_or(Err(TransportError::Timeout));
    log_exchange(
        &carrier,
        &to,
        peer,
        method,
        path,
        size,
        &result,
        started.elapsed(),
    );
    carrier
        .report(Input::Response {
            id,
            result,
            streaming: false,
        })
        .await;
}

/// Opens a push stream: reports the head as soon as it arrives (with an
/// empty body), then every chunk of the body, then its end. Only the head
/// is bound by `requestTimeout`; the body lasts as long as the core feeds it.
pub(crate) async fn stream(carrier: Arc<Carrier>, transmit: Transmit) {
    let Transmit {
        id,
        to,
        peer,
        request,
        ..
    } = transmit;
    if let Some(error) = carrier.refuse_in_clear(&to) {
        let result = Err(error);
        return carrier
            .report(Input::Response {
                id,
                result,
                streaming: true,
            })
            .await;
    }
    let started = tokio::time::Instant::now();
    let (method, path, size) = describe_request(&request);
    let head = tokio::time::timeout(
        carrier.timeout,
        carrier.client.request(request.map(Full::new)),
    );
    let response = match head.await {
        Ok(Ok(response)) => response,
        failed => {
            let error = match failed {
                Ok(Err(error)) => classify(error),
                _ => TransportError::Timeout,
            };
            let result = Err(error);
            log_exchange(
                &carrier,
                &to,
                peer,
                method,
                path,
                size,
                &result,
                started.elapsed(),
            );
            return carrier
                .report(Input::Response {
                    id,
                    result,
                    streaming: true,
                })
                .await;
        }
    };
    let (parts, mut body) = response.into_parts();
    if parts.status != StatusCode::OK {
        // A refusal is an ordinary response: its body says why.
        let body = tokio::time::timeout(carrier.timeout, read_whole(body, carrier.max_body))
            .await
            .unwrap_or(Err(TransportError::Timeout));
        let result = body.map(|body| Response::from_parts(parts, body));
        log_exchange(
            &carrier,
            &to,
            peer,
            method,
            path,
            size,
            &result,
            started.elapsed(),
        );
        return carrier
            .report(Input::Response {
                id,
                result,
                streaming: true,
            })
            .await;
    }
    let result = Ok(Response::from_parts(parts, Bytes::new()));
    log_exchange(
        &carrier,
        &to,
        peer.clone(),
        method,
        path,
        size,
        &result,
        started.elapsed(),
    );
    carrier
        .report(Input::Response {
            id,
            result,
            streaming: true,
        })
        .await;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            Err(error) => {
                tracing::debug!(node = %carrier.node, core = %to, error = %chain(&error), "push stream broke");
                break;
            }
        };
        carrier.observe(Traffic::StreamChunk {
            node: carrier.node.clone(),
            from: to.clone(),
            peer: peer.clone(),
            bytes: data.len(),
        });
        if carrier
            .inputs
            .send(Input::StreamData { id, data })
            .await
            .is_err()
        {
            return;
        }
    }
    carrier.report(Input::StreamEnd { id }).await;
}

/// Reads a response body whole; beyond the size limit only `limit + 1`
/// bytes are kept, which the core refuses as too large.
async fn read_whole(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, TransportError> {
    match read_limited(body, limit).await {
        Ok(Limited::Complete(bytes) | Limited::Overflow(bytes, _)) => Ok(bytes),
        Err(error) => Err(TransportError::Io(chain(&error))),
    }
}

fn classify(error: hyper_util::client::legacy::Error) -> TransportError {
    if error.is_connect() {
        TransportError::Connect(chain(&error))
    } else {
        TransportError::Io(chain(&error))
    }
}

/// An error and its causes on one line: the top-level messages of hyper's
/// errors ("client error (Connect)") say little on their own.
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn describe_request(request: &http::Request<Bytes>) -> (http::Method, String, usize) {
    (
        request.method().clone(),
        request.uri().path().to_owned(),
        request.body().len(),
    )
}

#[allow(clippy::too_many_arguments)]
fn log_exchange(
    carrier: &Carrier,
    to: &str,
    peer: Option<NodeId>,
    method: http::Method,
    path: String,
    request_bytes: usize,
    result: &Result<Response<Bytes>, TransportError>,
    elapsed: Duration,
) {
    let outcome = result.as_ref().map(Response::status).map_err(Clone::clone);
    match &outcome {
        Ok(status) => tracing::debug!(
            target: "mqtt_cluster_tokio::traffic",
            "{method} {path} {} -> {} {}",
            carrier.node,
            peer.as_ref().map_or(to, NodeId::as_str),
            status.as_u16()
        ),
        Err(error) => tracing::debug!(
            target: "mqtt_cluster_tokio::traffic",
            "{method} {path} {} -> {} failed: {error}",
            carrier.node,
            peer.as_ref().map_or(to, NodeId::as_str)
        ),
    }
    carrier.observe(Traffic::Exchange {
        from: carrier.node.clone(),
        to: to.to_owned(),
        peer,
        method,
        path,
        outcome,
        request_bytes,
        elapsed,
    });
}
