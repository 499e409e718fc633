//! A compact open-addressing hash map from level labels to node indices,
//! for trie nodes with many exact children.
//!
//! A lookup in a wide node (`site/{1000 ids}`) costs one or two cache lines
//! here, where a binary search or a B-tree touches five or more.
//!
//! Keys are label ids the interner hands out densely from 0, never text a
//! client chose, so a fixed multiplicative hash spreads them well. Someone
//! who wanted to make many children of one node collide would have to keep
//! a large multiple of that many other labels alive; even then only lookups
//! in that one node slow down, and nothing depends on the map's order
//! except the numbering chosen when the trie is compacted, which is itself
//! deterministic.

/// Marks an empty slot; the interner never hands out this id.
const EMPTY: u32 = u32::MAX;
/// The smallest table, in slots.
const MIN_SLOTS: usize = 16;

/// `label -> node` with linear probing and backward-shift deletion.
pub(super) struct IdMap {
    /// `(label, node)`, or `(EMPTY, _)`; the length is a power of two.
    slots: Box<[(u32, u32)]>,
    len: usize,
}

impl IdMap {
    /// An empty map with room for `count` entries without growing.
    pub(super) fn with_room_for(count: usize) -> Self {
        // At most 7/8 full, so that probe runs stay short.
        let wanted = (count.saturating_mul(8) / 7 + 1).max(MIN_SLOTS);
        let size = wanted.checked_next_power_of_two().unwrap_or(wanted);
        IdMap {
            slots: vec![(EMPTY, 0); size].into_boxed_slice(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Fibonacci hashing: the multiplication spreads consecutive ids; the
    /// high bits of the product are the best mixed.
    #[inline]
    fn home(&self, label: u32) -> usize {
        let mixed = u64::from(label).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let bits = self.slots.len().trailing_zeros();
        usize::try_from(mixed >> (64 - bits.clamp(1, 63))).unwrap_or(0) & self.mask()
    }

    /// The slot holding `label`, or the empty slot where it would go.
    #[inline]
    fn probe(&self, label: u32) -> Option<usize> {
        let mask = self.mask();
        let mut at = self.home(label);
        // Bounded by the table size; a table is never full, so the loop
        // normally ends at `label` or an empty slot well before.
        for _ in 0..self.slots.len() {
            let &(key, _) = self.slots.get(at)?;
            if key == label || key == EMPTY {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
        None
    }

    #[inline]
    pub(super) fn get(&self, label: u32) -> Option<u32> {
        if label == EMPTY {
            return None;
        }
        let &(key, node) = self.slots.get(self.probe(label)?)?;
        (key == label).then_some(node)
    }

    /// Adds or replaces `label -> node`.
    pub(super) fn insert(&mut self, label: u32, node: u32) {
        if label == EMPTY {
            return;
        }
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.resize(self.len + 1);
        }
        let Some(at) = self.probe(label) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(at) {
            if slot.0 == EMPTY {
                self.len += 1;
            }
            *slot = (label, node);
        }
    }

    /// Removes `label`, returning its node.
    pub(super) fn remove(&mut self, label: u32) -> Option<u32> {
        let mut hole = self.probe(label)?;
        let &(key, node) = self.slots.get(hole)?;
        if key != label {
            return None;
        }
        // Backward-shift deletion: pull later entries of the probe run into
        // the hole when that moves them no further from their home slot, so
        // no tombstones are needed and lookups stay short.
        let mask = self.mask();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let Some(&(moved_key, moved_node)) = self.slots.get(next) else {
                break;
            };
            if moved_key == EMPTY {
                break;
            }
            let home = self.home(moved_key);
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                if let Some(slot) = self.slots.get_mut(hole) {
                    *slot = (moved_key, moved_node);
                }
                hole = next;
            }
        }
        if let Some(slot) = self.slots.get_mut(hole) {
            *slot = (EMPTY, 0);
        }
        self.len = self.len.saturating_sub(1);
        if self.slots.len() > MIN_SLOTS && self.len * 8 < self.slots.len() {
            self.resize(self.len);
        }
        Some(node)
    }

    fn resize(&mut self, room_for: usize) {
        let mut resized = IdMap::with_room_for(room_for);
        for (label, node) in self.iter() {
            resized.insert(label, node);
        }
        *self = resized;
    }

    /// The entries, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.slots.iter().copied().filter(|&(key, _)| key != EMPTY)
    }

    /// Replaces every node `n` by `renumber(n)`; labels and slots stay.
    pub(super) fn renumber(&mut self, mut renumber: impl FnMut(u32) -> u32) {
        for (key, node) in self.slots.iter_mut() {
            if *key != EMPTY {
                *node = renumber(*node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn routing_id_map_behaves_like_a_btree_map(
            ops in prop::collection::vec((any::<bool>(), 0..300u32, any::<u32>()), 0..600),
        ) {
            let mut map = IdMap::with_room_for(0);
            let mut model = BTreeMap::new();
            for (insert, label, node) in ops {
                if insert {
                    map.insert(label, node);
                    model.insert(label, node);
                } else {
                    prop_assert_eq!(map.remove(label), model.remove(&label));
                }
                prop_assert_eq!(map.len(), model.len());
            }
            for label in 0..300 {
                prop_assert_eq!(map.get(label), model.get(&label).copied());
            }
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable();
            prop_assert_eq!(entries, model.into_iter().collect::<Vec<_>>());
        }
    }
}
