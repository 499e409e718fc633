//! rmqtt's session table, with accepted publishes handed to the node.
//!
//! [`Shared::forwards`] is where rmqtt delivers a publish it has accepted:
//! a client's publish after the ACL check, a will, a bridge's or the
//! admin's message. (The `MessagePublish` hook would see client publishes
//! *before* the ACL check, so a refused publish would cross the cluster.)
//! Here a local publish goes to the node and to local subscribers; a
//! message from another broker, injected by [`crate::inbound`], goes to
//! local subscribers only, so nothing loops.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mqtt_cluster_core::forward::confirm::PublishId;
use mqtt_cluster_core::node::{Message, Routing};
use mqtt_cluster_core::routing::TopicName as ClusterTopic;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_tokio::ClusterHandle;
use rmqtt::context::ServerContext;
use rmqtt::session::Session;
use rmqtt::shared::{DefaultShared, Entry, Shared};
use rmqtt::types::{
    ForwardedCount, ForwardedRecipients, From, MsgID, Publish, QoS, Reason, SessionStatus,
    SubRelations, SubRelationsMap, SubsSearchParams, SubsSearchResult, To,
};

use crate::cluster_topics::{share_route, stays_local};
use crate::confirmations::Confirmations;
use crate::inbound::{origin_of, Origin};
use crate::properties;
use crate::publish_again::{Rounds, Verdict};
use crate::readiness::Gate;
use crate::stats::BrokerStats;

type Failed = Vec<(To, From, Publish, Reason)>;

/// A [`Shared`] that keeps rmqtt's sessions and forwards to the cluster.
pub struct ClusterShared {
    scx: ServerContext,
    local: DefaultShared,
    cluster: ClusterHandle,
    stats: Arc<BrokerStats>,
    /// With `--puback-after-confirm`: where publishes wait for the cluster's
    /// confirmation, and how long at most (the node settles every publish
    /// within `messageExpiry`; the margin covers a node that stopped).
    confirm: Option<(Arc<Confirmations>, Duration)>,
    /// Publishes wait here while the node's member view settles.
    gate: Option<Gate>,
}

/// Which local relations a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Audience {
    /// Every matching local subscriber.
    All,
    /// Ordinary subscribers only.
    Plain,
    /// Members of shared groups only.
    Shared,
}

impl ClusterShared {
    /// Wraps rmqtt's default session table of `scx`.
    pub fn new(scx: &ServerContext, cluster: ClusterHandle, stats: Arc<BrokerStats>) -> Self {
        ClusterShared {
            scx: scx.clone(),
            local: DefaultShared::new(Some(scx.clone())),
            cluster,
            stats,
            confirm: None,
            gate: None,
        }
    }

