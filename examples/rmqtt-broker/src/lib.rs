//! # A clustered MQTT broker: rmqtt with an mqtt-cluster node inside
//!
//! [`Broker::start`] runs one rmqtt broker (MQTT 3.1, 3.1.1 and 5) whose
//! cluster is an [`mqtt_cluster_tokio`] node, configured by the node's
//! plugin.yaml. rmqtt's own cluster plugins plug in at the same places:
//!
//! - its `Router` is replaced by [`cluster_router::ClusterRouter`], which
//!   reports every subscription relation to the node (routes are learnt
//!   there, because rmqtt removes a clean session's relations without a
//!   hook);
//! - its `Shared` is replaced by [`cluster_shared::ClusterShared`], which
//!   hands every publish rmqtt has *accepted* (after its ACL check) to the
//!   node, and delivers messages from other brokers to local subscribers
//!   only;
//! - its retained store is [`retained::ClusterRetainStore`], fed by local
//!   publishes and by the cluster's retained set;
//! - [`inbound`] reads the node's events and injects messages from other
//!   brokers with `SessionState::forwards`, which runs no publish hook.
//!
//! ```no_run
//! use mqtt_cluster_rmqtt_broker::{settings, Broker, Settings};
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! let cluster = settings::cluster_config(&std::fs::read_to_string("plugin.yaml")?)?;
//! let broker = Broker::start(Settings::new(cluster, "0.0.0.0:1883".parse()?), Default::default()).await?;
//! tokio::signal::ctrl_c().await?;
//! broker.shutdown().await; // leaves the cluster, closes the clients
//! # Ok(()) }
//! ```
//!
//! What crosses the cluster and what does not is listed in the example's
//! README.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod acl;
pub mod chaos;
pub mod cluster_router;
pub mod cluster_shared;
pub mod cluster_topics;
pub mod confirmations;
pub mod demo;
pub mod drop_log;
pub mod inbound;
pub mod load;
pub mod properties;
pub mod publish_again;
pub mod readiness;
pub mod retained;
pub mod session_drops;
pub mod settings;
pub mod shared_group;
pub mod stats;
pub mod status_file;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use mqtt_cluster_tokio::{Cluster, ClusterHandle, Options};
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use settings::Settings;
pub use stats::BrokerStats;

use crate::retained::{ClusterRetainStore, RetainStoreHandle};

/// One running broker: an MQTT listener and a cluster node.
pub struct Broker {
    scx: ServerContext,
    cluster: ClusterHandle,
    mqtt_addr: SocketAddr,
    stats: Arc<BrokerStats>,
    server: JoinHandle<()>,
    inbound: JoinHandle<()>,
    status_file: Option<JoinHandle<()>>,
    refused: watch::Receiver<Option<String>>,
}

