//! The node's settings (plugin.yaml).
//!
//! [`Config::from_yaml_str`] reads the plugin.yaml the host broker ships; the
//! core never opens files, so reading the file is the caller's job.
//! [`Config::validate`] applies the same checks to a config built in code.
//!
//! Every key may be written in camelCase (canonical, like the seed's keys) or
//! snake_case (like the original plugin's shipped file); giving one setting
//! under two spellings is an error. Unknown keys are errors too, with the
//! nearest known key suggested: silently ignoring them once left users on the
//! default queue policy after a rename.
//!
//! | key | type | default |
//! |---|---|---|
//! | `core` | `true`/`false` | `false` (worker) |
//! | `host` | host name or IP | `0.0.0.0` |
//! | `port` | 1–65535 | `8884` |
//! | `queueLength` | 1–10000000 | `1024` |
//! | `queuePolicy` (alias `queueDiscardPolicy`) | `0` discard newest, `1` discard oldest | `0` |
//! | `clusters` | list of `http(s)://host:port` | empty (a worker needs one) |
//! | `nodeName` | 1–64 of `A-Z a-z 0-9 . _ - :` | none (derived from the seed) |
//! | `advertise` | `http(s)://host:port` | none |
//! | `secret` | non-empty string | none |
//! | `openCluster` | `true`/`false` | `false` |
//! | `heartbeatInterval` | duration, ≥ 10ms | `1s` |
//! | `suspectTimeout` | duration | `3s` |
//! | `deadTimeout` | duration | `10s` |
//! | `requestTimeout` | duration | `5s` |
//! | `retryBackoff` | duration | `200ms` |
//! | `retryBackoffMax` | duration | `5s` |
//! | `messageExpiry` | duration | `60s` |
//! | `freshnessWindow` | duration | `30s` |
//! | `batchSize` | 1–65536 | `256` |
//! | `maxInFlight` | 1–10000000 | `1024` |
//! | `maxBodySize` | 1024–268435456 bytes | `4194304` (4 MiB) |
//! | `retainedLimit` | 0–1000000 topics | `10000` (0: retained messages stay local) |
//!
//! A duration is whole milliseconds (`500`) or a whole number with a unit
//! (`"500ms"`, `"2s"`, `"1m"`, `"1h"`), from 1ms to 24h.
//!
//! Rules across keys: a worker needs `clusters`; every node needs either a
//! `secret` or an explicit `openCluster: true` (not both);
//! `suspectTimeout > heartbeatInterval`, `deadTimeout > suspectTimeout`,
//! `retryBackoff <= retryBackoffMax`; a core is listed at most once in
//! `clusters`.

mod duration;
mod error;
mod keys;
mod load;
mod serialize;
mod url;
mod validate;

use std::time::Duration;

pub use self::duration::{parse_duration, DurationError};
pub use self::error::ConfigError;
pub use self::url::{ClusterUrl, ClusterUrlError, Scheme};

use crate::auth::Secret;
use crate::id::{NodeId, Role};
use crate::queue::QueuePolicy;

