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
//!   [`Event::Synced`] came);
//! - a core, once its view agrees with every core it knows and it knows
//!   another core, or no other core answered within the first contact
//!   window (`requestTimeout` and two heartbeats), or none is configured;
//! - any node after `deadTimeout` and `requestTimeout` at most: a broker
//!   cut off from its cluster still serves its own clients (locally only,
//!   which it logs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_cluster_core::config::Config;
use mqtt_cluster_core::node::Status;
use mqtt_cluster_core::node::{Event, Settling};
use mqtt_cluster_core::wire::messages::MemberState;
use mqtt_cluster_core::Role;
use mqtt_cluster_tokio::ClusterHandle;
use tokio::sync::watch;
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

/// Whether a publish may be routed now.
///
/// When a partition heals, a core hears from the other side that members it
/// still hears from were declared dead there. It adopts that verdict and
/// drops their routes until they answer with a new incarnation and their
/// routes again (a few heartbeats). A publish routed in between reaches
/// none of them and is confirmed all the same. The node's own convergence
/// does not show it (dead members do not count), so the gate follows the
/// node's events with the node's own rules ([`Settling`]): it closes
///
/// - on a member declared dead that this node never suspected itself (the
///   verdict came from another node), until that member joined again and
///   the node is converged after that (its routes came with it);
/// - when this node takes a new incarnation, registers again or fails over,
///   until it is converged again (for a worker: synced with its core).
///
/// A member this node watched fall silent (suspect, then dead) closes
/// nothing: its routes are rightly gone. Each cause keeps the gate closed
/// at most `within`, then publishes go with what the node holds. Such
/// deaths are rare, so publishes almost never wait. The gate hears of
/// events a moment after the node emitted them; the node itself says, with
/// each publish, whether it routed while settling
/// ([`Routing::settling`](mqtt_cluster_core::node::Routing::settling)).
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
    settling: Arc<Mutex<Settling>>,
    started: std::time::Instant,
    within: Duration,
}

impl Gate {
    /// An open gate whose publishes wait at most `within`.
    pub fn new(within: Duration) -> Gate {
        Gate {
            open: Arc::new(watch::Sender::new(true)),
            settling: Arc::new(Mutex::new(Settling::default())),
            started: std::time::Instant::now(),
            within,
        }
    }

    fn now(&self) -> mqtt_cluster_core::Instant {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        mqtt_cluster_core::Instant::from_millis(ms)
    }

    /// Follows one of the node's events.
    pub fn observe(&self, event: &Event) {
        let now = self.now();
        let Ok(mut settling) = self.settling.lock() else {
            return;
        };
        settling.observe(event, now);
        // The gate cannot see the table: a member's join stands for its
        // routes, and the node's `Routing::settling` tells the rest.
        settling.routes_arrived(|_, _| true);
        let open = !settling.is_settling(now, self.within);
        self.open
            .send_if_modified(|o| std::mem::replace(o, open) != open);
    }

    /// How long a cause keeps the gate closed at most.
    pub fn within(&self) -> Duration {
        self.within
    }

    /// Whether publishes go at once.
    pub fn is_open(&self) -> bool {
        let now = self.now();
        self.settling
            .lock()
            .map_or(true, |s| !s.is_settling(now, self.within))
    }

    /// Waits until the gate is open or `within` passed; returns how long it
    /// waited and whether the members settled (`false`: the wait ran out
    /// first), or `None` when it was open.
    pub async fn wait_open(&self) -> Option<(Duration, bool)> {
        if self.is_open() {
            return None;
        }
        let started = Instant::now();
        let mut changed = self.open.subscribe();
        // Events open it, or its causes run out with time.
        let _ = tokio::time::timeout(self.within, async {
            while !self.is_open() {
                let _ = tokio::time::timeout(OPEN_CHECK, changed.changed()).await;
            }
        })
        .await;
        let now = self.now();
        let settled = self
            .settling
            .lock()
            .map_or(true, |s| !s.is_settling(now, Duration::MAX));
        Some((started.elapsed(), settled))
    }
}

/// How often a closed gate looks whether its causes ran out.
const OPEN_CHECK: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_cluster_core::NodeId;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn joined(name: &str) -> Event {
        Event::MemberJoined {
            node: node(name),
            role: Role::Core,
            incarnation: mqtt_cluster_core::Incarnation(7),
        }
    }

    #[tokio::test]
    async fn a_death_heard_from_elsewhere_closes_the_gate_until_the_member_is_back() {
        let gate = Gate::new(Duration::from_secs(5));
        assert_eq!(gate.wait_open().await, None);
        gate.observe(&Event::MemberDead { node: node("c3") });
        gate.observe(&Event::MemberDead { node: node("w3") });
        assert!(!gate.is_open());
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.wait_open().await })
        };
        // Convergence says nothing about them: dead members do not count.
        gate.observe(&Event::Converged { after_ms: 1 });
        gate.observe(&joined("c3"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        gate.observe(&joined("w3"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "their routes follow them");
        gate.observe(&Event::Converged { after_ms: 9 });
        let (_, opened) = waiting.await.unwrap().expect("it waited");
        assert!(opened);
    }

    #[test]
    fn a_member_watched_falling_silent_closes_nothing() {
        let gate = Gate::new(Duration::from_secs(5));
        gate.observe(&Event::MemberSuspect { node: node("c2") });
        gate.observe(&Event::MemberDead { node: node("c2") });
        assert!(gate.is_open());
        // Suspected, back, then declared dead elsewhere: awaited again.
        gate.observe(&Event::MemberSuspect { node: node("c2") });
        gate.observe(&Event::MemberAlive { node: node("c2") });
        gate.observe(&Event::MemberDead { node: node("c2") });
        assert!(!gate.is_open());
        gate.observe(&Event::MemberLeft { node: node("c2") });
        assert!(gate.is_open());
    }

    #[test]
    fn a_new_incarnation_closes_the_gate_until_converged() {
        let gate = Gate::new(Duration::from_secs(5));
        gate.observe(&Event::Reincarnated {
            incarnation: mqtt_cluster_core::Incarnation(2),
        });
        assert!(!gate.is_open());
        gate.observe(&Event::Converged { after_ms: 3 });
        assert!(gate.is_open());
    }

    #[tokio::test]
    async fn a_cause_closes_the_gate_no_longer_than_the_bound() {
        let gate = Gate::new(Duration::from_millis(50));
        gate.observe(&Event::Reincarnated {
            incarnation: mqtt_cluster_core::Incarnation(2),
        });
        let (waited, settled) = gate.wait_open().await.expect("it waited");
        assert!(!settled, "the node never converged");
        assert!(waited <= Duration::from_millis(200), "{waited:?}");
        assert!(gate.is_open());
    }
}
