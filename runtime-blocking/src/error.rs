//! What can go wrong, by API surface.

use mqtt_cluster_core::node::PublishError;
use mqtt_cluster_core::routing::TopicError;
use mqtt_cluster_core::NodeError;

/// The node could not be started; nothing is running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration was refused by the core.
    #[error("invalid configuration: {0}")]
    Node(#[from] NodeError),
    /// The core's address could not be bound, or its listener not served.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address, `host:port`.
        addr: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A listener was passed for a worker, which serves nothing.
    #[error("a worker serves no cluster API, so it takes no listener")]
    ListenerForWorker,
    /// A URL in the configuration needs TLS, which this runtime does not
    /// offer.
    #[error("{url} needs TLS, which the blocking runtime does not offer")]
    TlsUnavailable {
        /// The `https://` URL.
        url: String,
    },
    /// The node's thread could not be started.
    #[error("cannot start the node's thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A request to a running node failed; for [`ClusterError::Stopped`] the
/// node is gone, otherwise it refused the request and nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node has stopped (shut down, aborted, or every handle dropped).
    #[error("the cluster node has stopped")]
    Stopped,
    /// A topic filter that is not valid MQTT.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The node has left or was rejected and publishes nothing more.
    #[error(transparent)]
    Publish(#[from] PublishError),
}
