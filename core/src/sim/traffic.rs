//! What the simulated cluster costs to keep together: requests and bytes by
//! the sender's role and endpoint, push-stream bytes, and how long a new
//! subscription takes to reach every core. Counted beside the run; nothing
//! here changes it or its transcript.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::id::NodeId;
use crate::routing::Subscription;
use crate::time::Instant;
use crate::wire::Endpoint;

/// Requests and bytes (request and response bodies, or stream frames).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficCount {
    /// Requests (for a stream: chunks written).
    pub requests: u64,
    /// Body bytes, both ways.
    pub bytes: u64,
}

/// A subscription on its way to every core.
#[derive(Debug)]
struct Spreading {
    owner: NodeId,
    sub: Subscription,
    since: Instant,
    missing: BTreeSet<NodeId>,
}

/// Percentiles of how long subscriptions took to reach every core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Propagation {
    /// Subscriptions measured.
    pub count: usize,
    /// Median, milliseconds.
    pub p50_ms: u64,
    /// 99th percentile, milliseconds.
    pub p99_ms: u64,
    /// Slowest, milliseconds.
    pub max_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct TrafficLog {
    /// By (the sender is a core, endpoint path).
    by: BTreeMap<(bool, &'static str), TrafficCount>,
    spreading: Vec<Spreading>,
    took_ms: Vec<u64>,
}

/// The API path `path` names, as a static string ("other" for none).
fn endpoint_path(path: &str) -> &'static str {
    Endpoint::ALL
        .iter()
        .map(|e| e.path())
        .find(|p| *p == path)
        .unwrap_or("other")
}

impl TrafficLog {
    /// A request from a core (`from_core`) or a worker, answered.
    pub(super) fn exchange(&mut self, from_core: bool, path: &str, bytes: usize) {
        let count = self.by.entry((from_core, endpoint_path(path))).or_default();
        count.requests += 1;
        count.bytes += bytes as u64;
    }

    /// Bytes a core wrote on a worker's push stream.
    pub(super) fn stream(&mut self, bytes: usize) {
        let count = self.by.entry((true, "/stream")).or_default();
        count.requests += 1;
        count.bytes += bytes as u64;
    }

    /// `owner` subscribed to `sub`: it is on its way to `cores`.
    pub(super) fn subscribed(
        &mut self,
        owner: &NodeId,
        sub: Subscription,
        since: Instant,
        cores: BTreeSet<NodeId>,
    ) {
        self.spreading.push(Spreading {
            owner: owner.clone(),
            sub,
            since,
            missing: cores,
        });
    }

    /// After an input to `core`: the subscriptions `holds` says it has now
    /// reached it.
    pub(super) fn core_changed(
        &mut self,
        core: &NodeId,
        now: Instant,
        holds: impl Fn(&NodeId, &Subscription) -> bool,
    ) {
        if self.spreading.is_empty() {
            return;
        }
        let took = &mut self.took_ms;
        self.spreading.retain_mut(|s| {
            if s.missing.contains(core) && holds(&s.owner, &s.sub) {
                s.missing.remove(core);
            }
            if s.missing.is_empty() {
                let ms = now.saturating_since(s.since).as_millis();
                took.push(u64::try_from(ms).unwrap_or(u64::MAX));
                return false;
            }
            true
        });
    }

    /// `node` crashed or left: no core waits for it, and its own
    /// subscriptions are no longer on their way.
    pub(super) fn gone(&mut self, node: &NodeId) {
        self.spreading.retain_mut(|s| {
            s.missing.remove(node);
            s.owner != *node && !s.missing.is_empty()
        });
    }

    /// The counts, by (the sender is a core, endpoint path).
    pub(super) fn counts(&self) -> BTreeMap<(bool, &'static str), TrafficCount> {
        self.by.clone()
    }

    pub(super) fn propagation(&self) -> Propagation {
        let mut took = self.took_ms.clone();
        took.sort_unstable();
        let at = |q: f64| {
            let i = ((took.len() as f64 - 1.0) * q).round() as usize;
            took.get(i).copied().unwrap_or(0)
        };
        Propagation {
            count: took.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: took.last().copied().unwrap_or(0),
        }
    }
}
