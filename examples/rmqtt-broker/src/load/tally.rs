//! One subscriber's account of what arrived: per publisher, which numbers
//! were seen, so that at the end every message is lost, delivered once,
//! or delivered again, and each arrival before a lower number counts as
//! out of order.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stamp::Stamp;

/// What one subscriber saw of one publisher.
#[derive(Debug, Default)]
struct FromPublisher {
    /// Numbers seen, one bit each.
    seen: Vec<u64>,
    highest: Option<u64>,
}

impl FromPublisher {
    /// Marks `seq`; false if it was already marked.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }

    fn distinct_below(&self, sent: u64) -> u64 {
        let full = (sent / 64) as usize;
        let mut count: u64 = self
            .seen
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = sent % 64;
        if rest > 0 {
            if let Some(word) = self.seen.get(full) {
                count += u64::from((word & ((1u64 << rest) - 1)).count_ones());
            }
        }
        count
    }
}

/// One subscriber's tally.
#[derive(Debug, Default)]
pub struct Tally {
    from: BTreeMap<u64, FromPublisher>,
    /// Arrivals, duplicates included.
    pub arrivals: u64,
    /// Arrivals of a number already seen.
    pub duplicates: u64,
    /// Arrivals after a higher number of the same publisher.
    pub out_of_order: u64,
    /// Payloads without a stamp.
    pub unstamped: u64,
    /// Latencies in microseconds, one per first arrival.
    pub latencies_us: Vec<u64>,
    /// When the latest first arrival came, on the run's clock.
    pub last_us: u64,
}

impl Tally {
    /// Records a payload that arrived at `now_us`.
    pub fn arrived(&mut self, payload: &[u8], now_us: u64) {
        let Some(stamp) = Stamp::read(payload) else {
            self.unstamped += 1;
            return;
        };
        self.arrivals += 1;
        let from = self.from.entry(stamp.publisher).or_default();
        if !from.mark(stamp.seq) {
            self.duplicates += 1;
            return;
        }
        if from.highest.is_some_and(|h| stamp.seq < h) {
            self.out_of_order += 1;
        }
        from.highest = Some(from.highest.map_or(stamp.seq, |h| h.max(stamp.seq)));
        self.last_us = self.last_us.max(now_us);
        self.latencies_us.push(now_us.saturating_sub(stamp.sent_us));
    }

    /// Messages this subscriber should have had and did not, given how
    /// many each publisher sent.
    pub fn lost(&self, sent: &[u64]) -> u64 {
        sent.iter()
            .enumerate()
            .map(|(p, &n)| {
                let got = self
                    .from
                    .get(&(p as u64))
                    .map_or(0, |f| f.distinct_below(n));
                n - got
            })
            .sum()
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or(0)
        };
        Latency {
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(publisher: u64, seq: u64) -> Vec<u8> {
        Stamp::payload_of(publisher, seq, 30)
    }

    #[test]
    fn each_message_is_lost_delivered_or_delivered_again() {
        let mut tally = Tally::default();
        for seq in [0, 1, 3, 2, 3, 70] {
            tally.arrived(&payload(0, seq), 25);
        }
        tally.arrived(&payload(1, 0), 25);
        tally.arrived(b"short", 25);
        // Publisher 0 sent 0..72, publisher 1 sent 0..2.
        assert_eq!(tally.lost(&[72, 2]), 72 - 5 + 1);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.out_of_order, 1);
        assert_eq!(tally.unstamped, 1);
        assert_eq!(tally.arrivals, 7);
        assert_eq!(tally.latencies_us, vec![15; 6]);
    }

    #[test]
    fn percentiles_of_nothing_are_zero() {
        assert_eq!(Latency::of(&mut []), Latency::default());
        let mut samples: Vec<u64> = (1..=100).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (51, 99, 100));
    }
}
