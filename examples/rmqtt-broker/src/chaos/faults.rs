//! Faults, planned from a seed: one at a time, each for a few seconds and
//! followed by a quiet spell in which the cluster must recover, so that
//! every fault's recovery can be timed on its own.
//!
//! ```
//! use std::time::Duration;
//! use mqtt_cluster_rmqtt_broker::chaos::faults::{plan, FaultKind};
//!
//! let hosts: Vec<String> = ["core1", "core2", "worker1"].map(String::from).into();
//! let kinds = [FaultKind::Partition, FaultKind::Kill];
//! let a = plan(7, &hosts, &kinds, Duration::from_secs(120));
//! assert_eq!(a, plan(7, &hosts, &kinds, Duration::from_secs(120)));
//! assert!(a.iter().all(|s| s.at + s.lasts <= Duration::from_secs(120)));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::netns::{NetError, Network};
use super::process::{BrokerProcess, ProcessError};

/// A kind of fault the plan draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Some hosts cut off from the others (blackhole routes).
    Partition,
    /// `kill -9` of a broker, restarted when the fault ends.
    Kill,
    /// `SIGSTOP` of a broker, `SIGCONT` when the fault ends.
    Pause,
    /// netem: latency with jitter on a host's link.
    Delay,
    /// netem: random loss on a host's link.
    Loss,
    /// netem: duplicated packets on a host's link.
    Duplicate,
    /// netem: reordered packets on a host's link.
    Reorder,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Partition,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
    ];

    /// Whether it needs netem.
    pub fn needs_netem(self) -> bool {
        matches!(
            self,
            FaultKind::Delay | FaultKind::Loss | FaultKind::Duplicate | FaultKind::Reorder
        )
    }

    fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?} (known: {})", known.join(", "))
            })
    }
}

/// One fault, on named hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `side_a` and `side_b` cannot reach each other.
    Partition {
        /// One side.
        side_a: Vec<String>,
        /// The other.
        side_b: Vec<String>,
    },
    /// `kill -9` of the broker on `host`; restarted at the end.
    Kill {
        /// The host.
        host: String,
    },
    /// The broker on `host` stopped with `SIGSTOP`; continued at the end.
    Pause {
        /// The host.
        host: String,
    },
    /// A netem rule on `host`'s link, removed at the end.
    Netem {
        /// The host.
        host: String,
        /// Its kind.
        kind: FaultKind,
        /// The rule, as `tc qdisc add ... netem` takes it.
        rule: String,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { side_a, side_b } => {
                write!(f, "partition {} | {}", side_a.join(","), side_b.join(","))
            }
            Fault::Kill { host } => write!(f, "kill -9 {host}"),
            Fault::Pause { host } => write!(f, "SIGSTOP {host}"),
            Fault::Netem { host, rule, .. } => write!(f, "netem {host}: {rule}"),
        }
    }
}

/// Something a fault could not do to the network or a broker.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The network refused.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A broker process refused.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The fault names a host without a broker.
    #[error("no broker on {0}")]
    NoBroker(String),
}

impl Fault {
    /// Starts the fault.
    pub fn apply(
        &self,
        network: &mut Network,
        brokers: &mut [BrokerProcess],
    ) -> Result<(), FaultError> {
        match self {
            Fault::Partition { side_a, side_b } => {
                let a: Vec<&str> = side_a.iter().map(String::as_str).collect();
                let b: Vec<&str> = side_b.iter().map(String::as_str).collect();
                network.partition(&a, &b)?;
            }
            Fault::Kill { host } => broker(brokers, host)?.kill()?,
            Fault::Pause { host } => broker(brokers, host)?.pause()?,
            Fault::Netem { host, rule, .. } => network.netem(host, rule)?,
        }
        Ok(())
    }

    /// Ends the fault: heals, restarts, continues or clears.
    pub fn undo(
        &self,
        network: &mut Network,
        brokers: &mut [BrokerProcess],
    ) -> Result<(), FaultError> {
        match self {
            Fault::Partition { .. } => network.heal()?,
            Fault::Kill { host } => broker(brokers, host)?.start(network)?,
            Fault::Pause { host } => broker(brokers, host)?.resume()?,
            Fault::Netem { host, .. } => network.clear_netem(host)?,
        }
        Ok(())
    }
}

