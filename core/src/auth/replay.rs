//! The replay guard: which request counters each sender has already used.
//!
//! Clocks of different nodes may disagree by more than anyone would like, so
//! the freshness window alone cannot stop a replay. Each sender numbers its
//! requests within an incarnation; the receiver remembers, per sender, the
//! highest counter and which of the [`WINDOW`] counters below it were seen.
//! Requests may arrive out of order (several connections, retries), which is
//! why a plain "must be higher than the last one" rule would not do.

use std::collections::BTreeMap;

use crate::id::{Incarnation, NodeId};

/// How many counters below the highest one a [`ReplayWindow`] remembers.
/// Anything older is refused, seen or not.
pub const WINDOW: u64 = 4096;

const WORDS: usize = (WINDOW / 64) as usize;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The counter was seen before, is older than the window, or is zero.
    Replayed,
    /// The sender is known under a newer incarnation.
    StaleIncarnation {
        /// The newest incarnation seen from this sender.
        known: Incarnation,
    },
}

/// A sliding window over one sender's counters.
///
/// Counter `c` lives at bit `c % WINDOW` of a ring: while the highest counter
/// is `h`, the counters `h - WINDOW + 1 ..= h` map to distinct bits, and
/// moving `h` forward clears the bits of the counters it passes over.
///
/// `check` and `record` are separate so that a request can be checked, then
/// refused for another reason, without leaving a trace.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter recorded; 0 while nothing was (0 is never valid).
    highest: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub const fn new() -> Self {
        ReplayWindow {
            highest: 0,
            bits: [0; WORDS],
        }
    }

    /// The highest counter recorded, 0 if none.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `counter` is more than [`WINDOW`] below the highest counter
    /// recorded: refused by [`check`](Self::check) whether it was seen or
    /// not, since the window no longer tells.
    pub fn is_beyond(&self, counter: u64) -> bool {
        counter != 0 && self.highest.saturating_sub(counter) >= WINDOW
    }

    /// Whether `counter` would be accepted now.
    pub fn check(&self, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.highest {
            return true;
        }
        let age = self.highest.saturating_sub(counter);
        age < WINDOW && !self.bit(counter)
    }

    /// Remembers `counter`. Returns `false` (and changes nothing) if
    /// [`check`](Self::check) would have refused it.
    pub fn record(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter > self.highest {
            let advance = counter.saturating_sub(self.highest);
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Counters between the old and new highest were never seen;
                // their bits still hold counters from a full turn ago.
                for c in self.highest.saturating_add(1)..=counter {
                    self.clear_bit(c);
                }
            }
            self.highest = counter;
        }
        self.set_bit(counter);
        true
    }

    fn position(counter: u64) -> (usize, u64) {
        let slot = counter % WINDOW;
        // slot < WINDOW, so slot / 64 < WORDS: the index is always in range.
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    fn bit(&self, counter: u64) -> bool {
        let (word, mask) = Self::position(counter);
        self.bits.get(word).is_some_and(|w| w & mask != 0)
    }

    fn set_bit(&mut self, counter: u64) {
        let (word, mask) = Self::position(counter);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= mask;
        }
    }

    fn clear_bit(&mut self, counter: u64) {
        let (word, mask) = Self::position(counter);
        if let Some(w) = self.bits.get_mut(word) {
            *w &= !mask;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracked {
    incarnation: Incarnation,
    window: ReplayWindow,
    last_used: u64,
}

/// Replay windows for a bounded number of senders, least recently used
/// evicted first.
///
/// Eviction forgets a sender's counters, so a request it sent before could be
/// replayed while still inside the freshness window; size `max_senders`
/// above the number of members to keep that from happening. Recency is a
/// logical tick, not time, and both maps are ordered, so which sender gets
/// evicted depends only on the sequence of accepted requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    senders: BTreeMap<NodeId, Tracked>,
    /// `(last_used, node)` for each tracked sender: the first entry is the
    /// eviction candidate. The node breaks ties should the tick ever saturate.
    recency: BTreeMap<(u64, NodeId), ()>,
    tick: u64,
    max_senders: usize,
}

impl ReplayGuard {
    /// A guard that remembers at most `max_senders` senders (at least one,
    /// since remembering none would switch the guard off).
    pub fn new(max_senders: usize) -> Self {
        ReplayGuard {
            senders: BTreeMap::new(),
            recency: BTreeMap::new(),
            tick: 0,
            max_senders: max_senders.max(1),
        }
    }

    /// How many senders are remembered.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The newest incarnation remembered for `node`.
    pub fn incarnation(&self, node: &NodeId) -> Option<Incarnation> {
        self.senders.get(node).map(|t| t.incarnation)
    }

    /// The remembered id named `name`, if any: a receiver can take it
    /// instead of building the id again from the header.
    pub fn known(&self, name: &str) -> Option<&NodeId> {
        self.senders.get_key_value(name).map(|(id, _)| id)
    }

    /// Whether `counter` of `node` in `incarnation` is refused only because
    /// it is older than the window remembers (not because it was seen).
    pub fn is_beyond_window(&self, node: &NodeId, incarnation: Incarnation, counter: u64) -> bool {
        self.senders
            .get(node)
            .is_some_and(|t| t.incarnation == incarnation && t.window.is_beyond(counter))
    }

    /// Whether a request from `node` in `incarnation` with `counter` would be
    /// accepted. Changes nothing.
    pub fn check(
        &self,
        node: &NodeId,
        incarnation: Incarnation,
        counter: u64,
    ) -> Result<(), Rejection> {
        if counter == 0 {
            return Err(Rejection::Replayed);
        }
        match self.senders.get(node) {
            None => Ok(()),
            Some(t) if incarnation < t.incarnation => Err(Rejection::StaleIncarnation {
                known: t.incarnation,
            }),
            Some(t) if incarnation > t.incarnation => Ok(()),
            Some(t) if t.window.check(counter) => Ok(()),
            Some(_) => Err(Rejection::Replayed),
        }
    }

    /// Checks like [`check`](Self::check) and, if accepted, remembers the
    /// counter and marks `node` as most recently used. On `Err` nothing
    /// changes.
    pub fn record(
        &mut self,
        node: &NodeId,
        incarnation: Incarnation,
        counter: u64,
    ) -> Result<(), Rejection> {
        self.check(node, incarnation, counter)?;
        self.tick = self.tick.saturating_add(1);
        let tick = self.tick;
        if let Some(t) = self.senders.get_mut(node) {
            self.recency.remove(&(t.last_used, node.clone()));
            if incarnation > t.incarnation {
                t.incarnation = incarnation;
                t.window = ReplayWindow::new();
            }
            t.window.record(counter);
            t.last_used = tick;
        } else {
            while self.senders.len() >= self.max_senders {
                let Some(((_, oldest), ())) = self.recency.pop_first() else {
                    break;
                };
                self.senders.remove(&oldest);
            }
            let mut window = ReplayWindow::new();
            window.record(counter);
            self.senders.insert(
                node.clone(),
                Tracked {
                    incarnation,
                    window,
                    last_used: tick,
                },
            );
        }
        self.recency.insert((tick, node.clone()), ());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    #[test]
    fn window_refuses_zero() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(0));
        assert!(!w.record(0));
        assert_eq!(w.highest(), 0);
    }

    #[test]
    fn window_refuses_a_counter_seen_before() {
        let mut w = ReplayWindow::new();
        assert!(w.record(1));
        assert!(!w.record(1));
        assert!(w.record(2));
        assert!(!w.check(1));
        assert!(!w.check(2));
    }

    #[test]
    fn window_accepts_out_of_order_counters_once() {
        let mut w = ReplayWindow::new();
        assert!(w.record(10));
        for c in [3, 9, 1, 5] {
            assert!(w.record(c), "{c} first time");
            assert!(!w.record(c), "{c} second time");
        }
        assert!(w.check(2));
        assert_eq!(w.highest(), 10);
    }

    #[test]
    fn window_refuses_counters_older_than_the_window() {
        let mut w = ReplayWindow::new();
        assert!(w.record(WINDOW + 10));
        assert!(w.check(11), "oldest counter inside the window");
        assert!(!w.check(10), "just outside the window");
        assert!(!w.record(1));
    }

    #[test]
    fn window_forgets_bits_of_counters_it_moves_past() {
        let mut w = ReplayWindow::new();
        assert!(w.record(5));
        // 5 + WINDOW shares 5's bit; it must not look seen.
        assert!(w.record(5 + WINDOW));
        assert!(!w.check(5));
        // Everything between is unseen, but 5 + 1 .. is still in the window.
        assert!(w.record(6 + WINDOW / 2));
        assert!(w.record(6));
        assert!(!w.record(6));
    }

    #[test]
    fn window_survives_large_jumps_and_u64_max() {
        let mut w = ReplayWindow::new();
        assert!(w.record(3));
        assert!(w.record(u64::MAX));
        assert!(!w.check(u64::MAX));
        assert!(!w.check(3));
        assert!(w.check(u64::MAX - 1));
        assert!(!w.check(u64::MAX - WINDOW));
    }

    #[test]
    fn window_matches_a_model_set() {
        // Pseudo-random counters near each other, compared with a plain set.
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut base = 1u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base += x % 3;
            let c = base + x % 1500;
            let highest = seen.iter().next_back().copied().unwrap_or(0);
            let expected = !seen.contains(&c) && (c > highest || highest - c < WINDOW);
            assert_eq!(w.record(c), expected, "counter {c}, highest {highest}");
            if expected {
                seen.insert(c);
            }
        }
    }

    #[test]
    fn guard_refuses_older_incarnation_and_resets_on_newer() {
        let mut g = ReplayGuard::new(4);
        let a = node("a");
        g.record(&a, Incarnation(5), 7).unwrap();
        assert_eq!(
            g.check(&a, Incarnation(4), 100),
            Err(Rejection::StaleIncarnation {
                known: Incarnation(5)
            })
        );
        assert_eq!(g.check(&a, Incarnation(5), 7), Err(Rejection::Replayed));
        g.record(&a, Incarnation(6), 1).unwrap();
        assert_eq!(g.incarnation(&a), Some(Incarnation(6)));
        assert_eq!(g.check(&a, Incarnation(6), 1), Err(Rejection::Replayed));
        assert_eq!(g.check(&a, Incarnation(6), 7), Ok(()));
    }

    #[test]
    fn guard_rejection_changes_nothing() {
        let mut g = ReplayGuard::new(1);
        let a = node("a");
        g.record(&a, Incarnation(2), 1).unwrap();
        assert!(g.record(&a, Incarnation(1), 5).is_err());
        assert!(g.record(&a, Incarnation(2), 1).is_err());
        assert!(g.record(&node("b"), Incarnation(2), 0).is_err());
        assert_eq!(g.len(), 1);
        assert_eq!(g.incarnation(&a), Some(Incarnation(2)));
    }

    #[test]
    fn guard_evicts_the_least_recently_used_sender() {
        let mut g = ReplayGuard::new(2);
        let (a, b, c) = (node("a"), node("b"), node("c"));
        g.record(&a, Incarnation(1), 1).unwrap();
        g.record(&b, Incarnation(1), 1).unwrap();
        g.record(&a, Incarnation(1), 2).unwrap();
        g.record(&c, Incarnation(1), 1).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.incarnation(&b), None, "b was least recently used");
        assert!(g.incarnation(&a).is_some());
        assert!(g.incarnation(&c).is_some());
        assert_eq!(g.recency.len(), 2);
    }

    #[test]
    fn guard_with_zero_capacity_still_remembers_one() {
        let mut g = ReplayGuard::new(0);
        let a = node("a");
        g.record(&a, Incarnation(1), 1).unwrap();
        assert_eq!(g.check(&a, Incarnation(1), 1), Err(Rejection::Replayed));
    }
}
