//! Which topics and filters the cluster sees, and under what name.
//!
//! `$SYS/...` belongs to one broker: it is never published to the cluster
//! and `$SYS` filters are never routed. The prefix `$cluster/` is reserved
//! for the broker's own use (clients' publishes under it stay local too).
//!
//! Shared subscriptions need the cluster to pick one node *per group* for
//! each message, and the node that receives the message must know it was
//! picked for a group and not for an ordinary subscription it also holds.
//! A [`Delivery`](mqtt_cluster_core::node::Delivery) does not say why it
//! came, so the two kinds travel under different topics: a broker routes its
//! clients' `$share/{group}/{filter}` as `$share/{group}/$cluster/share/{filter}`
//! and publishes each message twice to the node, once as itself (ordinary
//! subscriptions) and once as `$cluster/share/{topic}` (shared groups). A
//! message arriving under `$cluster/share/` goes only to shared members, the
//! other only to ordinary subscribers.

/// The prefix under which messages for shared groups travel.
pub const SHARE_ROUTE: &str = "$cluster/share/";

/// `true` for topics (and filters) that never leave their broker.
pub fn stays_local(topic: &str) -> bool {
    topic == "$SYS"
        || topic.starts_with("$SYS/")
        || topic.starts_with("$cluster/")
        || topic == "$cluster"
}

/// The filter a broker routes in the cluster for its clients' subscription
/// to `filter` (in `group`, for a shared subscription); `None` for filters
/// that stay local.
pub fn node_filter(filter: &str, group: Option<&str>) -> Option<String> {
    if stays_local(filter) {
        return None;
    }
    Some(match group {
        Some(group) => format!("$share/{group}/{SHARE_ROUTE}{filter}"),
        None => filter.to_owned(),
    })
}

/// The topic under which `topic` travels to shared groups.
pub fn share_route(topic: &str) -> String {
    format!("{SHARE_ROUTE}{topic}")
}

/// A message that arrived from the cluster: its real topic, and whether it
/// is for shared members (`true`) or ordinary subscribers (`false`).
pub fn arrived(topic: &str) -> (&str, bool) {
    match topic.strip_prefix(SHARE_ROUTE) {
        Some(real) => (real, true),
        None => (topic, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_topics_and_the_reserved_prefix_stay_local() {
        assert!(stays_local("$SYS/brokers"));
        assert!(stays_local("$SYS"));
        assert!(stays_local("$cluster/share/a"));
        assert!(!stays_local("$SYSTEM/a"));
        assert!(!stays_local("a/$SYS/b"));
        assert_eq!(node_filter("$SYS/#", None), None);
        assert_eq!(node_filter("$SYS/#", Some("g")), None);
    }

    #[test]
    fn shared_subscriptions_route_under_the_share_prefix() {
        assert_eq!(node_filter("a/+/c", None).as_deref(), Some("a/+/c"));
        assert_eq!(
            node_filter("a/#", Some("g")).as_deref(),
            Some("$share/g/$cluster/share/a/#")
        );
        assert_eq!(share_route("a/b"), "$cluster/share/a/b");
        assert_eq!(arrived("$cluster/share/a/b"), ("a/b", true));
        assert_eq!(arrived("a/b"), ("a/b", false));
    }

    #[test]
    fn node_filters_are_valid_cluster_subscriptions() {
        use mqtt_cluster_core::routing::Subscription;
        for (filter, group) in [
            ("a/#", Some("g")),
            ("#", Some("g")),
            ("+/x", None),
            ("#", None),
        ] {
            let f = node_filter(filter, group).unwrap();
            assert!(Subscription::parse(&f).is_ok(), "{f}");
        }
    }
}
