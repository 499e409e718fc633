//! Whether the cluster has recovered, from the brokers' status files
//! (`--status-file`, see [`crate::status_file`]).
//!
//! The brokers live in namespaces the runner cannot reach, and workers
//! serve no HTTP at all; every broker writes its node's status to a file
//! instead. The cluster is *healthy* when every broker's file is fresh,
//! every node runs and says it is converged, sees every broker alive, and
//! all hold the same member list and the same routing table (equal
//! digests).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// A file older than this belongs to a broker that stopped writing (killed
/// or paused).
pub const FRESH_WITHIN_MS: u64 = 1_500;

/// How often [`watch`] reads the status files.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A change in a broker shows in the health samples at most this long after
/// it happened: its status file is written every
/// [`crate::status_file::EVERY`], then read within [`SAMPLE_EVERY`].
pub const SEEN_WITHIN: Duration = Duration::from_millis(
    crate::status_file::EVERY.as_millis() as u64 + SAMPLE_EVERY.as_millis() as u64,
);

/// Now, in Unix milliseconds: rmqtt's clock, which the brokers' status
/// files use too.
pub fn unix_ms() -> u64 {
    u64::try_from(rmqtt::utils::timestamp_millis()).unwrap_or(0)
}

/// One broker as its status file shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The host the broker runs on.
    pub host: String,
    /// When the file was written (Unix ms).
    pub written_unix_ms: u64,
    /// The node's phase (`running`, ...).
    pub phase: String,
    /// Whether the node says it is converged.
    pub converged: bool,
    /// The members it sees alive.
    pub alive: BTreeSet<String>,
    /// Its member digest.
    pub members_digest: String,
    /// Routes in its copy of the routing table.
    pub routes: u64,
    /// Its routing table's digest.
    pub routes_digest: String,
    /// Publishes the broker answered with PUBACK once the cluster
    /// confirmed them.
    pub confirmed: u64,
    /// Publishes the cluster could not confirm; rmqtt answered their PUBACK
    /// all the same (see the example's README).
    pub not_confirmed: u64,
    /// For a worker, the core it is registered with (its traffic crosses
    /// that core).
    pub core: Option<String>,
}

