//! The cluster routing table: MQTT topic names, filters and shared
//! subscriptions, and the table that maps a published topic to the nodes
//! that must receive it.
//!
//! Validation follows MQTT 3.1.1/5 ([`TopicName`], [`TopicFilter`],
//! [`Subscription`]). [`RouteTable`] is a trie of filter levels in which
//! level strings and node ids are interned as small integers, so that a
//! lookup walks compact nodes and, once warm, allocates nothing.

mod children;
mod id_map;
mod interner;
mod members;
mod node;
mod shared;
mod table;
mod topic;
mod topic_levels;
mod trie;
mod versioned;

#[cfg(test)]
mod tests;

pub use table::{FilterMatch, RouteTable};
pub use topic::{
    ShareGroup, Subscription, TopicError, TopicFilter, TopicKind, TopicName, MAX_TOPIC_LEN,
    SHARE_PREFIX,
};
pub use versioned::{Applied, ClusterRoutes, RouteLag};