fn broker<'a>(
    brokers: &'a mut [BrokerProcess],
    host: &str,
) -> Result<&'a mut BrokerProcess, FaultError> {
    brokers
        .iter_mut()
        .find(|b| b.host() == host)
        .ok_or_else(|| FaultError::NoBroker(host.to_owned()))
}

/// A fault with when it starts and how long it lasts, from the run's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// When it starts.
    pub at: Duration,
    /// How long it lasts.
    pub lasts: Duration,
    /// The fault.
    pub fault: Fault,
}

/// Faults one after another over `duration`: each lasts 3 to 10 s and is
/// followed by 5 to 12 s of quiet; kinds and hosts drawn from `seed`. The
/// first fault waits 5 s, for the cluster to form and the load to start.
pub fn plan(
    seed: u64,
    hosts: &[String],
    kinds: &[FaultKind],
    duration: Duration,
) -> Vec<Scheduled> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut below = |n: u64| if n == 0 { 0 } else { rng.next_u64() % n };
    let mut faults = Vec::new();
    if hosts.len() < 2 || kinds.is_empty() {
        return faults;
    }
    let mut at = Duration::from_secs(5);
    loop {
        let lasts = Duration::from_millis(3_000 + below(7_000));
        let quiet = Duration::from_millis(5_000 + below(7_000));
        if at + lasts + quiet > duration {
            break;
        }
        let kind = kinds[below(kinds.len() as u64) as usize];
        let host = hosts[below(hosts.len() as u64) as usize].clone();
        let fault = match kind {
            FaultKind::Partition => {
                // A random non-empty proper subset against the rest.
                let mut side_a: Vec<String> =
                    hosts.iter().filter(|_| below(2) == 0).cloned().collect();
                if side_a.is_empty() || side_a.len() == hosts.len() {
                    side_a = vec![host];
                }
                let side_b = hosts
                    .iter()
                    .filter(|h| !side_a.contains(h))
                    .cloned()
                    .collect();
                Fault::Partition { side_a, side_b }
            }
            FaultKind::Kill => Fault::Kill { host },
            FaultKind::Pause => Fault::Pause { host },
            FaultKind::Delay => Fault::Netem {
                host,
                kind,
                rule: format!("delay {}ms {}ms", 20 + below(180), 5 + below(45)),
            },
            FaultKind::Loss => Fault::Netem {
                host,
                kind,
                rule: format!("loss {}%", 1 + below(20)),
            },
            FaultKind::Duplicate => Fault::Netem {
                host,
                kind,
                rule: format!("duplicate {}%", 1 + below(20)),
            },
            FaultKind::Reorder => Fault::Netem {
                host,
                kind,
                rule: format!("delay 20ms reorder {}% 50%", 10 + below(40)),
            },
        };
        faults.push(Scheduled { at, lasts, fault });
        at += lasts + quiet;
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        ["core1", "core2", "core3", "worker1", "worker2", "worker3"]
            .map(String::from)
            .into()
    }

    #[test]
    fn the_same_seed_plans_the_same_faults_and_another_seed_others() {
        let d = Duration::from_secs(600);
        let a = plan(1, &hosts(), &FaultKind::ALL, d);
        assert_eq!(a, plan(1, &hosts(), &FaultKind::ALL, d));
        assert_ne!(a, plan(2, &hosts(), &FaultKind::ALL, d));
        assert!(a.len() > 20, "{}", a.len());
    }

    #[test]
    fn faults_do_not_overlap_and_end_before_the_run() {
        let d = Duration::from_secs(120);
        let faults = plan(
            9,
            &hosts(),
            &[FaultKind::Partition, FaultKind::Kill, FaultKind::Pause],
            d,
        );
        for pair in faults.windows(2) {
            assert!(pair[0].at + pair[0].lasts + Duration::from_secs(5) <= pair[1].at);
        }
        let last = faults.last().unwrap();
        assert!(last.at + last.lasts <= d);
        for s in &faults {
            if let Fault::Partition { side_a, side_b } = &s.fault {
                assert!(!side_a.is_empty() && !side_b.is_empty());
                assert_eq!(side_a.len() + side_b.len(), 6);
            }
        }
    }

    #[test]
    fn kinds_parse_by_name() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.to_string().parse::<FaultKind>(), Ok(kind));
        }
        assert!("flood".parse::<FaultKind>().is_err());
    }
}