    /// Holds publishes while `gate` is closed (see [`Gate`]).
    pub fn gated_by(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Answers a client's PUBACK (PUBREC) only once the cluster confirmed
    /// its publish, waiting in `confirmations` for at most `within`.
    pub fn puback_after_confirm(
        mut self,
        confirmations: Arc<Confirmations>,
        within: Duration,
    ) -> Self {
        self.confirm = Some((confirmations, within));
        self
    }

    /// With `--puback-after-confirm`, waits until the node settled every
    /// QoS 1/2 publish among `sent` (each with its message); the client's
    /// PUBACK goes once this returns.
    ///
    /// A publish is published again once the members settle ([`Gate`])
    /// when the node routed it on a table that may lack members
    /// ([`Routing::settling`]: a healed partition, a new incarnation), or
    /// reported it `destination_gone` (the destination may be a member that
    /// took a new incarnation and is back, its subscribers waiting): rmqtt
    /// would answer the PUBACK all the same. [`Rounds`] decides how often.
    /// Destinations that had taken the first copy get it twice, which QoS 1
    /// allows. What still cannot be confirmed is counted and logged: rmqtt
    /// sends its PUBACK from the result of the whole publish, which this
    /// extension point cannot change.
    async fn await_confirmations(&self, topic: &str, sent: Vec<(Routing, Message)>) {
        let Some((confirmations, within)) = &self.confirm else {
            return;
        };
        let mut pending: Vec<(PublishId, bool, Message)> = sent
            .into_iter()
            .filter_map(|(routing, message)| Some((routing.id?, routing.settling, message)))
            .collect();
        if pending.is_empty() {
            return;
        }
        // One client publish may be two node publishes (its copy for shared
        // groups travels apart): it is confirmed when both are.
        let mut all_confirmed = true;
        let mut rounds = Rounds::new(
            tokio::time::Instant::now(),
            self.gate.as_ref().map(Gate::within),
        );
        while let Some((id, settling, message)) = pending.pop() {
            let waiting = confirmations.wait(id);
            let outcome = match tokio::time::timeout(*within, waiting).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) | Err(_) => {
                    confirmations.forget(id);
                    all_confirmed = false;
                    tracing::warn!(topic, "no confirmation came for a publish");
                    continue;
                }
            };
            match rounds.after(outcome, settling, tokio::time::Instant::now()) {
                Verdict::Again { round, glance } => {
                    self.settle_first(glance).await;
                    self.stats.published_again.inc();
                    tracing::info!(
                        topic,
                        settling,
                        round,
                        "publishing again on the settled routes"
                    );
                    match self.cluster.publish(message.clone()).await {
                        Ok(routing) => {
                            tracing::trace!(topic, id = ?routing.id, remote = ?routing.remote, settling = routing.settling, "routed again");
                            if let Some(id) = routing.id {
                                pending.push((id, routing.settling, message));
                            }
                        }
                        Err(error) => {
                            all_confirmed = false;
                            tracing::warn!(topic, %error, "the node refused a publish");
                        }
                    }
                }
                Verdict::Confirmed => {}
                Verdict::NotConfirmed(reason) => {
                    all_confirmed = false;
                    tracing::warn!(topic, ?reason, "the cluster could not confirm a publish");
                }
                Verdict::SettlingOutlasted { rounds } => {
                    all_confirmed = false;
                    tracing::warn!(
                        topic,
                        rounds,
                        "routed while the members were settling until the bound ran out; some subscribers may lack it"
                    );
                }
            }
        }
        if all_confirmed {
            self.stats.confirmed.inc();
        } else {
            self.stats.not_confirmed.inc();
        }
    }

    /// Waits for the members to settle before a publish goes again. The
    /// node knew it was settling the moment it routed; its events may not
    /// have reached the gate yet, and a member's routes follow its join,
    /// which the gate cannot see: an open gate gets `glance` to close.
    async fn settle_first(&self, glance: Duration) {
        let Some(gate) = &self.gate else { return };
        if gate.is_open() {
            tokio::time::sleep(glance).await;
        }
        gate.wait_open().await;
    }

    /// Hands an accepted local publish to the node. Returns whether the
    /// cluster picked this broker for the shared groups matching it.
    async fn publish_to_cluster(&self, publish: &Publish) -> bool {
        if let Some(gate) = &self.gate {
            if let Some((waited, opened)) = gate.wait_open().await {
                self.stats.held_for_routes.inc();
                if !opened {
                    tracing::warn!(waited_ms = waited.as_millis() as u64, "the cluster's view did not settle; publishing with the routes this node holds");
                }
            }
        }
        let now = rmqtt::utils::timestamp_millis();
        let Some(message) = to_message(publish, now) else {
            self.stats.expired.inc();
            tracing::debug!(topic = %publish.topic, "expired before it could cross");
            return false;
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                self.stats.publish_errors.inc();
                tracing::warn!(topic = %publish.topic, %error, "the cluster refuses this topic; delivered locally only");
                return true;
            }
        };
        // The copy for shared groups is never retained: the cluster's
        // retained set keeps the message under its own topic.
        let mut for_groups = message.clone();
        for_groups.retain = false;
        match ClusterTopic::new(&share_route(message.topic.as_str())) {
            Ok(topic) => for_groups.topic = topic,
            Err(error) => {
                tracing::warn!(topic = %publish.topic, %error, "no shared-group route for this topic");
                return self.publish_one(message).await;
            }
        }
        self.stats.published.inc();
        // Kept to publish again if a destination goes away.
        let kept = self
            .confirm
            .is_some()
            .then(|| [message.clone(), for_groups.clone()]);
        match self.cluster.publish_many(vec![message, for_groups]).await {
            Ok(routings) => {
                if let Some(Ok(routing)) = routings.first() {
                    tracing::trace!(topic = %publish.topic, id = ?routing.id, local = routing.local, remote = ?routing.remote, settling = routing.settling, "routed");
                }
                if let Some(kept) = kept {
                    let sent: Vec<(Routing, Message)> = routings
                        .iter()
                        .zip(kept)
                        .filter_map(|(r, m)| Some((r.as_ref().ok()?.clone(), m)))
                        .collect();
                    self.await_confirmations(&publish.topic, sent).await;
                }
                let mut routings = routings.into_iter();
                if let Some(Err(error)) = routings.next() {
                    self.stats.publish_errors.inc();
                    tracing::warn!(topic = %publish.topic, %error, "the node refused a publish");
                }
                match routings.next() {
                    Some(Ok(routing)) => routing.local,
                    // Without the cluster, this broker is the whole cluster.
                    _ => true,
                }
            }
            Err(error) => {
                self.stats.publish_errors.inc();
                tracing::warn!(topic = %publish.topic, %error, "the node refused a publish");
                true
            }
        }
    }

    async fn publish_one(&self, message: Message) -> bool {
        self.stats.published.inc();
        let topic = message.topic.as_str().to_owned();
        let kept = self.confirm.is_some().then(|| message.clone());
        match self.cluster.publish(message).await {
            Ok(routing) => {
                if let Some(kept) = kept {
                    self.await_confirmations(&topic, vec![(routing, kept)])
                        .await
                }
            }
            Err(error) => {
                self.stats.publish_errors.inc();
                tracing::warn!(%error, "the node refused a publish");
            }
        }
        true
    }

    /// Delivers to this broker's subscribers matching `publish`, of the
    /// given audience.
    async fn deliver_locally(
        &self,
        from: From,
        publish: Publish,
        audience: Audience,
    ) -> Result<ForwardedCount, (ForwardedCount, Failed)> {
        let matched = {
            let router = self.scx.extends.router().await;
            router.matches(from.id.clone(), &publish.topic).await
        };
        let mut relations_map: SubRelationsMap = match matched {
            Ok(map) => map,
            Err(error) => {
                tracing::warn!(topic = %publish.topic, %error, "matching failed");
                SubRelationsMap::default()
            }
        };
        let mut relations: SubRelations = relations_map
            .remove(&self.scx.node.id())
            .unwrap_or_default();
        match audience {
            Audience::All => {}
            Audience::Plain => relations.retain(|(_, _, _, _, group)| group.is_none()),
            Audience::Shared => relations.retain(|(_, _, _, _, group)| group.is_some()),
        }
        if relations.is_empty() {
            return Ok(0);
        }
        match self
            .local
            .forwards_to(from, &publish, relations, None)
            .await
        {
            Ok(recipients) => Ok(recipients.len()),
            Err((recipients, failed)) => Err((recipients.len(), failed)),
        }
    }
}

