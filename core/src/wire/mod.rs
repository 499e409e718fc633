//! The wire protocol: bodies, their mapping to and from HTTP, stream framing.
//!
//! Everything here is pure data conversion: [`endpoint`] knows which method and
//! path carry which body, [`messages`] holds the bodies, [`sse`] frames the push
//! stream, [`headers`] names the protocol's headers. Decisions about what a
//! message *means* live in [`crate::node`].

pub mod batch_json;
pub mod batch_size;
pub mod endpoint;
pub mod explain;
pub mod headers;
pub mod messages;
pub mod paging;
pub mod retained;
pub mod sse;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub use endpoint::Endpoint;

/// A request or response body that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body is longer than the configured `maxBodySize`.
    #[error("body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes received (or announced by `content-length`).
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The body is not the JSON this endpoint expects.
    #[error("malformed body: {reason}")]
    Malformed {
        /// What the JSON parser said.
        reason: String,
    },
    /// A `content-length` header that is not a number.
    #[error("malformed content-length header")]
    BadContentLength,
    /// A stream frame with an event name this version does not know.
    #[error("unknown stream frame {event:?}")]
    UnknownFrame {
        /// The event name.
        event: String,
    },
    /// A response with a status the protocol does not expect here.
    #[error("peer answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The peer's error kind and message, if it sent a JSON error.
        message: String,
    },
}

impl WireError {
    /// The HTTP status to answer a request that failed this way.
    pub fn status(&self) -> StatusCode {
        match self {
            WireError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Short snake_case name, used as `error` in JSON error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::Malformed { .. } => "malformed",
            WireError::BadContentLength => "malformed",
            WireError::UnknownFrame { .. } => "unknown_frame",
            WireError::Status { .. } => "status",
        }
    }
}

/// The JSON body of every error response: `{ "error": kind, "message": text }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable kind, snake_case.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Refuses a body larger than `limit` before anything parses it, looking at
/// both the announced `content-length` and the bytes actually present.
pub fn check_size<T>(
    message: &http::Request<T>,
    body_len: usize,
    limit: usize,
) -> Result<(), WireError> {
    if let Some(value) = message.headers().get(header::CONTENT_LENGTH) {
        let announced: u64 = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or(WireError::BadContentLength)?;
        if announced > limit as u64 {
            return Err(WireError::TooLarge {
                size: announced,
                limit,
            });
        }
    }
    if body_len > limit {
        return Err(WireError::TooLarge {
            size: body_len as u64,
            limit,
        });
    }
    Ok(())
}

/// A JSON string, borrowed from the input when it holds no escapes (a plain
/// `Cow<str>` always allocates), for types that validate text into their
/// own representation.
#[derive(Deserialize)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) std::borrow::Cow<'a, str>);

/// Parses a JSON body.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    // Checking the whole body's UTF-8 at once is faster than letting the
    // parser check every string of a large batch on its own, and gives the
    // same answer: JSON text outside strings is ASCII.
    match std::str::from_utf8(body) {
        Ok(text) => decode_json_str(text),
        Err(_) => serde_json::from_slice(body).map_err(|e| WireError::Malformed {
            reason: e.to_string(),
        }),
    }
}

/// Parses JSON text that is already known to be UTF-8 (a stream frame's
/// data): the same as [`decode_json`], without checking the UTF-8 again.
pub fn decode_json_str<T: DeserializeOwned>(text: &str) -> Result<T, WireError> {
    serde_json::from_str(text).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
    })
}

/// Serialises a body. The protocol's types always serialise; should one ever
/// fail, the peer receives `null` and refuses it as malformed.
pub fn encode_json<T: Serialize>(body: &T) -> Bytes {
    encode_json_sized(body, 0)
}

/// Like [`encode_json`], with room for `expected` bytes reserved up front so
/// that a large body is not grown (and copied) a dozen times on its way.
pub fn encode_json_sized<T: Serialize>(body: &T, expected: usize) -> Bytes {
    let mut out = Vec::with_capacity(expected.max(128));
    if serde_json::to_writer(&mut out, body).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    Bytes::from(out)
}

/// A `200` response carrying `body` as JSON.
pub fn json_response<T: Serialize>(body: &T) -> Response<Bytes> {
    response_with(StatusCode::OK, "application/json", encode_json(body))
}

/// An error response with the JSON error body.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
) -> Response<Bytes> {
    let body = ErrorBody {
        error: kind.to_owned(),
        message: message.into(),
    };
    response_with(status, "application/json", encode_json(&body))
}

/// A response with the given status, content type and body.
pub fn response_with(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Reads a peer's response: the typed body of a `200`, or a
/// [`WireError::Status`] with the peer's own explanation.
pub fn decode_response<T: DeserializeOwned>(
    response: &Response<Bytes>,
    limit: usize,
) -> Result<T, WireError> {
    let body = response.body();
    if body.len() > limit {
        return Err(WireError::TooLarge {
            size: body.len() as u64,
            limit,
        });
    }
    if response.status() != StatusCode::OK {
        return Err(status_error(response));
    }
    decode_json(body)
}

/// Describes a non-`200` response by its status and JSON error body.
pub fn status_error(response: &Response<Bytes>) -> WireError {
    let message = match serde_json::from_slice::<ErrorBody>(response.body()) {
        Ok(body) => format!("{}: {}", body.error, body.message),
        Err(_) => {
            String::from_utf8_lossy(&response.body()[..response.body().len().min(200)]).into_owned()
        }
    };
    WireError::Status {
        status: response.status().as_u16(),
        message,
    }
}
