//! Sending a node's requests with ureq: each on a thread of its own, each
//! reporting its outcome to the node's thread exactly once.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use mqtt_cluster_core::{NodeId, Transmit, TransportError};

use crate::driver::{Input, InputSender};

/// How long an idle pooled connection is kept: less than the tokio
/// runtime's server keeps an idle connection (30 s), so the client retires
/// a connection before a server closes it under a request.
const POOL_IDLE: Duration = Duration::from_secs(20);

/// How much of a push stream is read at once.
const STREAM_READ: usize = 64 * 1024;

/// Everything a request thread needs; shared by all of a node's requests.
pub(crate) struct Carrier {
    /// Ordinary requests: `requestTimeout` covers the whole exchange.
    agent: ureq::Agent,
    /// Push streams: `requestTimeout` covers connecting and the head only,
    /// since the body lasts as long as the core feeds it.
    streams: ureq::Agent,
    max_body: usize,
    inputs: InputSender,
    node: NodeId,
}

impl Carrier {
    pub(crate) fn new(
        node: NodeId,
        timeout: Duration,
        max_body: usize,
        inputs: InputSender,
    ) -> Self {
        // Redirects are not followed: no peer of ours sends one, and
        // following would carry a signed request somewhere else.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .max_idle_age(POOL_IDLE)
            .build()
            .new_agent();
        let streams = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .build()
            .new_agent();
        Carrier {
            agent,
            streams,
            max_body,
            inputs,
            node,
        }
    }

    fn report(&self, input: Input) {
        // The node's thread is gone only when the node stopped; nobody
        // waits for the outcome then.
        let _ = self.inputs.send(input);
    }
}

/// Sends an ordinary request and reports its response, read whole up to the
/// size limit, or why there was none.
pub(crate) fn exchange(carrier: &Carrier, transmit: Transmit) {
    let Transmit {
        id, to, request, ..
    } = transmit;
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, &body[..]);
    let result = carrier
        .agent
        .run(request)
        .map_err(classify)
        .and_then(|response| {
            let (parts, body) = response.into_parts();
            let body = read_limited(body.into_reader(), carrier.max_body)?;
            Ok(Response::from_parts(parts, body))
        });
    if let Err(error) = &result {
        log::debug!("{}: request to {to} failed: {error}", carrier.node);
    }
    carrier.report(Input::Response {
        id,
        result,
        streaming: false,
    });
}

/// Opens a push stream: reports the head as soon as it arrives (with an
/// empty body), then every chunk of the body, then its end. Once
/// `cancelled` is set (the node opened another stream) it stops at the
/// next chunk without a word: the node has been told already.
pub(crate) fn stream(carrier: &Carrier, transmit: Transmit, cancelled: &AtomicBool) {
    let Transmit {
        id, to, request, ..
    } = transmit;
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, &body[..]);
    let response = match carrier.streams.run(request) {
        Ok(response) => response,
        Err(error) => {
            let error = classify(error);
            log::debug!("{}: push stream from {to} failed: {error}", carrier.node);
            return carrier.report(Input::Response {
                id,
                result: Err(error),
                streaming: true,
            });
        }
    };
    let (parts, body) = response.into_parts();
    let mut reader = body.into_reader();
    if parts.status != StatusCode::OK {
        // A refusal is an ordinary response: its body says why.
        let result = read_limited(reader, carrier.max_body).map(|b| Response::from_parts(parts, b));
        return carrier.report(Input::Response {
            id,
            result,
            streaming: true,
        });
    }
    carrier.report(Input::Response {
        id,
        result: Ok(Response::from_parts(parts, Bytes::new())),
        streaming: true,
    });
    let mut buffer = vec![0; STREAM_READ];
    loop {
        let read = reader.read(&mut buffer);
        if cancelled.load(Ordering::Acquire) {
            return;
        }
        match read {
            Ok(0) => break,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buffer[..n]);
                if carrier.inputs.send(Input::StreamData { id, data }).is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                log::debug!("{}: push stream from {to} broke: {error}", carrier.node);
                break;
            }
        }
    }
    carrier.report(Input::StreamEnd { id });
}

/// Reads a response body whole; beyond the size limit only `limit + 1`
/// bytes are kept, which the core refuses as too large.
fn read_limited(reader: impl Read, limit: usize) -> Result<Bytes, TransportError> {
    let mut body = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::TimedOut => TransportError::Timeout,
            _ => TransportError::Io(error.to_string()),
        })?;
    Ok(Bytes::from(body))
}

fn classify(error: ureq::Error) -> TransportError {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::Connect(error.to_string())
        }
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => TransportError::Timeout,
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound => {
                TransportError::Connect(io.to_string())
            }
            _ => TransportError::Io(io.to_string()),
        },
        other => TransportError::Io(other.to_string()),
    }
}

/// Whether a push stream's reader was told to stop; shared between the
/// node's thread and the reader's.
pub(crate) type Cancel = Arc<AtomicBool>;
