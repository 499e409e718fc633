//! rmqtt's router, with every subscription change reported to the node.
//!
//! Every subscription relation passes through [`Router::add`] and
//! [`Router::remove`], including the ones rmqtt removes itself when a clean
//! session ends (no hook fires for those). So this is where the broker
//! learns its clients' routes: each new (client, filter) relation is one
//! `subscribe` on the node, each removed one an `unsubscribe`; the node
//! counts them per filter and changes the cluster's routes only for the
//! first and the last. Matching stays rmqtt's own, on local relations only:
//! messages from other brokers are handed to local subscribers here.

use std::sync::Arc;

use async_trait::async_trait;
use mqtt_cluster_tokio::ClusterHandle;
use rmqtt::context::ServerContext;
use rmqtt::router::{DefaultRouter, Router};
use rmqtt::types::{
    AllRelationsMap, HashMap, Id, NodeId, Route, SubRelationsMap, SubsSearchParams,
    SubsSearchResult, SubscriptionOptions, TopicName,
};
use rmqtt::utils::Counter;
use rmqtt::Result;

use crate::cluster_topics::node_filter;
use crate::stats::BrokerStats;

/// A [`Router`] that keeps rmqtt's local routing and tells the node.
pub struct ClusterRouter {
    local: DefaultRouter,
    cluster: ClusterHandle,
    stats: Arc<BrokerStats>,
}

impl ClusterRouter {
    /// Wraps rmqtt's default router of `scx`.
    pub fn new(scx: &ServerContext, cluster: ClusterHandle, stats: Arc<BrokerStats>) -> Self {
        ClusterRouter {
            local: DefaultRouter::new(Some(scx.clone())),
            cluster,
            stats,
        }
    }

    /// The cluster filter of the relation `client` holds on `topic_filter`,
    /// if it holds one (`Some(None)` for a local-only filter).
    fn held(&self, topic_filter: &str, id: &Id) -> Option<Option<String>> {
        let rels = self.local.relations.get(topic_filter)?;
        let (_, opts) = rels.get(&id.client_id)?;
        Some(node_filter(
            topic_filter,
            opts.shared_group().map(|g| -> &str { g }),
        ))
    }

    async fn subscribe(&self, filter: &str) {
        match self.cluster.subscribe(filter).await {
            Ok(first) => tracing::debug!(filter, first, "route learnt"),
            Err(error) => {
                self.stats.route_errors.inc();
                tracing::warn!(filter, %error, "the node did not take a subscription");
            }
        }
    }

    async fn unsubscribe(&self, filter: &str) {
        match self.cluster.unsubscribe(filter).await {
            Ok(last) => tracing::debug!(filter, last, "route dropped"),
            Err(error) => {
                self.stats.route_errors.inc();
                tracing::debug!(filter, %error, "the node did not take an unsubscription");
            }
        }
    }
}

#[async_trait]
impl Router for ClusterRouter {
    async fn add(&self, topic_filter: &str, id: Id, opts: SubscriptionOptions) -> Result<()> {
        let before = self.held(topic_filter, &id);
        let after = node_filter(topic_filter, opts.shared_group().map(|g| -> &str { g }));
        self.local.add(topic_filter, id, opts).await?;
        // A client subscribing again to the same filter replaces its
        // relation: the node hears of it only if the cluster filter changed
        // (a plain subscription became a shared one, or the group changed).
        if before.as_ref() != Some(&after) {
            if let Some(Some(old)) = before {
                self.unsubscribe(&old).await;
            }
            if let Some(new) = after {
                self.subscribe(&new).await;
            }
        }
        Ok(())
    }

    async fn remove(&self, topic_filter: &str, id: Id) -> Result<bool> {
        let before = self.held(topic_filter, &id);
        let removed = self.local.remove(topic_filter, id).await?;
        if removed {
            if let Some(Some(old)) = before {
                self.unsubscribe(&old).await;
            }
        }
        Ok(removed)
    }

    async fn matches(&self, id: Id, topic: &TopicName) -> Result<SubRelationsMap> {
        self.local.matches(id, topic).await
    }

    async fn is_online(&self, node_id: NodeId, client_id: &str) -> bool {
        self.local.is_online(node_id, client_id).await
    }

    async fn gets(&self, limit: usize) -> Vec<Route> {
        self.local.gets(limit).await
    }

    async fn get(&self, topic: &str) -> Result<Vec<Route>> {
        self.local.get(topic).await
    }

    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.local.query_subscriptions(q).await
    }

    async fn topics_tree(&self) -> usize {
        self.local.topics_tree().await
    }

    fn topics(&self) -> Counter {
        self.local.topics()
    }

    fn routes(&self) -> Counter {
        self.local.routes()
    }

    fn merge_topics(&self, topics_map: &HashMap<NodeId, Counter>) -> Counter {
        self.local.merge_topics(topics_map)
    }

    fn merge_routes(&self, routes_map: &HashMap<NodeId, Counter>) -> Counter {
        self.local.merge_routes(routes_map)
    }

    async fn list_topics(&self, top: usize) -> Vec<String> {
        self.local.list_topics(top).await
    }

    async fn list_relations(&self, top: usize) -> Vec<serde_json::Value> {
        self.local.list_relations(top).await
    }

    fn relations(&self) -> &AllRelationsMap {
        self.local.relations()
    }
}
