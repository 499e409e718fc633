//! Runtime settings that are not part of plugin.yaml.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::traffic::{Observer, Traffic};

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
    /// to finish. Default: twice `requestTimeout`.
    pub fn shutdown_timeout(self, timeout: Duration) -> Self {
        Options {
            shutdown_timeout: Some(timeout),
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
