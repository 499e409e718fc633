//! The origin's two indexes of what it waits for, shaped by how ids and
//! numbers are handed out: both grow by one at a time and mostly settle in
//! order, so rings replace search trees on every message's path.

use std::collections::VecDeque;

use super::PublishId;

/// Values by publish id, in id order. Ids are handed out in increasing
/// order (some are never inserted: a publish with no remote target), and
/// settle mostly oldest first, so the ring stays short.
#[derive(Debug)]
pub(super) struct ById<T> {
    /// The id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<T>>,
    len: usize,
}

impl<T> ById<T> {
    pub(super) fn new() -> Self {
        ById {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }

    fn index(&self, id: PublishId) -> Option<usize> {
        let offset = id.0.checked_sub(self.base)?;
        usize::try_from(offset)
            .ok()
            .filter(|i| *i < self.slots.len())
    }

    /// Keeps `value` under `id`, which must be newer than every id kept so
    /// far; an older one is refused (returns the value back).
    pub(super) fn insert(&mut self, id: PublishId, value: T) -> Result<(), T> {
        if self.slots.is_empty() {
            self.base = id.0;
        }
        let Some(offset) = id.0.checked_sub(self.base) else {
            return Err(value);
        };
        let Ok(offset) = usize::try_from(offset) else {
            return Err(value);
        };
        if offset < self.slots.len() {
            return Err(value);
        }
        while self.slots.len() < offset {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(value));
        self.len += 1;
        Ok(())
    }

    pub(super) fn get(&self, id: PublishId) -> Option<&T> {
        self.index(id).and_then(|i| self.slots[i].as_ref())
    }

    pub(super) fn get_mut(&mut self, id: PublishId) -> Option<&mut T> {
        self.index(id).and_then(|i| self.slots[i].as_mut())
    }

    pub(super) fn remove(&mut self, id: PublishId) -> Option<T> {
        let i = self.index(id)?;
        let value = self.slots[i].take()?;
        self.len -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(value)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every value with its id, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (PublishId, &T)> {
        let base = self.base;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, slot)| slot.as_ref().map(|v| (PublishId(base + i as u64), v)))
    }

    /// The oldest value.
    pub(super) fn first(&self) -> Option<&T> {
        // The front slot is never empty while any value is kept.
        self.slots.front().and_then(Option::as_ref)
    }
}

/// The numbers sent to one destination and not yet confirmed, ascending.
/// A destination's numbers are sent in increasing order, so a new one goes
/// at the back; confirmations take ranges, nearly always from the front.
#[derive(Debug, Default)]
pub(super) struct SentNumbers(VecDeque<(u64, PublishId)>);

impl SentNumbers {
    pub(super) fn push(&mut self, seq: u64, id: PublishId) {
        match self.0.back() {
            Some((last, _)) if *last >= seq => {
                let at = self.0.partition_point(|(s, _)| *s < seq);
                if self.0.get(at).is_some_and(|(s, _)| *s == seq) {
                    self.0[at] = (seq, id);
                } else {
                    self.0.insert(at, (seq, id));
                }
            }
            _ => self.0.push_back((seq, id)),
        }
    }

    /// Takes the numbers in `from..=through` out, in order.
    pub(super) fn take_range(&mut self, from: u64, through: u64) -> Vec<(u64, PublishId)> {
        let start = self.0.partition_point(|(s, _)| *s < from);
        let end = self.0.partition_point(|(s, _)| *s <= through);
        if start >= end {
            return Vec::new();
        }
        self.0.drain(start..end).collect()
    }

    /// The publish number `seq` belongs to, if it is outstanding.
    pub(super) fn get(&self, seq: u64) -> Option<PublishId> {
        let at = self.0.partition_point(|(s, _)| *s < seq);
        self.0.get(at).filter(|(s, _)| *s == seq).map(|(_, id)| *id)
    }

    pub(super) fn remove(&mut self, seq: u64) {
        let at = self.0.partition_point(|(s, _)| *s < seq);
        if self.0.get(at).is_some_and(|(s, _)| *s == seq) {
            self.0.remove(at);
        }
    }

    pub(super) fn oldest(&self) -> Option<u64> {
        self.0.front().map(|(s, _)| *s)
    }

    pub(super) fn newest(&self) -> Option<u64> {
        self.0.back().map(|(s, _)| *s)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// The ring answers as a map would, for ids inserted in order.
        #[test]
        fn by_id_behaves_as_a_map(ops in prop::collection::vec((any::<bool>(), 0..6u64), 0..300)) {
            let mut ring = ById::new();
            let mut model = BTreeMap::new();
            let mut next = 1u64;
            for (insert, k) in ops {
                if insert {
                    next += k;
                    prop_assert!(ring.insert(PublishId(next), next).is_ok());
                    model.insert(next, next);
                    prop_assert!(ring.insert(PublishId(next), 0).is_err(), "an id twice");
                    next += 1;
                } else {
                    let target = model.keys().nth(k as usize % model.len().max(1)).copied();
                    if let Some(id) = target {
                        prop_assert_eq!(ring.remove(PublishId(id)), model.remove(&id));
                    }
                    prop_assert_eq!(ring.remove(PublishId(next + 5)), None);
                }
                prop_assert_eq!(ring.len(), model.len());
                prop_assert_eq!(ring.first(), model.values().next());
                let listed: Vec<(u64, u64)> = ring.iter().map(|(id, v)| (id.0, *v)).collect();
                let expected: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(listed, expected);
            }
        }

        /// The numbers answer as a sorted map would.
        #[test]
        fn sent_numbers_behave_as_a_sorted_map(
            ops in prop::collection::vec((0..3u8, 0..200u64, 0..20u64), 0..300),
        ) {
            let mut sent = SentNumbers::default();
            let mut model: BTreeMap<u64, PublishId> = BTreeMap::new();
            for (op, seq, len) in ops {
                match op {
                    0 => {
                        sent.push(seq, PublishId(seq * 10));
                        model.insert(seq, PublishId(seq * 10));
                    }
                    1 => {
                        let taken = sent.take_range(seq, seq + len);
                        let expected: Vec<(u64, PublishId)> =
                            model.range(seq..=seq + len).map(|(s, id)| (*s, *id)).collect();
                        for (s, _) in &expected {
                            model.remove(s);
                        }
                        prop_assert_eq!(taken, expected);
                    }
                    _ => {
                        prop_assert_eq!(sent.get(seq), model.get(&seq).copied());
                        sent.remove(seq);
                        model.remove(&seq);
                    }
                }
                prop_assert_eq!(sent.len(), model.len());
                prop_assert_eq!(sent.oldest(), model.keys().next().copied());
                prop_assert_eq!(sent.newest(), model.keys().next_back().copied());
            }
        }
    }
}