/// A node's settings, as read from plugin.yaml or built in code.
///
/// [`Config::default`] is a worker with no `clusters` and no secret, which
/// [`Config::validate`] refuses until both are set; [`Config::core`] and
/// [`Config::worker`] plus the `with_*` methods are the short way to a valid one:
///
/// ```
/// use mqtt_cluster_core::auth::Secret;
/// use mqtt_cluster_core::config::Config;
/// let core = Config::core("0.0.0.0", 8884).with_secret(Secret::new("s3cret-value"));
/// assert!(core.validate().is_ok());
/// let worker = Config::worker(["http://core1:8884".parse().unwrap()]).with_open_cluster(true);
/// assert!(worker.validate().is_ok());
/// assert!(Config::default().validate().is_err());
/// ```
///
/// Its `Serialize` form uses the camelCase keys, durations in milliseconds,
/// the queue policy as its number and the secret as `"***"`, for `status()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Whether this node is a core (serves the cluster API) rather than a
    /// worker. Key `core`; default `false`.
    pub core: bool,
    /// The address a core's HTTP API listens on; unused by workers. Key
    /// `host`; default `"0.0.0.0"`.
    pub host: String,
    /// The port a core's HTTP API listens on, 1 to 65535; unused by workers.
    /// Key `port`; default `8884`.
    pub port: u16,
    /// The bound of every message queue, 1 to 10 000 000 messages. Key
    /// `queueLength`; default `1024`.
    pub queue_length: usize,
    /// What a full queue drops. Key `queuePolicy` (or `queueDiscardPolicy`):
    /// `0` discard newest, `1` discard oldest; default discard newest.
    pub queue_policy: QueuePolicy,
    /// The cores to talk to: a worker registers with the first that answers;
    /// a core syncs with all of them (listing itself is harmless). Key
    /// `clusters`; default empty, which only a core may have.
    pub clusters: Vec<ClusterUrl>,
    /// This node's name in the cluster. Key `nodeName`; default none, in
    /// which case one is derived from the node's seed.
    pub node_name: Option<NodeId>,
    /// The URL other cores should use to reach this core, when it differs
    /// from `host`/`port` (NAT, containers). Key `advertise`; default none.
    pub advertise: Option<ClusterUrl>,
    /// The cluster secret all nodes share, used to sign every request. Key
    /// `secret`; default none. Must not be empty.
    pub secret: Option<Secret>,
    /// An explicit opt-in to running without a secret (no authentication).
    /// Key `openCluster`; default `false`.
    pub open_cluster: bool,
    /// How often a member heartbeats, at least 10ms. Key
    /// `heartbeatInterval`; default 1s.
    pub heartbeat_interval: Duration,
    /// Silence after which a member is suspected; longer than
    /// `heartbeat_interval`. Key `suspectTimeout`; default 3s.
    pub suspect_timeout: Duration,
    /// Silence after which a member is declared dead and its routes removed;
    /// longer than `suspect_timeout`. Key `deadTimeout`; default 10s.
    pub dead_timeout: Duration,
    /// How long a request may go unanswered before it counts as failed. Key
    /// `requestTimeout`; default 5s.
    pub request_timeout: Duration,
    /// The first wait before retrying a failed request; doubled up to
    /// `retry_backoff_max`. Key `retryBackoff`; default 200ms.
    pub retry_backoff: Duration,
    /// The longest wait between retries, at least `retry_backoff`. Key
    /// `retryBackoffMax`; default 5s.
    pub retry_backoff_max: Duration,
    /// How long a QoS ≥ 1 message is retried before it is given up (and
    /// counted as dropped). Key `messageExpiry`; default 60s.
    pub message_expiry: Duration,
    /// The wall-clock skew accepted on signed requests. Key
    /// `freshnessWindow`; default 30s.
    pub freshness_window: Duration,
    /// The most messages in one `POST /forward` or stream frame, 1 to 65536.
    /// Key `batchSize`; default 256.
    pub batch_size: usize,
    /// The most unacknowledged messages per peer, 1 to 10 000 000; beyond it
    /// messages wait in the peer's queue. Key `maxInFlight`; default 1024.
    pub max_in_flight: usize,
    /// The largest request or response body accepted, checked before
    /// parsing, 1 KiB to 256 MiB. Key `maxBodySize`; default 4 MiB.
    pub max_body_size: usize,
    /// The most topics the cluster's retained set holds, 0 to 1 000 000;
    /// beyond it a retained message for a new topic is refused (counted and
    /// reported). 0 keeps retained messages local: no set is replicated.
    /// Key `retainedLimit`; default 10000. Give every node the same value.
    pub retained_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            core: false,
            host: "0.0.0.0".to_string(),
            port: 8884,
            queue_length: 1024,
            queue_policy: QueuePolicy::DiscardNewest,
            clusters: Vec::new(),
            node_name: None,
            advertise: None,
            secret: None,
            open_cluster: false,
            heartbeat_interval: Duration::from_secs(1),
            suspect_timeout: Duration::from_secs(3),
            dead_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(5),
            message_expiry: Duration::from_secs(60),
            freshness_window: Duration::from_secs(30),
            batch_size: 256,
            max_in_flight: 1024,
            max_body_size: 4 * 1024 * 1024,
            retained_limit: 10_000,
        }
    }
}

