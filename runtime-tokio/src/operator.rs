//! One-off signed requests for operators' tools, such as `mqtt-cluster status`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::config::ClusterUrl;
use mqtt_cluster_core::wire::explain::ExplainQuery;
use mqtt_cluster_core::wire::{status_error, Endpoint, WireError};
use mqtt_cluster_core::{Incarnation, NodeId, TransportError};

use crate::body::{read_limited, Limited};
use crate::client::{build_client, chain, Connector};
use crate::clock::wall_now;

/// The largest answer an operator's request reads.
const MAX_ANSWER: usize = 64 << 20;

/// Speaks to cores as an operator: signs each request with the cluster
/// secret under its own name, so that cores accept it like a member's.
///
/// Each request's counter is the wall clock in microseconds, so that runs
/// of the tool never reuse one (the cores' replay guards refuse a counter
/// seen before); the incarnation is always 1.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mqtt_cluster_core::auth::Secret;
/// use mqtt_cluster_core::NodeId;
/// use mqtt_cluster_tokio::Operator;
///
/// let operator = Operator::new(NodeId::new("operator")?, Some(Secret::new("the-cluster-secret")));
/// let json = operator.status(&"http://core1:8884".parse()?).await?;
/// println!("{}", String::from_utf8_lossy(&json));
/// # Ok(())
/// # }
/// ```
pub struct Operator {
    name: NodeId,
    auth: Authenticator,
    timeout: Duration,
    client: Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An operator's request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// No HTTP answer.
    #[error("{url}: {source}")]
    Transport {
        /// The core asked.
        url: String,
        /// Why there was no answer.
        #[source]
        source: TransportError,
    },
    /// The core answered with an error.
    #[error("{url} answered {status}: {message}")]
    Refused {
        /// The core asked.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The core's explanation.
        message: String,
    },
}

impl Operator {
    /// An operator called `name`, signing with `secret` (`None` for an open
    /// cluster). Requests time out after 10 seconds.
    pub fn new(name: NodeId, secret: Option<Secret>) -> Self {
        let timeout = Duration::from_secs(10);
        Operator {
            name,
            auth: Authenticator::new(secret, Duration::from_secs(30), 1),
            timeout,
            client: build_client(
                timeout,
                #[cfg(feature = "tls")]
                None,
            ),
        }
    }

    /// Checks `https://` cores' certificates against the CA of `tls`.
    #[cfg(feature = "tls")]
    pub fn with_tls(self, tls: &crate::tls::TlsOptions) -> Result<Self, crate::tls::TlsError> {
        let loaded = tls.load()?;
        Ok(Operator {
            client: build_client(self.timeout, loaded.connector),
            ..self
        })
    }

    /// Another bound on each whole request (connecting stays bound by 10
    /// seconds).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Operator { timeout, ..self }
    }

    /// `GET /status` of the core at `url`: the JSON of its
    /// [`Status`](mqtt_cluster_core::Status).
    pub async fn status(&self, url: &ClusterUrl) -> Result<Bytes, OperatorError> {
        self.get(Endpoint::Status, url).await
    }

    /// `GET /explain` of the core at `url` for `query`: the JSON of its
    /// [`Explanation`](mqtt_cluster_core::node::Explanation).
    pub async fn explain(
        &self,
        url: &ClusterUrl,
        query: &ExplainQuery,
    ) -> Result<Bytes, OperatorError> {
        let base = url.to_string();
        self.get_request(&base, query.request(&base)).await
    }

    /// `GET /metrics` of the core at `url`: Prometheus text.
    pub async fn metrics(&self, url: &ClusterUrl) -> Result<Bytes, OperatorError> {
        self.get(Endpoint::Metrics, url).await
    }

    /// A signed `GET` of `endpoint`; the body of a `200`, else why not.
    async fn get(&self, endpoint: Endpoint, url: &ClusterUrl) -> Result<Bytes, OperatorError> {
        let base = url.to_string();
        self.get_request(&base, endpoint.request(&base, Bytes::new()))
            .await
    }

    async fn get_request(
        &self,
        base: &str,
        request: Request<Bytes>,
    ) -> Result<Bytes, OperatorError> {
        let base = base.to_owned();
        let response = self
            .send(request)
            .await
            .map_err(|source| OperatorError::Transport {
                url: base.clone(),
                source,
            })?;
        if response.status() != StatusCode::OK {
            return Err(OperatorError::Refused {
                url: base,
                status: response.status(),
                message: match status_error(&response) {
                    WireError::Status { message, .. } => message,
                    other => other.to_string(),
                },
            });
        }
        Ok(response.into_body())
    }

    /// Signs `request` (which must have an absolute URI) and sends it.
    pub async fn send(
        &self,
        mut request: Request<Bytes>,
    ) -> Result<Response<Bytes>, TransportError> {
        let wall = wall_now();
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let counter = micros.max(1);
        self.auth
            .sign(&mut request, &self.name, Incarnation(1), counter, wall);
        let exchange = async {
            let response = self
                .client
                .request(request.map(Full::new))
                .await
                .map_err(|e| TransportError::Connect(chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = match read_limited(body, MAX_ANSWER).await {
                Ok(Limited::Complete(b) | Limited::Overflow(b, _)) => b,
                Err(e) => return Err(TransportError::Io(chain(&e))),
            };
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(TransportError::Timeout))
    }
}
