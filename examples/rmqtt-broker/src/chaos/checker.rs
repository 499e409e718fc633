//! What a run's clients saw, judged against the cluster's promise.
//!
//! The promise (ARCHITECTURE.md §6) is about the destinations in the
//! origin's view of the routing table when it published. A broker cut off
//! from another for longer than `deadTimeout` (a partition, a `SIGSTOP`, a
//! link losing packets) is declared dead there and leaves that view: what
//! is published meanwhile is not for it, and what was on its way to it is
//! reported `destination_gone` (rmqtt still answers the PUBACK, see the
//! example's README). So a confirmed message counts as **lost** when it is
//! missing at a subscriber whose broker was never killed, unless the
//! message was in its broker's hands while a fault separated the
//! publisher's broker from the subscriber's ([`FaultRecord::separates`]):
//! from one second before the fault until the cluster recovered from it. Those are **excused** and
//! counted apart (with how many of them did arrive).
//!
//! Nothing is excused for a broker that was killed and restarted as a
//! publisher: what it acknowledged before dying was confirmed, and what it
//! takes after the restart it takes with the cluster's routes. A
//! subscriber whose broker was killed loses its session with it: what was
//! published from one second before the kill until the cluster recovered
//! after the subscriber subscribed again is excused for it; everything
//! else counts.

use std::collections::BTreeSet;

use serde::Serialize;

use super::clients::{Published, Received, Span};
use super::faults::{Fault, FaultKind};

/// How long before a fault starts its effect is already possible (the
/// runner logs it just after applying it; a message taken just before may
/// still be on its way).
pub const LEAD_MS: u64 = 1_000;

/// One fault as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    /// The fault.
    pub fault: Fault,
    /// When it started (Unix ms).
    pub started_unix_ms: u64,
    /// When it was undone.
    pub ended_unix_ms: u64,
    /// When the cluster was next healthy, if it was.
    pub recovered_unix_ms: Option<u64>,
    /// For a `kill -9`: when the cluster was healthy again after the
    /// killed broker's subscriber subscribed again, if it did.
    pub resubscribed_unix_ms: Option<u64>,
}

impl FaultRecord {
    /// How long the cluster took to recover after the fault ended.
    pub fn recovery_ms(&self) -> Option<u64> {
        self.recovered_unix_ms
            .map(|r| r.saturating_sub(self.ended_unix_ms))
    }

    /// Whether the fault separates a publisher on `publisher` from a
    /// subscriber on `subscriber`, in a cluster whose core brokers are
    /// `cores` (the others are workers).
    ///
    /// Workers reach each other only through a core: a partition that
    /// leaves a worker on a side without any core cuts it off from every
    /// other broker, those of its own side included (the cores declare it
    /// dead, and it registers again, after its backoff, once the partition
    /// healed).
    pub fn separates(&self, publisher: &str, subscriber: &str, cores: &[String]) -> bool {
        match &self.fault {
            Fault::Partition { side_a, side_b } => {
                let side_of = |h: &str| {
                    [side_a, side_b]
                        .into_iter()
                        .position(|side| side.iter().any(|s| s == h))
                };
                let is_core = |h: &str| cores.iter().any(|c| c == h);
                let cut_off = |h: &str| {
                    let side = side_of(h).map(|i| [side_a, side_b][i]);
                    !is_core(h) && side.is_some_and(|side| !side.iter().any(|s| is_core(s)))
                };
                let across = matches!((side_of(publisher), side_of(subscriber)), (Some(p), Some(s)) if p != s);
                across || (publisher != subscriber && (cut_off(publisher) || cut_off(subscriber)))
            }
            Fault::Pause { host } => host == publisher || host == subscriber,
            Fault::Netem {
                host,
                kind: FaultKind::Loss,
                ..
            } => host == publisher || host == subscriber,
            Fault::Kill { host } => host == subscriber,
            Fault::Netem { .. } => false,
        }
    }