impl Config {
    /// Reads a plugin.yaml document and checks it as [`Config::validate`] does.
    ///
    /// ```
    /// use mqtt_cluster_core::config::Config;
    /// let config = Config::from_yaml_str(
    ///     "core: true\nport: 8884\nqueue_length: 4096\nsecret: s3cret-value\n",
    /// )?;
    /// assert!(config.core);
    /// assert_eq!(config.queue_length, 4096);
    ///
    /// let err = Config::from_yaml_str("core: true\nqueuePolicyy: 1\n").unwrap_err();
    /// assert_eq!(err.to_string(), "unknown key `queuePolicyy`; did you mean `queuePolicy`?");
    /// # Ok::<(), mqtt_cluster_core::config::ConfigError>(())
    /// ```
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        load::from_yaml_str(text)
    }

    /// Like [`Config::from_yaml_str`], for bytes as read from a file; refuses
    /// anything that is not UTF-8.
    pub fn from_yaml_slice(bytes: &[u8]) -> Result<Config, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        Self::from_yaml_str(text)
    }

    /// The address a core listens on, as `host:port` for a socket API,
    /// with an IPv6 host in brackets.
    ///
    /// ```
    /// use mqtt_cluster_core::config::Config;
    /// assert_eq!(Config::core("::1", 8884).listen_address(), "[::1]:8884");
    /// assert_eq!(Config::core("0.0.0.0", 8884).listen_address(), "0.0.0.0:8884");
    /// ```
    pub fn listen_address(&self) -> String {
        let (host, port) = (&self.host, self.port);
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// The first `https://` URL among `clusters` and `advertise`: a runtime
    /// without TLS refuses to start with one rather than fail every request
    /// to it later.
    pub fn first_https_url(&self) -> Option<&ClusterUrl> {
        self.clusters
            .iter()
            .chain(self.advertise.as_ref())
            .find(|url| url.scheme() == Scheme::Https)
    }

    /// Checks every value's range and the rules across keys (see the
    /// [module documentation](crate::config)); errors name keys in camelCase.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::check(self, &keys::KeyNames::default())
    }

    /// A core listening on `host:port`, other settings at their defaults.
    /// Still needs a secret or an open-cluster opt-in to be valid.
    pub fn core(host: impl Into<String>, port: u16) -> Config {
        Config {
            core: true,
            host: host.into(),
            port,
            ..Config::default()
        }
    }

    /// A worker that registers with the first of `clusters` that answers,
    /// other settings at their defaults. Still needs a secret or an
    /// open-cluster opt-in to be valid.
    pub fn worker(clusters: impl IntoIterator<Item = ClusterUrl>) -> Config {
        Config {
            clusters: clusters.into_iter().collect(),
            ..Config::default()
        }
    }

    /// Sets the cluster secret.
    pub fn with_secret(self, secret: Secret) -> Self {
        Config {
            secret: Some(secret),
            ..self
        }
    }

    /// Sets the node's name.
    pub fn with_name(self, name: NodeId) -> Self {
        Config {
            node_name: Some(name),
            ..self
        }
    }

    /// Opts in to (or out of) running without a secret.
    pub fn with_open_cluster(self, open: bool) -> Self {
        Config {
            open_cluster: open,
            ..self
        }
    }

    /// [`Role::Core`] or [`Role::Worker`], from `core`.
    pub fn role(&self) -> Role {
        if self.core {
            Role::Core
        } else {
            Role::Worker
        }
    }
}
