//! Whether a core's push stream buffer can hold what a reconnect resends.

use crate::config::Config;

/// Why `frames` is too small a push stream buffer for a core with this
/// `config`, or `None` if it is large enough.
///
/// A worker that reconnects is sent everything unacknowledged at once, up
/// to one frame per message in flight (`maxInFlight`). A runtime that
/// closes a stream whose buffer is full would close the new stream straight
/// away, again and again; it should warn at start.
///
/// ```
/// use mqtt_cluster_core::runtime::stream_buffer_shortfall;
/// use mqtt_cluster_core::Config;
/// let config = Config::core("127.0.0.1", 8884); // maxInFlight 1024
/// assert!(stream_buffer_shortfall(&config, 1024).is_none());
/// assert!(stream_buffer_shortfall(&config, 4).is_some());
/// ```
pub fn stream_buffer_shortfall(config: &Config, frames: usize) -> Option<String> {
    (config.core && frames < config.max_in_flight).then(|| {
        format!(
            "the push stream buffer ({frames} frames) is smaller than maxInFlight ({}): \
             a worker that reconnects may have its stream closed again at once",
            config.max_in_flight
        )
    })
}