    /// Until when the fault excuses what it separates.
    fn excused_until(&self) -> Option<u64> {
        match self.fault {
            Fault::Kill { .. } => self.resubscribed_unix_ms,
            _ => self.recovered_unix_ms,
        }
    }

    /// Whether a message in a broker's hands during `span` is excused for
    /// this pair.
    pub fn excuses(
        &self,
        publisher: &str,
        subscriber: &str,
        cores: &[String],
        span: &Span,
    ) -> bool {
        if !self.separates(publisher, subscriber, cores) {
            return false;
        }
        let from = self.started_unix_ms.saturating_sub(LEAD_MS);
        let until = self.excused_until().unwrap_or(u64::MAX);
        span.out_unix_ms <= until && span.acked_unix_ms >= from
    }
}

/// What one subscriber makes of the run.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Confirmed messages it must have received.
    pub expected: u64,
    /// Of those, the ones that never arrived.
    pub lost: u64,
    /// Confirmed messages excused by a fault that separated their
    /// publisher's broker from this subscriber's.
    pub excused: u64,
    /// Of the excused, the ones that never arrived.
    pub excused_missing: u64,
    /// Arrivals of a message already received.
    pub duplicates: u64,
    /// Arrivals after a later message of the same publisher.
    pub reordered: u64,
    /// The first lost messages (up to [`LOST_SHOWN`]): publisher, number,
    /// when it was in its broker's hands.
    pub lost_first: Vec<(u64, u64, Span)>,
}

/// How many lost messages a verdict names.
pub const LOST_SHOWN: usize = 10;