/// The cluster message for an accepted publish at `now_ms`; `None` when its
/// expiry has run out, `Some(Err)` when the cluster refuses its topic.
fn to_message(
    publish: &Publish,
    now_ms: i64,
) -> Option<Result<Message, mqtt_cluster_core::routing::TopicError>> {
    let properties = match &publish.properties {
        Some(props) => {
            let remaining = match props.message_expiry_interval {
                Some(interval) => {
                    let created = publish.create_time.unwrap_or(now_ms);
                    Some(properties::remaining_expiry(interval, created, now_ms)?)
                }
                None => None,
            };
            Some(properties::encode(props, remaining))
        }
        None => None,
    };
    let mut message = match Message::new(&publish.topic, publish.payload.clone()) {
        Ok(message) => message,
        Err(error) => return Some(Err(error)),
    };
    message = message.with_qos(match publish.qos {
        QoS::AtMostOnce => Qos::AtMostOnce,
        QoS::AtLeastOnce => Qos::AtLeastOnce,
        QoS::ExactlyOnce => Qos::ExactlyOnce,
    });
    message.retain = publish.retain;
    message.properties = properties;
    Some(Ok(message))
}

#[async_trait]
impl Shared for ClusterShared {
    fn entry(&self, id: rmqtt::types::Id) -> Box<dyn Entry> {
        self.local.entry(id)
    }

    fn exist(&self, client_id: &str) -> bool {
        self.local.exist(client_id)
    }

