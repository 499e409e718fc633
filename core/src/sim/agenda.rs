//! What is due when: the simulator's pending events, earliest first.
//!
//! Events leave in order of their due time, and events due at the same time
//! in the order they were scheduled, so a run never depends on how the
//! queue is laid out. The heap orders small keys only; the events (which
//! carry whole HTTP requests) stay in place in reused slots, so scheduling
//! neither allocates once the slots have grown nor moves a request around.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Instant;

/// Pending events of type `E` by (due time, scheduling order).
pub(super) struct Agenda<E> {
    /// (due, scheduling order, slot), smallest first.
    due: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slots: Vec<Option<E>>,
    /// Slots whose event left, to be reused.
    free: Vec<usize>,
    scheduled: u64,
}

impl<E> Agenda<E> {
    /// An empty agenda.
    pub(super) fn new() -> Self {
        Agenda {
            due: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            scheduled: 0,
        }
    }

    /// Schedules `event` at `at`, after everything already due then.
    pub(super) fn push(&mut self, at: Instant, event: E) {
        self.scheduled += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(place) = self.slots.get_mut(slot) {
                    *place = Some(event);
                }
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.due.push(Reverse((at, self.scheduled, slot)));
    }

    /// Takes the earliest event if it is due by `until`.
    pub(super) fn pop_due(&mut self, until: Instant) -> Option<(Instant, E)> {
        loop {
            let Reverse((at, _, slot)) = *self.due.peek()?;
            if at > until {
                return None;
            }
            self.due.pop();
            // Every key names a filled slot; an empty one would be skipped
            // rather than stop the run.
            if let Some(event) = self.slots.get_mut(slot).and_then(Option::take) {
                self.free.push(slot);
                return Some((at, event));
            }
        }
    }

    /// How many events are pending.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn events_leave_by_due_time_then_scheduling_order() {
        let mut agenda = Agenda::new();
        agenda.push(at(5), "b");
        agenda.push(at(1), "a");
        agenda.push(at(5), "c");
        agenda.push(at(9), "d");
        let mut out = Vec::new();
        while let Some((when, e)) = agenda.pop_due(at(5)) {
            out.push((when, e));
        }
        assert_eq!(out, [(at(1), "a"), (at(5), "b"), (at(5), "c")]);
        assert_eq!(agenda.len(), 1);
        assert_eq!(agenda.pop_due(at(100)), Some((at(9), "d")));
        assert_eq!(agenda.pop_due(at(100)), None);
    }

    #[test]
    fn slots_are_reused_without_reordering() {
        let mut agenda = Agenda::new();
        for round in 0..100u64 {
            agenda.push(at(round), round * 2);
            // Due later than anything taken in this loop.
            agenda.push(at(1_000 - round), round * 2 + 1);
            assert_eq!(agenda.pop_due(at(round)), Some((at(round), round * 2)));
        }
        // One slot reused every round, one kept per round.
        assert!(agenda.slots.len() <= 101, "{}", agenda.slots.len());
        let rest: Vec<u64> =
            std::iter::from_fn(|| agenda.pop_due(at(1_000)).map(|(_, e)| e)).collect();
        assert_eq!(rest, (0..100).rev().map(|r| r * 2 + 1).collect::<Vec<_>>());
        assert_eq!(agenda.len(), 0);
    }
}
