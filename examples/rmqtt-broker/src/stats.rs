//! The broker's own counters, beside the node's (`GET /metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer};

/// One counter.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.get())
    }
}

/// What the broker did with messages and routes, since it started.
///
/// Nothing is lost silently: every message the broker could not hand on is
/// counted here with its reason, and logged.
#[derive(Debug, Default, Serialize)]
pub struct BrokerStats {
    /// Accepted publishes handed to the node.
    pub published: Count,
    /// Publishes that waited for the node's member view to settle before
    /// they were routed (a member died or left, the node took a new
    /// incarnation or registered again).
    pub held_for_routes: Count,
    /// Publishes that stayed local because of their topic (`$SYS/...`).
    pub kept_local: Count,
    /// Publishes whose expiry ran out before they could be handed on.
    pub expired: Count,
    /// Publishes the node refused (it had stopped).
    pub publish_errors: Count,
    /// Messages that arrived from other brokers.
    pub received: Count,
    /// Messages from other brokers that could not be read (bad properties).
    pub undecodable: Count,
    /// Messages from other brokers that found no local subscriber any more.
    pub unsubscribed: Count,
    /// Messages the node reported dropped on their way to a peer.
    pub cluster_dropped: Count,
    /// Messages rmqtt dropped on their way to a client of this broker (its
    /// session's queue full, expired while queued).
    pub session_dropped: Count,
    /// Subscription changes the node did not take (it had stopped).
    pub route_errors: Count,
    /// Retained messages received from the cluster and stored.
    pub retained_set: Count,
    /// Retained messages cleared by the cluster.
    pub retained_cleared: Count,
    /// With `--puback-after-confirm`: publishes the cluster confirmed
    /// before their PUBACK went.
    pub confirmed: Count,
    /// With `--puback-after-confirm`: publishes sent once more because a
    /// destination went away before confirming (it may be back under a new
    /// incarnation); destinations that had the first copy get two.
    pub published_again: Count,
    /// With `--puback-after-confirm`: publishes the cluster could not
    /// confirm (a destination gone, expired, the node stopping); their
    /// PUBACK went once that was known.
    pub not_confirmed: Count,
}