    async fn forwards(
        &self,
        msg_id: Option<MsgID>,
        from: From,
        publish: Publish,
    ) -> Result<ForwardedCount, (ForwardedCount, Failed)> {
        match origin_of(&from) {
            Origin::Cluster { shared } => {
                let audience = if shared {
                    Audience::Shared
                } else {
                    Audience::Plain
                };
                let delivered = self.deliver_locally(from, publish, audience).await;
                if matches!(delivered, Ok(0)) {
                    // Its subscriber left between routing and arrival.
                    self.stats.unsubscribed.inc();
                }
                delivered
            }
            Origin::Local => {
                if publish.target_clientid.is_some() {
                    return self.local.forwards(msg_id, from, publish).await;
                }
                if stays_local(&publish.topic) {
                    self.stats.kept_local.inc();
                    return self.deliver_locally(from, publish, Audience::All).await;
                }
                let picked_for_groups = self.publish_to_cluster(&publish).await;
                let audience = if picked_for_groups {
                    Audience::All
                } else {
                    Audience::Plain
                };
                self.deliver_locally(from, publish, audience).await
            }
        }
    }

    async fn forwards_and_get_shareds(
        &self,
        from: From,
        publish: Publish,
    ) -> Result<(SubRelationsMap, ForwardedRecipients), (ForwardedRecipients, Failed)> {
        self.local.forwards_and_get_shareds(from, publish).await
    }

    async fn forwards_to(
        &self,
        from: From,
        publish: &Publish,
        relations: SubRelations,
        msg_id: Option<MsgID>,
    ) -> Result<ForwardedRecipients, (ForwardedRecipients, Failed)> {
        self.local
            .forwards_to(from, publish, relations, msg_id)
            .await
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Box<dyn Entry>> + Sync + Send + '_> {
        self.local.iter()
    }

    fn random_session(&self) -> Option<Session> {
        self.local.random_session()
    }

    async fn session_status(&self, client_id: &str) -> Option<SessionStatus> {
        self.local.session_status(client_id).await
    }

    async fn client_states_count(&self) -> usize {
        self.local.client_states_count().await
    }

    fn sessions_count(&self) -> usize {
        self.local.sessions_count()
    }

    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.local.query_subscriptions(q).await
    }

    async fn subscriptions_count(&self) -> usize {
        self.local.subscriptions_count().await
    }

    async fn retain_load_with(
        &self,
        topic_filter: &rmqtt::types::TopicFilter,
        cb: Arc<dyn rmqtt::shared::RetainLoadCallback>,
    ) -> rmqtt::Result<Vec<(rmqtt::types::NodeId, MsgID)>> {
        self.local.retain_load_with(topic_filter, cb).await
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use rmqtt::codec::types::Publish as CodecPublish;
    use rmqtt::codec::v5::PublishProperties;

    use super::*;

    fn publish(expiry: Option<u32>, created_ms: i64) -> Publish {
        let properties = PublishProperties {
            message_expiry_interval: expiry.and_then(NonZeroU32::new),
            content_type: Some("text/plain".into()),
            ..PublishProperties::default()
        };
        let inner = CodecPublish {
            dup: false,
            retain: true,
            qos: QoS::ExactlyOnce,
            topic: "a/b".into(),
            packet_id: None,
            payload: "x".into(),
            properties: Some(properties),
        };
        Publish {
            inner: Box::new(inner),
            target_clientid: None,
            delay_interval: None,
            create_time: Some(created_ms),
        }
    }

    #[test]
    fn a_message_crosses_with_the_expiry_it_has_left() {
        let message = to_message(&publish(Some(10), 1_000), 4_000)
            .unwrap()
            .unwrap();
        assert_eq!(message.qos, Qos::ExactlyOnce);
        assert!(message.retain);
        let props = properties::decode(message.properties.unwrap()).unwrap();
        assert_eq!(props.message_expiry_interval, NonZeroU32::new(7));
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn an_expired_message_does_not_cross_and_one_without_expiry_never_expires() {
        assert!(to_message(&publish(Some(2), 1_000), 3_000).is_none());
        let message = to_message(&publish(None, 0), i64::MAX / 2)
            .unwrap()
            .unwrap();
        let props = properties::decode(message.properties.unwrap()).unwrap();
        assert_eq!(props.message_expiry_interval, None);
    }
}
