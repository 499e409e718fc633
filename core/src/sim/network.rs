//! The simulated network: latency, loss, duplication and partitions, all
//! drawn from one seeded generator.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::id::NodeId;

/// How the simulated network treats what crosses it.
///
/// ```
/// use mqtt_cluster_core::sim::NetworkModel;
/// use std::time::Duration;
/// let lossy = NetworkModel {
///     drop: 0.05,
///     duplicate: 0.02,
///     ..NetworkModel::default()
/// };
/// assert_eq!(lossy.latency_min, Duration::from_millis(1));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkModel {
    /// Fastest one-way trip.
    pub latency_min: Duration,
    /// Slowest one-way trip; latencies are uniform in between, so requests
    /// sent close together may arrive in another order.
    pub latency_max: Duration,
    /// Chance that a request or its response is lost (the sender sees a
    /// timeout after its `requestTimeout`).
    pub drop: f64,
    /// Chance that a request arrives twice (the copy is what a replaying
    /// attacker or a confused proxy would send).
    pub duplicate: f64,
    /// Split stream bytes into chunks at random points.
    pub split_streams: bool,
}

impl Default for NetworkModel {
    fn default() -> Self {
        NetworkModel {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            drop: 0.0,
            duplicate: 0.0,
            split_streams: true,
        }
    }
}

impl NetworkModel {
    /// A network that loses and duplicates nothing.
    pub fn reliable() -> Self {
        NetworkModel::default()
    }

    /// A network that loses `drop` and duplicates `duplicate` of requests.
    pub fn lossy(drop: f64, duplicate: f64) -> Self {
        NetworkModel {
            drop,
            duplicate,
            ..NetworkModel::default()
        }
    }
}

/// The seeded generator every random choice of a simulation comes from.
#[derive(Debug, Clone)]
pub(super) struct Dice(ChaCha8Rng);

impl Dice {
    pub(super) fn new(seed: u64) -> Self {
        Dice(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A child seed, for a node or a sub-generator.
    pub(super) fn seed(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Whether an event of probability `p` happens.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits make a uniform float in [0, 1).
        let x = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.next_u64() % n
        }
    }

    /// A latency drawn from the model.
    pub(super) fn latency(&mut self, model: &NetworkModel) -> Duration {
        let min = model.latency_min.as_millis() as u64;
        let max = (model.latency_max.as_millis() as u64).max(min);
        Duration::from_millis(min + self.below(max - min + 1))
    }
}

/// Which pairs of nodes cannot reach each other.
///
/// Kept as the set of unreachable nodes per sender, so that asking about a
/// pair, which every request does, neither clones ids nor searches pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Partitions {
    cut: BTreeMap<NodeId, BTreeSet<NodeId>>,
}

impl Partitions {
    /// Cuts every link between a node of `a` and a node of `b`.
    pub(super) fn cut(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                if x != y {
                    self.cut.entry(x.clone()).or_default().insert(y.clone());
                    self.cut.entry(y.clone()).or_default().insert(x.clone());
                }
            }
        }
    }

    /// Restores every link.
    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether `from` can reach `to`.
    pub(super) fn allows(&self, from: &NodeId, to: &NodeId) -> bool {
        self.cut
            .get(from)
            .is_none_or(|unreachable| !unreachable.contains(to))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.cut.is_empty()
    }
}
