//! The broker's settings: the node's plugin.yaml, plus the MQTT listener.
//!
//! Queue defaults are raised from the library's and rmqtt's, because both
//! drop under bursts, and a dropped QoS 1 message is a lost one:
//!
//! | setting | library / rmqtt default | this broker's default |
//! |---|---|---|
//! | `queueLength` (plugin.yaml, per peer) | 1024 | [`QUEUE_LENGTH`] |
//! | `maxInFlight` (plugin.yaml, per peer) | 1024 | 1024 (unchanged) |
//! | `max_mqueue_len` (per MQTT session) | 1000 | [`MAX_MQUEUE_LEN`] |
//! | `max_inflight` (per MQTT session) | 16 | [`MAX_INFLIGHT`] |
//!
//! A value set in plugin.yaml (or on the command line) wins.

use std::net::SocketAddr;

use mqtt_cluster_core::Config;

/// Messages waiting per peer before the queue policy drops: a burst of this
/// many QoS 1 messages to one broker is carried without loss.
pub const QUEUE_LENGTH: usize = 100_000;
/// Messages waiting per MQTT session (online or offline).
pub const MAX_MQUEUE_LEN: usize = 100_000;
/// Unacknowledged QoS 1/2 messages per MQTT session.
pub const MAX_INFLIGHT: u16 = 128;

/// Everything one broker needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cluster node's configuration (plugin.yaml).
    pub cluster: Config,
    /// Where MQTT clients connect.
    pub mqtt: SocketAddr,
    /// Topic filters no client may publish to.
    pub deny_publish: Vec<String>,
    /// Messages waiting per MQTT session.
    pub max_mqueue_len: usize,
    /// Unacknowledged QoS 1/2 messages per MQTT session.
    pub max_inflight: u16,
    /// Answer a client's PUBACK (PUBREC) only once every broker with a
    /// matching subscriber took the message (off: at once, as rmqtt does).
    pub puback_after_confirm: bool,
    /// rmqtt's own router, shared-subscription and retained store instead
    /// of the cluster's: one broker alone, its node idle beside it. A
    /// reference for benchmarks (what rmqtt does without the cluster), not
    /// a cluster member.
    pub standalone: bool,
    /// Where the broker writes its node's status and its own counters as
    /// JSON, every quarter second (see [`crate::status_file`]).
    pub status_file: Option<std::path::PathBuf>,
}

impl Settings {
    /// Settings with this broker's defaults, for `cluster` and `mqtt`.
    pub fn new(cluster: Config, mqtt: SocketAddr) -> Settings {
        Settings {
            cluster,
            mqtt,
            deny_publish: Vec::new(),
            max_mqueue_len: MAX_MQUEUE_LEN,
            max_inflight: MAX_INFLIGHT,
            puback_after_confirm: false,
            standalone: false,
            status_file: None,
        }
    }
}

/// Reads a plugin.yaml, with this broker's default for `queueLength` when
/// the file does not set it.
pub fn cluster_config(yaml: &str) -> anyhow::Result<Config> {
    let mut value: serde_yaml::Value = serde_yaml::from_str(yaml)?;
    if let serde_yaml::Value::Mapping(map) = &mut value {
        let set = ["queueLength", "queue_length"]
            .iter()
            .any(|k| map.contains_key(*k));
        if !set {
            map.insert("queueLength".into(), QUEUE_LENGTH.into());
        }
    }
    let text = serde_yaml::to_string(&value)?;
    Ok(Config::from_yaml_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "core: true\nport: 8884\nclusters: [http://127.0.0.1:8884]\nsecret: a-secret-long-enough-for-the-test\n";

    #[test]
    fn queue_length_defaults_high_and_a_set_value_wins() {
        assert_eq!(cluster_config(BASE).unwrap().queue_length, QUEUE_LENGTH);
        let set = format!("{BASE}queueLength: 10\n");
        assert_eq!(cluster_config(&set).unwrap().queue_length, 10);
        let snake = format!("{BASE}queue_length: 12\n");
        assert_eq!(cluster_config(&snake).unwrap().queue_length, 12);
    }

    #[test]
    fn the_library_still_checks_the_file() {
        let typo = format!("{BASE}queuPolicy: 1\n");
        let error = cluster_config(&typo).unwrap_err().to_string();
        assert!(error.contains("queuePolicy"), "{error}");
    }
}