/// Judges what the subscriber on `subscriber` received of what every
/// publisher (publisher `i` on `publishers[i]`) had confirmed, in a
/// cluster whose core brokers are `cores`.
pub fn verdict(
    published: &[Published],
    publishers: &[String],
    cores: &[String],
    subscriber: &str,
    received: &Received,
    faults: &[FaultRecord],
) -> Verdict {
    let mut verdict = Verdict {
        duplicates: received.duplicates,
        reordered: received.reordered,
        ..Verdict::default()
    };
    for ((index, log), publisher) in (0u64..).zip(published).zip(publishers) {
        let empty = BTreeSet::new();
        let seen = received.seen.get(&index).unwrap_or(&empty);
        for (seq, span) in &log.confirmed {
            let arrived = seen.contains(seq);
            if faults
                .iter()
                .any(|f| f.excuses(publisher, subscriber, cores, span))
            {
                verdict.excused += 1;
                verdict.excused_missing += u64::from(!arrived);
            } else {
                verdict.expected += 1;
                if !arrived {
                    verdict.lost += 1;
                    if verdict.lost_first.len() < LOST_SHOWN {
                        verdict.lost_first.push((index, *seq, *span));
                    }
                }
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::load::stamp::Stamp;

    fn payload(publisher: u64, seq: u64) -> Vec<u8> {
        Stamp::payload_of(publisher, seq, 64)
    }

    fn span(at: u64) -> Span {
        Span {
            out_unix_ms: at,
            acked_unix_ms: at + 10,
        }
    }

    fn published(confirmed: &[(u64, u64)]) -> Published {
        Published {
            sent: confirmed.len() as u64,
            confirmed: confirmed.iter().map(|&(s, at)| (s, span(at))).collect(),
            reconnects: 0,
            unacknowledged: Default::default(),
            dropped_by_client: Vec::new(),
        }
    }

    #[test]
    fn the_verdict_counts_confirmed_messages_missing_duplicated_and_late() {
        let mut received = Received::default();
        for seq in [0, 2, 1, 2] {
            received.arrived(&payload(0, seq));
        }
        let log = [published(&[(0, 0), (1, 0), (2, 0), (3, 0)])];
        let v = verdict(&log, &["p".into()], &[], "s", &received, &[]);
        assert_eq!(
            v,
            Verdict {
                expected: 4,
                lost: 1,
                duplicates: 1,
                reordered: 1,
                lost_first: vec![(0, 3, span(0))],
                ..Verdict::default()
            }
        );
    }

    #[test]
    fn a_partition_excuses_only_messages_across_it_until_recovery() {
        let partition = FaultRecord {
            fault: Fault::Partition {
                side_a: vec!["p".into()],
                side_b: vec!["s".into(), "x".into()],
            },
            started_unix_ms: 10_000,
            ended_unix_ms: 15_000,
            recovered_unix_ms: Some(16_000),
            resubscribed_unix_ms: None,
        };
        // Before the lead, during, after recovery.
        let log = [published(&[
            (0, 8_000),
            (1, 9_500),
            (2, 12_000),
            (3, 15_990),
            (4, 17_000),
        ])];
        let received = Received {
            seen: BTreeMap::from([(0, BTreeSet::from([0, 4]))]),
            ..Received::default()
        };
        let faults = [partition];
        // Every broker a core here (workers: the next test).
        let all: Vec<String> = ["p", "s", "x"].map(String::from).to_vec();
        let v = verdict(&log, &["p".into()], &all, "s", &received, &faults);
        assert_eq!(
            (v.expected, v.lost, v.excused, v.excused_missing),
            (2, 0, 3, 3)
        );
        // A subscriber on the publisher's side is owed everything.
        let v = verdict(&log, &["p".into()], &all, "p", &received, &faults);
        assert_eq!((v.expected, v.lost, v.excused), (5, 3, 0));
        // A pause separates its host from everyone; a kill excuses nothing.
        let pause = FaultRecord {
            fault: Fault::Pause { host: "s".into() },
            ..faults[0].clone()
        };
        assert!(pause.separates("p", "s", &all) && pause.separates("s", "x", &all));
        assert!(!pause.separates("p", "x", &all));
        // A kill excuses nothing it published, and what its subscriber
        // missed until it subscribed again and the cluster recovered.
        let kill = FaultRecord {
            fault: Fault::Kill { host: "p".into() },
            resubscribed_unix_ms: Some(18_000),
            ..faults[0].clone()
        };
        assert!(!kill.excuses("p", "s", &all, &span(12_000)));
        assert!(kill.excuses("s", "p", &all, &span(17_500)));
        assert!(!kill.excuses("s", "p", &all, &span(18_500)));
        // Not recovered: excused to the end of the run.
        let unrecovered = FaultRecord {
            recovered_unix_ms: None,
            ..faults[0].clone()
        };
        assert!(unrecovered.excuses("p", "s", &all, &span(90_000)));
        assert_eq!(faults[0].recovery_ms(), Some(1_000));
    }

    #[test]
    fn a_partition_that_leaves_workers_without_a_core_cuts_them_off_from_each_other() {
        let cores: Vec<String> = ["core1", "core2"].map(String::from).to_vec();
        let partition = |a: &[&str], b: &[&str]| FaultRecord {
            fault: Fault::Partition {
                side_a: a.iter().map(|h| h.to_string()).collect(),
                side_b: b.iter().map(|h| h.to_string()).collect(),
            },
            started_unix_ms: 10_000,
            ended_unix_ms: 15_000,
            recovered_unix_ms: Some(20_000),
            resubscribed_unix_ms: None,
        };
        // Two workers together, every core on the other side: each core
        // declares both dead, and they reach nobody, not even each other.
        let coreless = partition(&["worker2", "worker3"], &["core1", "core2", "worker1"]);
        assert!(coreless.separates("worker3", "worker2", &cores));
        assert!(coreless.excuses("worker3", "worker2", &cores, &span(19_000)));
        assert!(coreless.separates("core1", "worker2", &cores));
        // A broker's own subscribers are not separated from it, and the
        // other side's brokers still reach each other.
        assert!(!coreless.separates("worker2", "worker2", &cores));
        assert!(!coreless.separates("core1", "worker1", &cores));
        // Workers with a core on their side keep reaching each other.
        let with_core = partition(&["core1", "worker2", "worker3"], &["core2", "worker1"]);
        assert!(!with_core.separates("worker3", "worker2", &cores));
        assert!(with_core.separates("worker3", "worker1", &cores));
    }
}
