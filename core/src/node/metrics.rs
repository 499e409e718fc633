//! The Prometheus text exposition of a node's status and counters, served
//! at `GET /metrics`.

use std::fmt::Write as _;

use super::{Histogram, Node};
use crate::forward::link::{DropReason, LinkStats};
use crate::wire::messages::MemberState;

impl Node {
    /// The node's counters and gauges in the Prometheus text format (0.0.4).
    ///
    /// ```
    /// # use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
    /// # let config = Config::from_yaml_str("core: true\nnodeName: c1\nsecret: s3cret-s3cret\n").unwrap();
    /// # let node = Node::new(config, Now::new(Instant::ZERO, WallTime::from_unix_millis(1)), 1).unwrap();
    /// let text = node.metrics();
    /// assert!(text.contains("mqtt_cluster_members{state=\"alive\"} 1"));
    /// ```
    pub fn metrics(&self) -> String {
        let status = self.status();
        let stats = self.stats();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |v: u64| vec![(String::new(), v.to_string())];
        let states = [
            (MemberState::Alive, "alive"),
            (MemberState::Suspect, "suspect"),
            (MemberState::Dead, "dead"),
            (MemberState::Left, "left"),
        ];
        let members: Vec<(String, String)> = states
            .iter()
            .map(|(state, name)| {
                let n = status.members.iter().filter(|m| m.state == *state).count();
                (format!("{{state=\"{name}\"}}"), n.to_string())
            })
            .collect();
        family(
            "mqtt_cluster_members",
            "gauge",
            "Members by state.",
            &members,
        );
        family(
            "mqtt_cluster_routes",
            "gauge",
            "Routes in the routing table.",
            &plain(status.routes as u64),
        );
        family(
            "mqtt_cluster_local_subscriptions",
            "gauge",
            "Distinct subscriptions of local clients.",
            &plain(status.local_subscriptions as u64),
        );
        family(
            "mqtt_cluster_retained",
            "gauge",
            "Topics in the cluster's retained set.",
            &plain(status.retained as u64),
        );
        let refusals: Vec<(String, String)> = [
            crate::retained::RetainRefusal::Limit,
            crate::retained::RetainRefusal::TooLarge,
        ]
        .iter()
        .map(|reason| {
            (
                format!("{{reason=\"{}\"}}", reason.as_str()),
                stats
                    .retained_refusals
                    .get(reason)
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            )
        })
        .collect();
        family(
            "mqtt_cluster_retained_refused_total",
            "counter",
            "Retained messages not taken into the cluster's set, by reason.",
            &refusals,
        );
        family(
            "mqtt_cluster_streams",
            "gauge",
            "Worker streams fed.",
            &plain(status.streams as u64),
        );
        let queued: Vec<(String, String)> = status
            .queues
            .iter()
            .map(|(peer, d)| {
                (
                    format!("{{peer=\"{}\"}}", escape(peer)),
                    d.queued.to_string(),
                )
            })
            .collect();
        family(
            "mqtt_cluster_queue_depth",
            "gauge",
            "Messages waiting per peer.",
            &queued,
        );
        let in_flight: Vec<(String, String)> = status
            .queues
            .iter()
            .map(|(peer, d)| {
                (
                    format!("{{peer=\"{}\"}}", escape(peer)),
                    d.in_flight.to_string(),
                )
            })
            .collect();
        family(
            "mqtt_cluster_in_flight",
            "gauge",
            "Unacknowledged messages per peer.",
            &in_flight,
        );
        let per_link = |value: fn(&LinkStats) -> u64| {
            labelled(
                "peer",
                stats.links.iter().map(|(p, l)| (p.as_str(), value(l))),
            )
        };
        family(
            "mqtt_cluster_link_sent_total",
            "counter",
            "Messages sent per peer, retries included.",
            &per_link(|l| l.sent),
        );
        family(
            "mqtt_cluster_link_acked_total",
            "counter",
            "Messages acknowledged per peer.",
            &per_link(|l| l.acked),
        );
        let received = labelled(
            "peer",
            stats.received_from.iter().map(|(p, n)| (p.as_str(), *n)),
        );
        family(
            "mqtt_cluster_received_total",
            "counter",
            "Messages received per peer that sent them (the last hop).",
            &received,
        );
        family(
            "mqtt_cluster_published_total",
            "counter",
            "Messages published by local clients.",
            &plain(stats.published),
        );
        family(
            "mqtt_cluster_published_unsynced_total",
            "counter",
            "Messages a worker published before it held its core's routing table.",
            &plain(stats.published_unsynced),
        );
        family(
            "mqtt_cluster_publish_refused_total",
            "counter",
            "Messages refused at publish, by reason.",
            &[(
                "{reason=\"too_large\"}".to_owned(),
                stats.publish_refused.to_string(),
            )],
        );
        family(
            "mqtt_cluster_delivered_total",
            "counter",
            "Messages from other nodes delivered locally.",
            &plain(stats.delivered),
        );
        family(
            "mqtt_cluster_duplicates_total",
            "counter",
            "Duplicate copies not delivered again.",
            &plain(stats.duplicates),
        );
        family(
            "mqtt_cluster_unroutable_total",
            "counter",
            "Targets that could not be reached.",
            &plain(stats.unroutable),
        );
        let dropped: Vec<(String, String)> = stats
            .links
            .iter()
            .flat_map(|(peer, link)| {
                link.dropped.iter().map(move |(reason, n)| {
                    let reason = serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned));
                    (
                        format!(
                            "{{peer=\"{}\",reason=\"{}\"}}",
                            escape(peer),
                            reason.unwrap_or_default()
                        ),
                        n.to_string(),
                    )
                })
            })
            .collect();
        family(
            "mqtt_cluster_dropped_total",
            "counter",
            "Messages dropped, by peer and reason.",
            &dropped,
        );
        // Drops on arrival belong to no link: a stream message for another
        // worker, a copy too late to tell from a duplicate.
        let on_arrival: Vec<(String, String)> = stats
            .dropped
            .iter()
            .filter(|(reason, _)| matches!(reason, DropReason::Misaddressed | DropReason::TooLate))
            .map(|(reason, n)| {
                let reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                (
                    format!("{{reason=\"{}\"}}", reason.unwrap_or_default()),
                    n.to_string(),
                )
            })
            .collect();
        family(
            "mqtt_cluster_dropped_on_arrival_total",
            "counter",
            "Messages that arrived and were not delivered, by reason.",
            &on_arrival,
        );
        let retries: Vec<(String, String)> = stats
            .links
            .iter()
            .map(|(peer, link)| {
                (
                    format!("{{peer=\"{}\"}}", escape(peer)),
                    link.retries.to_string(),
                )
            })
            .collect();
        family(
            "mqtt_cluster_retries_total",
            "counter",
            "Messages sent again after a failure.",
            &retries,
        );
        family(
            "mqtt_cluster_route_snapshots_sent_total",
            "counter",
            "Route snapshots sent to other cores with /sync.",
            &plain(stats.route_snapshots_sent),
        );
        family(
            "mqtt_cluster_member_resyncs_total",
            "counter",
            "Whole member lists sent to a peer that quoted no position to send only changes from.",
            &plain(stats.member_resyncs),
        );
        family(
            "mqtt_cluster_route_resyncs_total",
            "counter",
            "Times every route this core speaks for went to a peer core that held none of its log.",
            &plain(stats.route_resyncs),
        );
        family(
            "mqtt_cluster_requests_accepted_total",
            "counter",
            "Requests answered with 200.",
            &plain(stats.requests_accepted),
        );
        let refused = labelled(
            "kind",
            stats.requests_refused.iter().map(|(k, n)| (k.as_str(), *n)),
        );
        family(
            "mqtt_cluster_requests_refused_total",
            "counter",
            "Requests refused, by error kind.",
            &refused,
        );
        family(
            "mqtt_cluster_requests_sent_total",
            "counter",
            "Requests sent to peers.",
            &plain(stats.requests_sent),
        );
        family(
            "mqtt_cluster_transport_errors_total",
            "counter",
            "Requests that got no response.",
            &plain(stats.transport_errors),
        );
        family(
            "mqtt_cluster_failovers_total",
            "counter",
            "Failovers to another core.",
            &plain(stats.failovers),
        );
        family(
            "mqtt_cluster_confirmed_total",
            "counter",
            "QoS 1/2 publishes every destination confirmed.",
            &plain(stats.confirmed),
        );
        let not_confirmed: Vec<(String, String)> = stats
            .not_confirmed
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{}\"}}", reason.as_str()), n.to_string()))
            .collect();
        family(
            "mqtt_cluster_not_confirmed_total",
            "counter",
            "QoS 1/2 publishes some destination will never confirm, by reason.",
            &not_confirmed,
        );
        family(
            "mqtt_cluster_resent_total",
            "counter",
            "Copies sent again because their destinations had not confirmed them.",
            &plain(stats.resent),
        );
        family(
            "mqtt_cluster_confirmations_lost_total",
            "counter",
            "Confirmations that found no way back to their origin.",
            &plain(stats.confirmations_lost),
        );
        let unconfirmed: Vec<(String, String)> = status
            .destinations
            .iter()
            .map(|(node, d)| {
                (
                    format!("{{destination=\"{}\"}}", escape(node.as_str())),
                    d.unconfirmed.to_string(),
                )
            })
            .collect();
        family(
            "mqtt_cluster_unconfirmed",
            "gauge",
            "Copies sent to a destination and not yet confirmed.",
            &unconfirmed,
        );
        family(
            "mqtt_cluster_held",
            "gauge",
            "Publishes waiting at this node for a destination's window.",
            &plain(status.held as u64),
        );
        family(
            "mqtt_cluster_converged",
            "gauge",
            "1 while this node's view agrees with every core's, else 0.",
            &plain(u64::from(status.convergence.converged)),
        );
        histogram(
            &mut out,
            "mqtt_cluster_divergence_seconds",
            "How long this node's view differed from some core's before agreeing again.",
            &self.convergence.divergence,
        );
        histogram(
            &mut out,
            "mqtt_cluster_route_propagation_seconds",
            "From a change of the routes this core speaks for to every core holding it.",
            &self.convergence.propagation,
        );
        out
    }
}

/// Escapes a label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Samples labelled `label` with each value's name.
fn labelled<'a>(
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> Vec<(String, String)> {
    values
        .map(|(name, n)| (format!("{{{label}=\"{}\"}}", escape(name)), n.to_string()))
        .collect()
}

/// Writes a Prometheus histogram: cumulative buckets, sum and count.
fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, count) in Histogram::bounds().iter().zip(h.buckets.iter()) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}
