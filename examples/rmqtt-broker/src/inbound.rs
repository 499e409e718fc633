//! What the node tells the broker: messages from other brokers for local
//! subscribers, retained messages, membership news and drops.
//!
//! A message from another broker is injected with
//! [`SessionState::forwards`], which runs no publish hook and reaches
//! [`ClusterShared::forwards`](crate::cluster_shared::ClusterShared) with a
//! [`From`] that marks it as coming from the cluster: it is delivered to
//! local subscribers only and never published to the cluster again.

use std::sync::Arc;
use std::time::Duration;

use mqtt_cluster_core::node::Delivery;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::Event;
use mqtt_cluster_tokio::Events;
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{From, Id, NodeId, Publish, QoS};
use tokio::sync::watch;

use crate::cluster_topics::arrived;
use crate::confirmations::{Confirmations, Outcome};
use crate::drop_log::DropLog;
use crate::properties::{self, PropertiesError};
use crate::readiness::Gate;
use crate::retained::ClusterRetainStore;
use crate::stats::BrokerStats;

/// The rmqtt node id that marks a message from another broker for ordinary
/// subscribers. rmqtt's own node ids are small; nothing else uses these.
const FROM_CLUSTER: NodeId = u64::MAX;
/// The same, for members of shared groups.
const FROM_CLUSTER_TO_GROUPS: NodeId = u64::MAX - 1;

/// Where a message handed to rmqtt came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client, will, bridge or the admin of this broker.
    Local,
    /// Another broker, through the node; `shared` for shared groups.
    Cluster {
        /// The message is for members of shared groups only.
        shared: bool,
    },
}

/// Where `from` says a message came from.
pub fn origin_of(from: &From) -> Origin {
    match from.id.node_id {
        FROM_CLUSTER => Origin::Cluster { shared: false },
        FROM_CLUSTER_TO_GROUPS => Origin::Cluster { shared: true },
        _ => Origin::Local,
    }
}

/// The sender of a message from `origin` (a node name).
pub fn cluster_sender(origin: &str, shared: bool) -> From {
    let node = if shared {
        FROM_CLUSTER_TO_GROUPS
    } else {
        FROM_CLUSTER
    };
    From::from_bridge(Id::new(node, 0, None, None, origin.into(), None))
}

/// rmqtt's publish for a message from the cluster, created `now_ms`.
pub fn to_publish(
    topic: &str,
    payload: bytes::Bytes,
    qos: Qos,
    retain: bool,
    props: Option<bytes::Bytes>,
    now_ms: i64,
) -> Result<Publish, PropertiesError> {
    let properties = props.map(properties::decode).transpose()?;
    let inner = CodecPublish {
        dup: false,
        retain,
        qos: match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        },
        topic: topic.into(),
        packet_id: None,
        payload,
        properties,
    };
    // The expiry that crossed is what was left at the origin: counting from
    // now is counting from when it was left.
    Ok(Publish {
        inner: Box::new(inner),
        target_clientid: None,
        delay_interval: None,
        create_time: Some(now_ms),
    })
}

/// Reads the node's events until it stops; `gate` follows them. `fatal` is told when the cluster
/// refuses this broker (wrong secret): it must stop.
pub async fn run(
    scx: ServerContext,
    events: Events,
    stats: Arc<BrokerStats>,
    retained: Arc<ClusterRetainStore>,
    confirmations: Option<Arc<Confirmations>>,
    gate: Gate,
    fatal: watch::Sender<Option<String>>,
) {
    let drops = Arc::new(DropLog::new("messages dropped on their way to a peer"));
    DropLog::spawn_reporter(&drops, Duration::from_secs(1));
    let mut batch = Vec::with_capacity(256);
    while events.next_batch(&mut batch, 256).await > 0 {
        for event in batch.drain(..) {
            gate.observe(&event);
            match (&event, &confirmations) {
                (Event::Confirmed { id, nodes }, Some(waiting)) => {
                    tracing::trace!(?id, ?nodes, "confirmed");
                    waiting.settle(*id, Outcome::Confirmed)
                }
                (Event::NotConfirmed { id, reason, .. }, Some(waiting)) => {
                    waiting.settle(*id, Outcome::NotConfirmed(*reason))
                }
                (Event::Confirmed { .. } | Event::NotConfirmed { .. } | Event::Ready, _) => {}
                _ => handle(&scx, event, &stats, &drops, &retained, &fatal).await,
            }
        }
    }
    drops.flush();
    tracing::debug!("the node stopped; no more events");
}

