//! Which method and path carry which body (DESIGN §4).

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};

/// Headers a signed request carries: its content type or accept, and the
/// six the signature adds.
const REQUEST_HEADERS: usize = 8;

/// One operation of the cluster API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /health`: liveness for load balancers, unauthenticated.
    Health,
    /// `POST /register`: join.
    Register,
    /// `POST /heartbeat`: liveness and member-list digest.
    Heartbeat,
    /// `POST /sync`: member records between cores.
    Sync,
    /// `POST /leave`: graceful departure.
    Leave,
    /// `GET /stream`: the push channel to a worker.
    Stream,
    /// `POST /routes`: a member's subscription changes.
    Routes,
    /// `POST /forward`: a batch of messages.
    Forward,
    /// `POST /ack`: a worker acknowledges stream batches.
    Ack,
    /// `GET /status`: the node's view, for operators.
    Status,
    /// `GET /metrics`: counters in the Prometheus text format,
    /// unauthenticated like `/health` since scrapers cannot sign.
    Metrics,
}

/// A request for a path or method the API does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No such path.
    #[error("no endpoint at {path}")]
    NotFound {
        /// The path asked for (cut to a printable length).
        path: String,
    },
    /// The path exists under another method.
    #[error("{path} takes {allow}, not {method}")]
    MethodNotAllowed {
        /// The path.
        path: &'static str,
        /// The method used.
        method: String,
        /// The method the path takes.
        allow: &'static str,
    },
}

impl RouteError {
    /// `404` or `405`.
    pub fn status(&self) -> StatusCode {
        match self {
            RouteError::NotFound { .. } => StatusCode::NOT_FOUND,
            RouteError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Short snake_case name for the JSON error body.
    pub fn kind(&self) -> &'static str {
        match self {
            RouteError::NotFound { .. } => "not_found",
            RouteError::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }
}

impl Endpoint {
    /// Every endpoint, for tests and documentation.
    pub const ALL: [Endpoint; 11] = [
        Endpoint::Health,
        Endpoint::Register,
        Endpoint::Heartbeat,
        Endpoint::Sync,
        Endpoint::Leave,
        Endpoint::Stream,
        Endpoint::Routes,
        Endpoint::Forward,
        Endpoint::Ack,
        Endpoint::Status,
        Endpoint::Metrics,
    ];

    /// The path it is served at.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Health => "/health",
            Endpoint::Register => "/register",
            Endpoint::Heartbeat => "/heartbeat",
            Endpoint::Sync => "/sync",
            Endpoint::Leave => "/leave",
            Endpoint::Stream => "/stream",
            Endpoint::Routes => "/routes",
            Endpoint::Forward => "/forward",
            Endpoint::Ack => "/ack",
            Endpoint::Status => "/status",
            Endpoint::Metrics => "/metrics",
        }
    }

    /// The method it takes.
    pub fn method(self) -> Method {
        match self {
            Endpoint::Health | Endpoint::Stream | Endpoint::Status | Endpoint::Metrics => {
                Method::GET
            }
            _ => Method::POST,
        }
    }

    /// Whether a request to it must carry a valid signature.
    pub fn is_authenticated(self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Metrics)
    }

    /// Finds the endpoint a request is for. The query string is ignored.
    pub fn recognise(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
        let endpoint = Endpoint::ALL
            .into_iter()
            .find(|e| e.path() == path)
            .ok_or_else(|| RouteError::NotFound {
                path: path.chars().take(128).collect(),
            })?;
        // HEAD is as good as GET for the read-only endpoints.
        let method_ok = *method == endpoint.method()
            || (*method == Method::HEAD && endpoint.method() == Method::GET);
        if method_ok {
            Ok(endpoint)
        } else {
            Err(RouteError::MethodNotAllowed {
                path: endpoint.path(),
                method: method.as_str().chars().take(32).collect(),
                allow: if endpoint.method() == Method::GET {
                    "GET"
                } else {
                    "POST"
                },
            })
        }
    }

    /// An unsigned request to this endpoint at `base` (`http://host:port`).
    pub fn request(self, base: &str, body: Bytes) -> Request<Bytes> {
        let uri = format!("{}{}", base.trim_end_matches('/'), self.path());
        let mut request = Request::new(body);
        // Room for the content type and the six signing headers up front:
        // growing a header map rehashes it, once per request otherwise.
        *request.headers_mut() = http::HeaderMap::with_capacity(REQUEST_HEADERS);
        *request.method_mut() = self.method();
        // A base that does not form a URI leaves the path alone; the runtime
        // then reports a transport error for it like for any bad address.
        if let Ok(uri) = uri.parse::<http::Uri>() {
            *request.uri_mut() = uri;
        } else if let Ok(uri) = self.path().parse::<http::Uri>() {
            *request.uri_mut() = uri;
        }
        if self.method() == Method::POST {
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
        } else if self == Endpoint::Stream {
            request.headers_mut().insert(
                header::ACCEPT,
                header::HeaderValue::from_static("text/event-stream"),
            );
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_recognised_by_its_own_method_and_path() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::recognise(&e.method(), e.path()), Ok(e));
        }
    }

    #[test]
    fn wrong_method_is_405_and_unknown_path_is_404() {
        let err = Endpoint::recognise(&Method::GET, "/register").unwrap_err();
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        let err = Endpoint::recognise(&Method::POST, "/nope").unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn requests_carry_absolute_uri_method_and_content_type() {
        let r = Endpoint::Register.request("http://core1:8884/", Bytes::from_static(b"{}"));
        assert_eq!(r.uri().to_string(), "http://core1:8884/register");
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
