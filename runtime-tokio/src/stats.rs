//! Counters of the runtime itself, beside the core's [`Stats`](mqtt_cluster_core::Stats).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept by tasks other than the driver.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) refused_in_clear: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the runtime did, since the node started; see
/// [`ClusterHandle::runtime_stats`](crate::ClusterHandle::runtime_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Connections a core accepted.
    pub connections_accepted: u64,
    /// Requests a core received.
    pub requests_received: u64,
    /// Requests the runtime answered itself, without the core: a body not
    /// received in time, a broken body, or a node that had stopped.
    pub requests_refused_by_runtime: u64,
    /// Connections a core closed at once because it already served
    /// [`Options::max_connections`](crate::Options::max_connections).
    pub connections_refused: u64,
    /// Requests this node did not send because TLS is configured and the
    /// peer's address is plain `http://` (each reported to the node as
    /// [`TransportError::Insecure`](mqtt_cluster_core::TransportError::Insecure)).
    pub requests_refused_in_clear: u64,
    /// Requests this node sent.
    pub requests_sent: u64,
    /// Requests sent and not yet answered (push streams not counted).
    pub requests_in_flight: usize,
    /// Push streams a core is feeding now.
    pub streams_served: usize,
    /// Push streams a core closed because their reader fell more than
    /// [`Options::stream_buffer`](crate::Options::stream_buffer) frames behind.
    pub streams_closed_slow: u64,
    /// Events waiting for the host beyond the event channel's capacity.
    pub events_waiting: usize,
}
