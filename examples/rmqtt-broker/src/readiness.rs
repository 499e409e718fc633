//! When a broker may take MQTT clients: once its node holds the cluster's
//! routes.
//!
//! A publish is routed by the routing table the node holds at that moment.
//! A broker restarted after a crash has an empty table; if it accepted its
//! clients at once, the publishes they queued while it was down would go to
//! no other broker and be acknowledged all the same. So the listener opens
//! only when the node is ready:
//!
//! - a worker, once its core accepted it and its view agrees with the
//!   core's (its stream read to the core's routing table:
//!   [`Event::Synced`](mqtt_cluster_core::Event::Synced) came);
//! - a core, once its view agrees with every core it knows and it knows
//!   another core, or no other core answered within the first contact
//!   window (`requestTimeout` and two heartbeats), or none is configured;
//! - any node after `deadTimeout` and `requestTimeout` at most: a broker
//!   cut off from its cluster still serves its own clients (locally only,
//!   which it logs).

use std::time::Duration;

use mqtt_cluster_core::config::Config;
use mqtt_cluster_core::node::Status;
use mqtt_cluster_core::wire::messages::MemberState;
use mqtt_cluster_core::Role;
use mqtt_cluster_tokio::ClusterHandle;
use tokio::time::Instant;

/// How the wait for the cluster ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The node holds the cluster's routes.
    Ready,
    /// The node was still not ready when the wait ran out.
    TimedOut,
}

/// How long a node may take to become ready.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A core that heard no other core by then serves alone.
    pub first_contact: Duration,
    /// Nobody waits longer.
    pub at_most: Duration,
}

impl Deadlines {
    /// The deadlines for a node configured by `config`.
    pub fn of(config: &Config) -> Deadlines {
        Deadlines {
            first_contact: config.request_timeout + config.heartbeat_interval * 2,
            at_most: config.dead_timeout + config.request_timeout,
        }
    }
}

/// Whether `status` (of a node whose configured core URLs are `clusters`)
/// says the node is ready, `waited` after it started.
pub fn is_ready(
    status: &Status,
    clusters: &[String],
    waited: Duration,
    deadlines: Deadlines,
) -> bool {
    if !status.convergence.converged {
        return false;
    }
    match status.role {
        Role::Worker => status.core.is_some(),
        Role::Core => {
            let me = status.members.iter().find(|m| m.id == status.node);
            let own_address = me.and_then(|m| m.address.as_deref());
            let peers_configured = clusters.iter().any(|url| Some(url.as_str()) != own_address);
            let knows_another_core = status.members.iter().any(|m| {
                m.id != status.node && m.role == Role::Core && m.state == MemberState::Alive
            });
            !peers_configured || knows_another_core || waited >= deadlines.first_contact
        }
    }
}

/// Polls the node until it is ready or the deadlines ran out.
pub async fn wait(cluster: &ClusterHandle, config: &Config) -> anyhow::Result<Readiness> {
    let deadlines = Deadlines::of(config);
    let clusters: Vec<String> = config.clusters.iter().map(|u| u.to_string()).collect();
    let started = Instant::now();
    loop {
        let status = cluster.status().await?;
        if status.phase.is_finished() {
            anyhow::bail!("the node stopped before it was ready");
        }
        let waited = started.elapsed();
        if is_ready(&status, &clusters, waited, deadlines) {
            return Ok(Readiness::Ready);
        }
        if waited >= deadlines.at_most {
            return Ok(Readiness::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
