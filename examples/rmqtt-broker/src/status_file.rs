//! The broker's status as a file: the node's [`Status`] and [`Stats`] and
//! the broker's [`BrokerStats`], written as one JSON object every quarter second.
//!
//! Tools that cannot reach a broker's cluster port (a worker has none; the
//! chaos runner's brokers live in network namespaces of their own) read it
//! instead. Each write goes to a file beside it and is renamed over it, so
//! a reader never sees half an object. `writtenUnixMs` tells a stale file
//! (a stopped or killed broker) from a fresh one.
//!
//! ```json
//! {"writtenUnixMs": 1764854400000, "status": {"node": "core1", ...}, "stats": {...}, "broker": {"published": 12, ...}}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mqtt_cluster_core::node::{Stats, Status};
use mqtt_cluster_tokio::ClusterHandle;
use serde::Serialize;

use crate::stats::BrokerStats;

/// How often the file is written.
pub const EVERY: Duration = Duration::from_millis(250);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot<'a> {
    written_unix_ms: u64,
    status: &'a Status,
    stats: &'a Stats,
    broker: &'a BrokerStats,
}

/// Writes the status to `path` every [`EVERY`] until the node stops.
pub async fn run(path: PathBuf, cluster: ClusterHandle, stats: Arc<BrokerStats>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (Ok(status), Ok(node_stats)) = (cluster.status().await, cluster.stats().await) else {
            return;
        };
        if let Err(error) = write(&path, &status, &node_stats, &stats) {
            tracing::warn!(path = %path.display(), %error, "cannot write the status file");
        }
        if status.phase.is_finished() {
            return;
        }
    }
}

fn write(
    path: &Path,
    status: &Status,
    node_stats: &Stats,
    stats: &BrokerStats,
) -> std::io::Result<()> {
    let written_unix_ms = u64::try_from(rmqtt::utils::timestamp_millis()).unwrap_or(0);
    let snapshot = Snapshot {
        written_unix_ms,
        status,
        stats: node_stats,
        broker: stats,
    };
    let json = serde_json::to_vec(&snapshot)?;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, json)?;
    std::fs::rename(&partial, path)
}