impl Broker {
    /// Starts the node (it joins the cluster in the background), then the
    /// MQTT listener. `options` are the node runtime's (a pre-bound cluster
    /// listener, a seed).
    pub async fn start(settings: Settings, options: Options) -> anyhow::Result<Broker> {
        // The node settles every publish within `messageExpiry`; a publisher
        // waits a little longer before it gives up on a stopped node.
        let confirm_within = settings.cluster.message_expiry + Duration::from_secs(5);
        let config = settings.cluster.clone();
        let cluster = Cluster::start_with(settings.cluster, options).await?;
        let gate = readiness::Gate::new(readiness::Deadlines::of(&config).at_most);
        let confirmations = settings
            .puback_after_confirm
            .then(|| Arc::new(confirmations::Confirmations::default()));
        let stats = Arc::new(BrokerStats::default());
        // Busy checks refuse connections when the machine's load is high:
        // a cluster node must not turn clients away because a neighbour
        // compiles.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        let retained = Arc::new(ClusterRetainStore::default());
        if !settings.standalone {
            *scx.extends.router_mut().await = Box::new(cluster_router::ClusterRouter::new(
                &scx,
                cluster.clone(),
                stats.clone(),
            ));
            let mut shared =
                cluster_shared::ClusterShared::new(&scx, cluster.clone(), stats.clone())
                    .gated_by(gate.clone());
            if let Some(confirmations) = &confirmations {
                shared = shared.puback_after_confirm(confirmations.clone(), confirm_within);
            }
            *scx.extends.shared_mut().await = Box::new(shared);
            *scx.extends.shared_subscription_mut().await =
                Box::new(shared_group::LocalTurns::default());
            *scx.extends.retain_mut().await = Box::new(RetainStoreHandle(retained.clone()));
        }
        session_drops::SessionDrops::new(stats.clone())
            .register(&scx)
            .await;
        if !settings.deny_publish.is_empty() {
            acl::DenyPublish::new(&settings.deny_publish)?
                .register(&scx)
                .await;
        }

        if !settings.standalone {
            let waiting = std::time::Instant::now();
            match readiness::wait(&cluster, &config).await? {
                readiness::Readiness::Ready => tracing::info!(
                    waited_ms = waiting.elapsed().as_millis() as u64,
                    "the node holds the cluster's routes; opening the MQTT listener"
                ),
                readiness::Readiness::TimedOut => tracing::warn!(
                    waited_ms = waiting.elapsed().as_millis() as u64,
                    "the node does not hold the cluster's routes yet; serving clients anyway (publishes reach only the brokers it knows)"
                ),
            }
        }
        let max_inflight = NonZeroU16::new(settings.max_inflight).unwrap_or(NonZeroU16::MIN);
        let listener = Builder::new()
            .name("external/tcp")
            .laddr(settings.mqtt)
            .nodelay(true)
            .reuseaddr(Some(true))
            .max_mqueue_len(settings.max_mqueue_len)
            .max_inflight(max_inflight)
            .bind()
            .and_then(|l| l.tcp())
            .map_err(|e| anyhow::anyhow!("cannot listen for MQTT on {}: {e}", settings.mqtt))?;
        let mqtt_addr = listener.local_addr()?;
        let server = MqttServer::new(scx.clone())
            .listener_by_id(listener, 1)
            .build();
        let server = tokio::spawn(async move {
            if let Err(error) = server.run().await {
                tracing::error!(%error, "the MQTT server stopped");
            }
        });

        let status_file = settings
            .status_file
            .clone()
            .map(|path| tokio::spawn(status_file::run(path, cluster.clone(), stats.clone())));
        let (refuse, refused) = watch::channel(None);
        let inbound = tokio::spawn(inbound::run(
            scx.clone(),
            cluster.events(),
            stats.clone(),
            retained,
            confirmations,
            gate,
            refuse,
        ));
        tracing::info!(node = %cluster.node_id(), role = ?cluster.role(), mqtt = %mqtt_addr, "broker started");
        Ok(Broker {
            scx,
            cluster,
            mqtt_addr,
            stats,
            server,
            inbound,
            status_file,
            refused,
        })
    }

    /// Where MQTT clients connect (the bound address, after port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The cluster node.
    pub fn cluster(&self) -> &ClusterHandle {
        &self.cluster
    }

    /// The broker's counters.
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// rmqtt's server context (sessions, router, hooks).
    pub fn context(&self) -> &ServerContext {
        &self.scx
    }

    /// Resolves with the reason when the cluster refuses this broker (a
    /// wrong secret): it must then stop.
    pub async fn refused(&self) -> String {
        let mut refused = self.refused.clone();
        let reason = match refused.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The node stopped without being refused: never resolves.
            None => std::future::pending().await,
        }
    }

    /// Waits until this broker's node takes part in the cluster: a core at
    /// once, a worker once a core has accepted it.
    pub async fn joined(&self) -> anyhow::Result<()> {
        loop {
            let status = self.cluster.status().await?;
            if status.phase.is_finished() {
                anyhow::bail!("the node stopped before it joined");
            }
            if self.cluster.role() == mqtt_cluster_core::Role::Core || status.core.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops gracefully: leaves the cluster (its routes vanish at once on
    /// every other broker), closes every client connection and the listener.
    pub async fn shutdown(self) {
        tracing::info!("leaving the cluster");
        self.cluster.shutdown().await;
        self.server.abort();
        let sessions: Vec<_> = {
            let shared = self.scx.extends.shared().await;
            shared.iter().collect()
        };
        tracing::info!(clients = sessions.len(), "closing client connections");
        for mut session in sessions {
            if let Err(error) = session.kick(false, false, true).await {
                tracing::debug!(%error, "closing a client failed");
            }
        }
        self.inbound.abort();
        if let Some(status_file) = self.status_file {
            status_file.abort();
        }
    }
}