impl NodeState {
    /// Reads the status file of the broker on `host`.
    pub fn read(host: &str, path: &Path) -> Result<NodeState, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json: Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let status = &json["status"];
        let text_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let alive = status["members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .filter(|m| m["state"] == "alive")
                    .map(|m| text_of(&m["id"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok(NodeState {
            host: host.to_owned(),
            written_unix_ms: json["writtenUnixMs"].as_u64().unwrap_or(0),
            phase: text_of(&status["phase"]),
            converged: status["convergence"]["converged"].as_bool() == Some(true),
            alive,
            members_digest: text_of(&status["membersDigest"]),
            routes: status["routes"].as_u64().unwrap_or(0),
            routes_digest: text_of(&status["routesDigest"]),
            confirmed: json["broker"]["confirmed"].as_u64().unwrap_or(0),
            not_confirmed: json["broker"]["not_confirmed"].as_u64().unwrap_or(0),
            core: status["core"].as_str().map(str::to_owned),
        })
    }

    /// Whether the file was written within [`FRESH_WITHIN_MS`] of `now`.
    pub fn is_fresh(&self, now_unix_ms: u64) -> bool {
        now_unix_ms.saturating_sub(self.written_unix_ms) <= FRESH_WITHIN_MS
    }
}

/// What keeps the cluster from being healthy, or `None` when it is.
pub fn unhealthy(states: &[NodeState], hosts: &[String], now_unix_ms: u64) -> Option<String> {
    let everyone: BTreeSet<String> = hosts.iter().cloned().collect();
    for state in states {
        let host = &state.host;
        if !state.is_fresh(now_unix_ms) {
            return Some(format!(
                "{host}: status not written for {} ms",
                now_unix_ms.saturating_sub(state.written_unix_ms)
            ));
        }
        if state.phase != "running" {
            return Some(format!("{host}: {}", state.phase));
        }
        if !state.converged {
            return Some(format!("{host}: not converged"));
        }
        if state.alive != everyone {
            let missing: Vec<&String> = everyone.difference(&state.alive).collect();
            return Some(format!("{host}: does not see {missing:?} alive"));
        }
    }
    if states.len() < hosts.len() {
        return Some("a broker wrote no status yet".into());
    }
    let differ = |f: fn(&NodeState) -> &str| states.windows(2).any(|w| f(&w[0]) != f(&w[1]));
    if differ(|s| s.members_digest.as_str()) {
        return Some("member lists differ".into());
    }
    if differ(|s| s.routes_digest.as_str()) {
        return Some("routing tables differ".into());
    }
    None
}

/// Reads every broker's status file; a missing or unreadable file leaves
/// its broker out (and so the cluster unhealthy).
pub fn read_all(dir: &Path, hosts: &[String]) -> Vec<NodeState> {
    hosts
        .iter()
        .filter_map(|h| NodeState::read(h, &status_path(dir, h)).ok())
        .collect()
}

/// Where the broker on `host` writes its status.
pub fn status_path(dir: &Path, host: &str) -> PathBuf {
    dir.join(format!("{host}.status.json"))
}

/// When the cluster was healthy: each change, as (Unix ms, healthy); and
/// which core each worker was registered with, each change as (Unix ms,
/// core).
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    changes: Vec<(u64, bool)>,
    cores: BTreeMap<String, Vec<(u64, Option<String>)>>,
}

impl Timeline {
    /// Records which core each broker's status names; only changes are
    /// kept.
    pub fn sample_cores(&mut self, at_unix_ms: u64, states: &[NodeState]) {
        for state in states {
            let changes = self.cores.entry(state.host.clone()).or_default();
            if changes.last().map(|(_, core)| core) != Some(&state.core) {
                changes.push((at_unix_ms, state.core.clone()));
            }
        }
    }

    /// The core `host` was registered with at `at_unix_ms`, as its status
    /// file last said.
    pub fn core_of(&self, host: &str, at_unix_ms: u64) -> Option<&str> {
        self.cores
            .get(host)?
            .iter()
            .take_while(|(since, _)| *since <= at_unix_ms)
            .last()
            .and_then(|(_, core)| core.as_deref())
    }

    /// Records a sample; only changes are kept.
    pub fn sample(&mut self, at_unix_ms: u64, healthy: bool) {
        if self.changes.last().map(|&(_, h)| h) != Some(healthy) {
            self.changes.push((at_unix_ms, healthy));
        }
    }

    /// The first healthy moment whose samples can show a subscription made
    /// at `subscribed_unix_ms` (a SUBACK): a sample taken right at it
    /// cannot tell whether the other brokers hold it yet, so not before
    /// [`SEEN_WITHIN`] after it.
    pub fn healthy_with_subscription(&self, subscribed_unix_ms: u64) -> Option<u64> {
        let shown = u64::try_from(SEEN_WITHIN.as_millis()).unwrap_or(u64::MAX);
        self.healthy_from(subscribed_unix_ms.saturating_add(shown))
    }

    /// The first moment at or after `from` the cluster was healthy.
    pub fn healthy_from(&self, from_unix_ms: u64) -> Option<u64> {
        let mut healthy_since = None;
        for &(at, healthy) in &self.changes {
            if at <= from_unix_ms {
                healthy_since = healthy.then_some(from_unix_ms);
            } else if healthy_since.is_none() && healthy {
                return Some(at);
            } else if healthy_since.is_some() {
                return healthy_since;
            }
        }
        healthy_since
    }
}

/// Samples the cluster's health every 100 ms until `stop`.
pub async fn watch(dir: PathBuf, hosts: Vec<String>, stop: Arc<AtomicBool>) -> Timeline {
    let mut timeline = Timeline::default();
    while !stop.load(Ordering::Relaxed) {
        let now = unix_ms();
        let states = read_all(&dir, &hosts);
        timeline.sample(now, unhealthy(&states, &hosts, now).is_none());
        timeline.sample_cores(now, &states);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    timeline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_the_first_healthy_moment_after_a_fault() {
        let mut t = Timeline::default();
        t.sample(0, true);
        t.sample(100, true);
        t.sample(200, false);
        t.sample(900, true);
        t.sample(1_000, false);
        assert_eq!(t.healthy_from(50), Some(50));
        assert_eq!(t.healthy_from(300), Some(900));
        assert_eq!(t.healthy_from(900), Some(900));
        assert_eq!(t.healthy_from(950), Some(950));
        assert_eq!(t.healthy_from(1_100), None);
    }

    #[test]
    fn a_new_subscription_counts_once_a_sample_can_show_it() {
        let mut t = Timeline::default();
        // Healthy all along: the sample 2 ms after the SUBACK was taken
        // before any other broker could hold the subscription.
        t.sample(10_000, true);
        t.sample(10_102, true);
        let seen = t.healthy_with_subscription(10_100).unwrap();
        assert_eq!(seen, 10_100 + SEEN_WITHIN.as_millis() as u64);
        assert_eq!(seen, 10_450);
        // Unhealthy then: the first healthy moment after that.
        t.sample(10_300, false);
        t.sample(10_700, true);
        assert_eq!(t.healthy_with_subscription(10_100), Some(10_700));
    }

    #[test]
    fn a_stale_or_diverging_broker_makes_the_cluster_unhealthy() {
        let hosts: Vec<String> = vec!["a".into(), "b".into()];
        let state = |host: &str| NodeState {
            host: host.into(),
            written_unix_ms: 10_000,
            phase: "running".into(),
            converged: true,
            alive: hosts.iter().cloned().collect(),
            members_digest: "m".into(),
            routes: 2,
            routes_digest: "r".into(),
            ..NodeState::default()
        };
        let good = [state("a"), state("b")];
        assert_eq!(unhealthy(&good, &hosts, 10_500), None);
        assert!(unhealthy(&good, &hosts, 20_000)
            .unwrap()
            .contains("not written"));
        let mut differing = good.clone();
        differing[1].routes_digest = "other".into();
        assert_eq!(
            unhealthy(&differing, &hosts, 10_500).as_deref(),
            Some("routing tables differ")
        );
        let mut blind = good.clone();
        blind[0].alive.remove("b");
        assert!(unhealthy(&blind, &hosts, 10_500)
            .unwrap()
            .contains("does not see"));
        assert!(unhealthy(&good[..1], &hosts, 10_500).is_some());
    }

    #[test]
    fn a_workers_core_is_the_one_its_status_named_last() {
        let mut timeline = Timeline::default();
        let worker = |core: Option<&str>| NodeState {
            host: "worker1".into(),
            core: core.map(str::to_owned),
            ..NodeState::default()
        };
        timeline.sample_cores(1_000, &[worker(Some("core1"))]);
        timeline.sample_cores(1_100, &[worker(Some("core1"))]);
        timeline.sample_cores(2_000, &[worker(None)]);
        timeline.sample_cores(2_500, &[worker(Some("core2"))]);
        assert_eq!(timeline.core_of("worker1", 999), None);
        assert_eq!(timeline.core_of("worker1", 1_500), Some("core1"));
        assert_eq!(timeline.core_of("worker1", 2_100), None);
        assert_eq!(timeline.core_of("worker1", 9_000), Some("core2"));
        assert_eq!(timeline.core_of("core1", 9_000), None);
    }
}
