//! What crossed the wire, for hosts that want a transcript.

use std::sync::Arc;
use std::time::Duration;

use mqtt_cluster_core::{NodeId, TransportError};

/// One thing a node sent or received as a client, reported to the observer
/// set with [`Options::observe`](crate::Options::observe).
///
/// Only the sending side reports: a core's answers are the other half of some
/// node's [`Traffic::Exchange`], and the bytes it pushes down a stream arrive
/// as the reader's [`Traffic::StreamChunk`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Traffic {
    /// A request and what became of it.
    Exchange {
        /// The sending node.
        from: NodeId,
        /// The peer's base URL.
        to: String,
        /// The peer's node id, when the sender knew it.
        peer: Option<NodeId>,
        /// The HTTP method.
        method: http::Method,
        /// The path.
        path: String,
        /// The response status, or why there was none.
        outcome: Result<http::StatusCode, TransportError>,
        /// Bytes of the request body.
        request_bytes: usize,
        /// From sending to the response head.
        elapsed: Duration,
    },
    /// Bytes that arrived on a worker's push stream.
    StreamChunk {
        /// The reading worker.
        node: NodeId,
        /// The core's base URL.
        from: String,
        /// The core's node id, when the worker knew it.
        peer: Option<NodeId>,
        /// The chunk's length.
        bytes: usize,
    },
}

/// The observer callback. It runs on the tasks that carry requests, so it
/// must be quick; send what it sees to a channel for anything slow.
pub type Observer = Arc<dyn Fn(&Traffic) + Send + Sync>;
