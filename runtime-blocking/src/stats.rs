//! Counters of the runtime itself, beside the core's [`Stats`](mqtt_cluster_core::Stats).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept by threads other than the node's.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) acceptors_replaced: AtomicU64,
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
    /// Requests a core received.
    pub requests_received: u64,
    /// Requests the runtime answered itself, without the core: a request
    /// whose head could not be turned into HTTP types, a broken body, or a
    /// node that had stopped.
    pub requests_refused_by_runtime: u64,
    /// Connections given up after answering `413` to a body announced
    /// larger than could safely be read and discarded (see the crate docs
    /// on limits): their socket stays open until the process exits.
    pub connections_abandoned: u64,
    /// Times the server's acceptor failed (out of file descriptors, say)
    /// and a new one took over the listener.
    pub acceptors_replaced: u64,
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
