//! Runtime settings that are not part of plugin.yaml.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::traffic::{Observer, Traffic};

/// Connections a core serves at once, by default: well under the usual
/// limit of 1024 file descriptors, with room for the node's own requests.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Requests per kind (deliveries, control) a core holds at once while it
/// reads them or they wait for the node, by default.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 32;
/// How long a connection may take to send a request's head, or sit idle
/// between requests, by default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How the runtime runs a node: everything that is about this process rather
/// than the cluster, so it stays out of plugin.yaml.
///
/// ```
/// use std::time::Duration;
/// use mqtt_cluster_tokio::Options;
/// let options = Options::new()
///     .seed(42)
///     .event_capacity(4096)
///     .shutdown_timeout(Duration::from_secs(2));
/// # let _ = options;
/// ```
pub struct Options {
    pub(crate) seed: Option<u64>,
    pub(crate) listener: Option<TcpListener>,
    pub(crate) event_capacity: usize,
    pub(crate) command_capacity: usize,
    pub(crate) input_capacity: usize,
    pub(crate) stream_buffer: usize,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) max_connections: usize,
    pub(crate) max_pending_requests: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) observer: Option<Observer>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: None,
            listener: None,
            event_capacity: 1024,
            command_capacity: 1024,
            input_capacity: 1024,
            stream_buffer: 1024,
            shutdown_timeout: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            observer: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("seed", &self.seed)
            .field("listener", &self.listener)
            .field("event_capacity", &self.event_capacity)
            .field("command_capacity", &self.command_capacity)
            .field("input_capacity", &self.input_capacity)
            .field("stream_buffer", &self.stream_buffer)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_pending_requests", &self.max_pending_requests)
            .field("header_timeout", &self.header_timeout)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Options {
    /// The defaults: a seed from the OS, a listener bound from
    /// `host`/`port`, 1024 slots in each channel.
    pub fn new() -> Self {
        Options::default()
    }

    /// The node's only source of randomness (it also names a node whose
    /// config has no `nodeName`). Without it, one is drawn from the OS.
    pub fn seed(self, seed: u64) -> Self {
        Options {
            seed: Some(seed),
            ..self
        }
    }

    /// Serves the core's API on `listener` instead of binding `host`/`port`.
    ///
    /// This is how a test runs a core on an ephemeral port: bind
    /// `127.0.0.1:0` first, then write the bound port into `port` and the
    /// URL into `clusters` (and `advertise`), since the core learns its own
    /// address from there.
    pub fn listener(self, listener: TcpListener) -> Self {
        Options {
            listener: Some(listener),
            ..self
        }
    }

    /// Events that may wait for the host before the node slows down (see
    /// the crate docs on backpressure). At least 1; default 1024.
    pub fn event_capacity(self, capacity: usize) -> Self {
        Options {
            event_capacity: capacity.max(1),
            ..self
        }
    }

    /// Host calls (`publish`, `subscribe`, ...) that may wait for the node.
    /// At least 1; default 1024.
    pub fn command_capacity(self, capacity: usize) -> Self {
        Options {
            command_capacity: capacity.max(1),
            ..self
        }
    }

    /// Network inputs (requests served, responses and stream bytes
    /// received) that may wait for the node. At least 1; default 1024.
    pub fn input_capacity(self, capacity: usize) -> Self {
        Options {
            input_capacity: capacity.max(1),
            ..self
        }
    }

    /// Frames a core buffers for each worker's push stream. A reader that
    /// falls further behind has its stream closed; it reconnects and the
    /// core sends again whatever was not acknowledged. At least 1; default
    /// 1024.
    ///
    /// Keep it at least the core's `maxInFlight` (default 1024 too): a
    /// reconnecting worker is sent everything unacknowledged at once, up to
    /// one frame per message in flight, and a buffer smaller than that
    /// closes the new stream straight away, again and again. The runtime
    /// logs a warning at start when it is smaller.
    pub fn stream_buffer(self, frames: usize) -> Self {
        Options {
            stream_buffer: frames.max(1),
            ..self
        }
    }

    /// How long [`ClusterHandle::shutdown`](crate::ClusterHandle::shutdown)
    /// waits for the leave to be acknowledged and for requests in flight
    /// to finish. Default: twice `requestTimeout`. [`Duration::MAX`] (or
    /// any timeout too long to add to the clock) waits for a year at most.
    pub fn shutdown_timeout(self, timeout: Duration) -> Self {
        Options {
            shutdown_timeout: Some(timeout),
            ..self
        }
    }

    /// The most connections a core serves at once; one more is closed as
    /// soon as it is accepted, and counted in
    /// [`RuntimeStats::connections_refused`](crate::RuntimeStats::connections_refused).
    /// Peers' pooled connections and push streams count too, so keep it
    /// above the number of members. At least 1; default
    /// [`DEFAULT_MAX_CONNECTIONS`] (512).
    ///
    /// A client that holds connections without sending (see
    /// [`header_timeout`](Options::header_timeout)) can take every slot
    /// until they time out; what it cannot do is exhaust the process's file
    /// descriptors or memory.
    pub fn max_connections(self, connections: usize) -> Self {
        Options {
            max_connections: connections.max(1),
            ..self
        }
    }

    /// The most requests of each kind a core holds at once from their head
    /// until the node has answered them: each may hold up to `maxBodySize`
    /// before it is authenticated. The kinds are those that may bring
    /// deliveries (`/forward`) and all others, so that `/forward` requests
    /// waiting for a slow host never crowd out heartbeats. One more is
    /// answered `503 busy` without its body being read, and counted in
    /// [`RuntimeStats::requests_refused_by_runtime`](crate::RuntimeStats::requests_refused_by_runtime);
    /// its sender retries. Worst-case memory for bodies is twice this times
    /// `maxBodySize`. At least 1; default [`DEFAULT_MAX_PENDING_REQUESTS`]
    /// (32).
    pub fn max_pending_requests(self, requests: usize) -> Self {
        Options {
            max_pending_requests: requests.max(1),
            ..self
        }
    }

    /// How long a served connection may take to send a request's head, and
    /// may sit idle between requests, before the core closes it; a body
    /// must then arrive within `requestTimeout`. Keep it above the clients'
    /// pool idle time (20 s in both runtimes), or pooled connections are
    /// closed under them. At least 1 ms; default [`DEFAULT_HEADER_TIMEOUT`]
    /// (30 s).
    pub fn header_timeout(self, timeout: Duration) -> Self {
        Options {
            header_timeout: timeout.max(Duration::from_millis(1)),
            ..self
        }
    }

    /// Calls `observer` with every request this node sends (and its fate)
    /// and every chunk of its push stream: a transcript for demos and
    /// debugging. Every request is also logged at `debug` level under the
    /// target `mqtt_cluster_tokio::traffic`.
    pub fn observe(self, observer: impl Fn(&Traffic) + Send + Sync + 'static) -> Self {
        Options {
            observer: Some(Arc::new(observer)),
            ..self
        }
    }

    /// TLS: the certificate a core serves HTTPS with, and the CA that peers'
    /// certificates are checked against for `https://` URLs.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(self, tls: crate::tls::TlsOptions) -> Self {
        Options {
            tls: Some(tls),
            ..self
        }
    }
}
