//! Which method and path carry which body (DESIGN §4).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Method, Request, StatusCode, Uri};

/// Headers a signed request carries: its content type or accept, and the
/// six the signature adds.
const REQUEST_HEADERS: usize = 8;

/// How many bases [`BaseUris`] keeps parsed. A node talks to its cores and
/// the cores' advertised addresses, far fewer than this; past it the cache
/// starts afresh, so a stream of odd addresses cannot grow it.
const KEPT_BASES: usize = 256;

/// One operation of the cluster API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /health`: liveness for load balancers, unauthenticated: `200`
    /// `{"status":"ok"}` while the node takes part in the cluster, `503`
    /// with `leaving`, `left` or `rejected` otherwise.
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
    /// `POST /confirm`: a core passes on destinations' confirmations of
    /// messages towards their origins
    /// ([`ConfirmRequest`](crate::wire::messages::ConfirmRequest)).
    Confirm,
    /// `POST /retained`: entries of the cluster's retained set
    /// ([`RetainedRequest`](crate::wire::retained::RetainedRequest)).
    Retained,
    /// `GET /status`: the node's view, for operators.
    Status,
    /// `GET /explain?topic=T[&from=M]`: why a message on a topic reaches
    /// each member or not, for operators
    /// ([`ExplainQuery`](crate::wire::explain::ExplainQuery)).
    Explain,
    /// `GET /metrics`: counters in the Prometheus text format,
    /// unauthenticated like `/health` since scrapers cannot sign.
    Metrics,
}

/// A request for a path or method the API does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    pub const ALL: [Endpoint; 14] = [
        Endpoint::Health,
        Endpoint::Register,
        Endpoint::Heartbeat,
        Endpoint::Sync,
        Endpoint::Leave,
        Endpoint::Stream,
        Endpoint::Routes,
        Endpoint::Forward,
        Endpoint::Ack,
        Endpoint::Confirm,
        Endpoint::Retained,
        Endpoint::Status,
        Endpoint::Explain,
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
            Endpoint::Confirm => "/confirm",
            Endpoint::Retained => "/retained",
            Endpoint::Status => "/status",
            Endpoint::Explain => "/explain",
            Endpoint::Metrics => "/metrics",
        }
    }

    /// The method it takes.
    pub fn method(self) -> Method {
        match self {
            Endpoint::Health
            | Endpoint::Stream
            | Endpoint::Status
            | Endpoint::Explain
            | Endpoint::Metrics => Method::GET,
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
    ///
    /// A base that does not form a URI leaves the bare path; the runtime then
    /// reports a transport error for it like for any bad address. A node
    /// sends through [`BaseUris::request`], which parses each base once.
    pub fn request(self, base: &str, body: Bytes) -> Request<Bytes> {
        let uri = format!("{}{}", base.trim_end_matches('/'), self.path());
        let uri = uri
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static(self.path()));
        self.request_with_uri(uri, body)
    }

    fn request_with_uri(self, uri: Uri, body: Bytes) -> Request<Bytes> {
        let mut request = Request::new(body);
        // Room for the content type and the six signing headers up front:
        // growing a header map rehashes it, once per request otherwise.
        *request.headers_mut() = http::HeaderMap::with_capacity(REQUEST_HEADERS);
        *request.method_mut() = self.method();
        *request.uri_mut() = uri;
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

/// Builds request URIs for the bases a node sends to, parsing each base
/// once: a node sends to the same few cores over and over, and formatting
/// and parsing `http://host:port/path` is a noticeable part of a request.
///
/// ```
/// use bytes::Bytes;
/// use mqtt_cluster_core::wire::endpoint::{BaseUris, Endpoint};
///
/// let mut bases = BaseUris::default();
/// let request = bases.request(Endpoint::Heartbeat, "http://core1:8884", Bytes::new());
/// assert_eq!(request.uri(), "http://core1:8884/heartbeat");
/// assert_eq!(
///     request.uri(),
///     Endpoint::Heartbeat.request("http://core1:8884", Bytes::new()).uri()
/// );
/// ```
#[derive(Debug, Default)]
pub struct BaseUris {
    /// Scheme and authority of each base; `None` for a base that is not
    /// plain `scheme://authority[/]`, which [`Endpoint::request`] handles.
    parsed: BTreeMap<String, Option<(Scheme, Authority)>>,
}

impl BaseUris {
    /// The same request as [`Endpoint::request`] gives.
    pub fn request(&mut self, endpoint: Endpoint, base: &str, body: Bytes) -> Request<Bytes> {
        let parsed = match self.parsed.get(base) {
            Some(parsed) => parsed.clone(),
            None => {
                if self.parsed.len() >= KEPT_BASES {
                    self.parsed.clear();
                }
                let parsed = scheme_and_authority(base);
                self.parsed.insert(base.to_owned(), parsed.clone());
                parsed
            }
        };
        let Some((scheme, authority)) = parsed else {
            return endpoint.request(base, body);
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme);
        parts.authority = Some(authority);
        parts.path_and_query = Some(PathAndQuery::from_static(endpoint.path()));
        match Uri::from_parts(parts) {
            Ok(uri) => endpoint.request_with_uri(uri, body),
            Err(_) => endpoint.request(base, body),
        }
    }
}

/// The scheme and authority of `http://host:port` (a trailing `/` allowed),
/// or `None` if `base` has anything else.
fn scheme_and_authority(base: &str) -> Option<(Scheme, Authority)> {
    let parts = base.parse::<Uri>().ok()?.into_parts();
    let plain = parts
        .path_and_query
        .as_ref()
        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty());
    match (parts.scheme, parts.authority) {
        (Some(scheme), Some(authority)) if plain => Some((scheme, authority)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_uris_build_what_endpoint_request_builds() {
        let mut bases = BaseUris::default();
        let cases = [
            "http://core1:8884",
            "http://core1:8884/",
            "https://[::1]:443",
            "http://core1:8884/prefix",
            "not a url",
            "",
        ];
        for _ in 0..2 {
            for base in cases {
                for e in Endpoint::ALL {
                    let cached = bases.request(e, base, Bytes::from_static(b"{}"));
                    let direct = e.request(base, Bytes::from_static(b"{}"));
                    assert_eq!(cached.uri(), direct.uri(), "{base} {e:?}");
                    assert_eq!(cached.method(), direct.method());
                    assert_eq!(cached.headers(), direct.headers());
                }
            }
        }
        assert_eq!(bases.parsed.len(), cases.len());
    }

    #[test]
    fn base_uris_stay_bounded() {
        let mut bases = BaseUris::default();
        for port in 1..=(KEPT_BASES as u32 * 3) {
            let base = format!("http://core:{port}");
            let r = bases.request(Endpoint::Ack, &base, Bytes::new());
            assert_eq!(r.uri().to_string(), format!("{base}/ack"));
            assert!(bases.parsed.len() <= KEPT_BASES);
        }
    }

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
