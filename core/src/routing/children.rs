//! The exact-level children of a trie node with two or more of them, keyed
//! by interned level label.

use super::id_map::IdMap;

/// Up to this many children live in one exactly sized slice: 64 bytes, a
/// cache line, scanned in one go. Above it, a hash map.
const FEW_MAX: usize = 8;

/// A map shrinks back to a slice only well below [`FEW_MAX`], so that a
/// count hovering around the limit does not convert back and forth.
const FEW_AGAIN: usize = FEW_MAX / 2;

/// `(label, child node)` pairs without duplicate labels.
pub(super) enum Children {
    Few(Box<[(u32, u32)]>),
    Many(Box<IdMap>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Few(Box::default())
    }
}

impl Children {
    #[inline]
    pub(super) fn get(&self, label: u32) -> Option<u32> {
        match self {
            Children::Few(pairs) => pairs
                .iter()
                .find(|&&(key, _)| key == label)
                .map(|&(_, child)| child),
            Children::Many(map) => map.get(label),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Children::Few(pairs) => pairs.is_empty(),
            Children::Many(map) => map.len() == 0,
        }
    }

    /// Adds or replaces the child under `label`.
    pub(super) fn insert(&mut self, label: u32, child: u32) {
        match self {
            Children::Few(pairs) => {
                if let Some(pair) = pairs.iter_mut().find(|(key, _)| *key == label) {
                    pair.1 = child;
                } else if pairs.len() >= FEW_MAX {
                    let mut map = IdMap::with_room_for(pairs.len() + 1);
                    for &(key, value) in pairs.iter() {
                        map.insert(key, value);
                    }
                    map.insert(label, child);
                    *self = Children::Many(Box::new(map));
                } else {
                    // Rebuilt at the exact size: a Vec would round the
                    // capacity up, and most nodes never grow again.
                    let mut grown = Vec::with_capacity(pairs.len() + 1);
                    grown.extend_from_slice(pairs);
                    grown.push((label, child));
                    *pairs = grown.into_boxed_slice();
                }
            }
            Children::Many(map) => map.insert(label, child),
        }
    }

    /// Removes the child under `label`, returning it.
    pub(super) fn remove(&mut self, label: u32) -> Option<u32> {
        match self {
            Children::Few(pairs) => {
                let child = pairs.iter().find(|&&(key, _)| key == label)?.1;
                let rest: Box<[(u32, u32)]> = pairs
                    .iter()
                    .copied()
                    .filter(|&(key, _)| key != label)
                    .collect();
                *pairs = rest;
                Some(child)
            }
            Children::Many(map) => {
                let child = map.remove(label)?;
                if map.len() <= FEW_AGAIN {
                    *self = Children::Few(map.iter().collect());
                }
                Some(child)
            }
        }
    }

    /// The one entry, if there is exactly one.
    pub(super) fn only_entry(&self) -> Option<(u32, u32)> {
        match self {
            Children::Few(pairs) => match pairs[..] {
                [only] => Some(only),
                _ => None,
            },
            Children::Many(map) if map.len() == 1 => map.iter().next(),
            Children::Many(_) => None,
        }
    }

    /// Calls `visit` with every child node.
    pub(super) fn for_each_child(&self, mut visit: impl FnMut(u32)) {
        match self {
            Children::Few(pairs) => pairs.iter().for_each(|&(_, child)| visit(child)),
            Children::Many(map) => map.iter().for_each(|(_, child)| visit(child)),
        }
    }

    /// Replaces every child node `c` by `renumber(c)`.
    pub(super) fn renumber(&mut self, mut renumber: impl FnMut(u32) -> u32) {
        match self {
            Children::Few(pairs) => pairs
                .iter_mut()
                .for_each(|(_, child)| *child = renumber(*child)),
            Children::Many(map) => map.renumber(renumber),
        }
    }
}