async fn handle(
    scx: &ServerContext,
    event: Event,
    stats: &BrokerStats,
    drops: &DropLog,
    retained: &ClusterRetainStore,
    fatal: &watch::Sender<Option<String>>,
) {
    match event {
        Event::Deliver(delivery) => deliver(scx, delivery, stats).await,
        Event::Dropped {
            peer,
            count,
            reason,
            ..
        } => {
            stats.cluster_dropped.add(count);
            drops.record(peer, reason, count);
        }
        Event::RegistrationRejected { core, reason } => {
            tracing::error!(core, reason, "the cluster refused this broker");
            let _ = fatal.send(Some(format!(
                "the cluster at {core} refused this broker: {reason}"
            )));
        }
        Event::MemberJoined {
            node,
            role,
            incarnation,
        } => {
            tracing::info!(%node, ?role, incarnation = ?incarnation, "member joined");
        }
        Event::MemberDead { node } => tracing::warn!(%node, "member dead"),
        Event::MemberSuspect { node } => tracing::warn!(%node, "member suspect"),
        Event::CoreUnreachable { core } => tracing::warn!(%core, "core unreachable; failing over"),
        other => {
            if !retained.handle(&other, stats).await {
                tracing::info!(event = ?other, "cluster event");
            }
        }
    }
}

async fn deliver(scx: &ServerContext, delivery: Delivery, stats: &BrokerStats) {
    stats.received.inc();
    tracing::trace!(origin = %delivery.origin, topic = %delivery.topic, seq = delivery.seq, "delivery");
    let (topic, shared) = arrived(delivery.topic.as_str());
    let now = rmqtt::utils::timestamp_millis();
    let publish = match to_publish(
        topic,
        delivery.payload,
        delivery.qos,
        delivery.retain,
        delivery.properties,
        now,
    ) {
        Ok(publish) => publish,
        Err(error) => {
            stats.undecodable.inc();
            tracing::warn!(origin = %delivery.origin, topic, %error, "dropped a message with unreadable properties");
            return;
        }
    };
    let from = cluster_sender(delivery.origin.as_str(), shared);
    if let Err(error) = SessionState::forwards(scx, from, publish, false, None).await {
        tracing::warn!(origin = %delivery.origin, topic, %error, "local delivery failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_senders_are_recognised_and_local_ones_are_not() {
        assert_eq!(
            origin_of(&cluster_sender("b", false)),
            Origin::Cluster { shared: false }
        );
        assert_eq!(
            origin_of(&cluster_sender("b", true)),
            Origin::Cluster { shared: true }
        );
        let local = From::from_custom(Id::new(0, 1, None, None, "client".into(), None));
        assert_eq!(origin_of(&local), Origin::Local);
    }

    #[test]
    fn a_message_from_the_cluster_counts_its_expiry_from_now() {
        let props = properties::encode(
            &rmqtt::codec::v5::PublishProperties::default(),
            std::num::NonZeroU32::new(8),
        );
        let p = to_publish("a/b", "x".into(), Qos::AtLeastOnce, true, Some(props), 1234).unwrap();
        assert_eq!(p.create_time, Some(1234));
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert!(p.retain);
        assert_eq!(
            p.properties.as_ref().unwrap().message_expiry_interval,
            std::num::NonZeroU32::new(8)
        );
        assert!(to_publish(
            "a",
            "x".into(),
            Qos::AtMostOnce,
            false,
            Some("\u{7}".into()),
            0
        )
        .is_err());
    }
}
