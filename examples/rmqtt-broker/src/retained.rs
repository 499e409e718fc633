//! Retained messages: rmqtt's in-memory store, kept equal to the cluster's
//! retained set.
//!
//! A retained publish accepted here is stored by rmqtt itself and published
//! to the node with its retain flag; the node keeps the cluster's retained
//! set (last writer wins) and tells every other broker with
//! `Event::RetainSet` / `Event::RetainCleared`, which are mirrored into the
//! local store. A retained message that arrives as an ordinary delivery
//! from another broker is *not* stored from that path: only the cluster's
//! set decides what is retained, so two concurrent writers cannot leave two
//! brokers with different retained messages.

use std::time::Duration;

use async_trait::async_trait;
use mqtt_cluster_core::Event;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};
use rmqtt::Result;

use crate::inbound::{origin_of, Origin};
use crate::stats::BrokerStats;

/// rmqtt's retained store, enabled, fed by local publishes and the cluster.
pub struct ClusterRetainStore {
    store: DefaultRetainStorage,
}

impl Default for ClusterRetainStore {
    fn default() -> Self {
        ClusterRetainStore {
            store: DefaultRetainStorage::new(),
        }
    }
}

impl ClusterRetainStore {
    /// Takes a retained-set event from the node; `false` for other events.
    pub async fn handle(&self, event: &Event, stats: &BrokerStats) -> bool {
        let now = rmqtt::utils::timestamp_millis();
        match event {
            Event::RetainSet(message) => {
                let publish = match crate::inbound::to_publish(
                    message.topic.as_str(),
                    message.payload.clone(),
                    message.qos,
                    true,
                    message.properties.clone(),
                    now,
                ) {
                    Ok(publish) => publish,
                    Err(error) => {
                        stats.undecodable.inc();
                        tracing::warn!(topic = %message.topic, %error, "retained message with unreadable properties");
                        return true;
                    }
                };
                let expiry = publish
                    .properties
                    .as_ref()
                    .and_then(|p| p.message_expiry_interval)
                    .map(|secs| Duration::from_secs(u64::from(secs.get())));
                let topic = TopicName::from(message.topic.as_str());
                let from = crate::inbound::cluster_sender("cluster", false);
                let retain = Retain {
                    msg_id: None,
                    from,
                    publish,
                };
                match self.store.set_with_timeout(&topic, retain, expiry).await {
                    Ok(()) => stats.retained_set.inc(),
                    Err(error) => {
                        tracing::warn!(%topic, %error, "could not store a retained message")
                    }
                }
                true
            }
            Event::RetainCleared { topic } => {
                let topic_name = TopicName::from(topic.as_str());
                let empty = crate::inbound::to_publish(
                    topic.as_str(),
                    bytes::Bytes::new(),
                    mqtt_cluster_core::wire::messages::Qos::AtMostOnce,
                    true,
                    None,
                    now,
                )
                .expect("no properties to read");
                let retain = Retain {
                    msg_id: None,
                    from: crate::inbound::cluster_sender("cluster", false),
                    publish: empty,
                };
                match self.store.set_with_timeout(&topic_name, retain, None).await {
                    Ok(()) => stats.retained_cleared.inc(),
                    Err(error) => {
                        tracing::warn!(%topic, %error, "could not clear a retained message")
                    }
                }
                true
            }
            Event::RetainRefused { topic, reason } => {
                // The node counts it (`retained_refused`, `/metrics`); the
                // message stays retained on the broker it was published on.
                tracing::warn!(%topic, reason = reason.as_str(), "the cluster's retained set refused a topic");
                true
            }
            _ => false,
        }
    }
}

/// The store as rmqtt sees it (it is shared with the event reader through
/// an `Arc`).
pub struct RetainStoreHandle(pub std::sync::Arc<ClusterRetainStore>);

#[async_trait]
impl RetainStorage for RetainStoreHandle {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry_interval: Option<Duration>,
    ) -> Result<()> {
        if let Origin::Cluster { .. } = origin_of(&retain.from) {
            // The cluster's retained set decides; see the module docs.
            return Ok(());
        }
        self.0
            .store
            .set_with_timeout(topic, retain, expiry_interval)
            .await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> Result<Vec<(TopicName, Retain)>> {
        self.0.store.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        self.0.store.count().await
    }

    async fn max(&self) -> isize {
        self.0.store.max().await
    }
}
