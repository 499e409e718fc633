//! The exact-level children of one trie node, keyed by interned level id.

use std::collections::BTreeMap;

/// Up to this many children live in one exactly sized sorted slice: most
/// trie nodes have one or a handful, and a slice costs 8 bytes per child
/// where a B-tree costs about twice that. Above it, a B-tree keeps inserts
/// logarithmic for wide levels such as `devices/{uuid}`.
const SLICE_MAX: usize = 128;

/// A wide set shrinks back to a slice only well below [`SLICE_MAX`], so that
/// a count hovering around the limit does not convert back and forth.
const SLICE_AGAIN: usize = SLICE_MAX / 2;

/// `(level id, child node)` pairs, sorted by level id, without duplicates.
// The tree is boxed so that the enum stays at 16 bytes, the size of the
// slice variant: every trie node carries one, and few are wide.
#[allow(clippy::box_collection)]
pub(super) enum Children {
    Slice(Box<[(u32, u32)]>),
    Tree(Box<BTreeMap<u32, u32>>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Slice(Box::default())
    }
}

impl Children {
    #[inline]
    pub(super) fn get(&self, level: u32) -> Option<u32> {
        match self {
            Children::Slice(pairs) => pairs
                .binary_search_by_key(&level, |&(key, _)| key)
                .ok()
                .and_then(|at| pairs.get(at))
                .map(|&(_, child)| child),
            Children::Tree(tree) => tree.get(&level).copied(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Children::Slice(pairs) => pairs.is_empty(),
            Children::Tree(tree) => tree.is_empty(),
        }
    }

    /// Adds or replaces the child under `level`.
    pub(super) fn insert(&mut self, level: u32, child: u32) {
        match self {
            Children::Slice(pairs) => match pairs.binary_search_by_key(&level, |&(key, _)| key) {
                Ok(at) => {
                    if let Some(pair) = pairs.get_mut(at) {
                        pair.1 = child;
                    }
                }
                Err(_) if pairs.len() >= SLICE_MAX => {
                    let mut tree: BTreeMap<u32, u32> = pairs.iter().copied().collect();
                    tree.insert(level, child);
                    *self = Children::Tree(Box::new(tree));
                }
                Err(at) => {
                    // Rebuilding at the exact size: a Vec would round the
                    // capacity up, and most nodes never grow again.
                    let mut grown = Vec::with_capacity(pairs.len() + 1);
                    grown.extend_from_slice(pairs.get(..at).unwrap_or_default());
                    grown.push((level, child));
                    grown.extend_from_slice(pairs.get(at..).unwrap_or_default());
                    *pairs = grown.into_boxed_slice();
                }
            },
            Children::Tree(tree) => {
                tree.insert(level, child);
            }
        }
    }

    /// Removes the child under `level`, returning it.
    pub(super) fn remove(&mut self, level: u32) -> Option<u32> {
        match self {
            Children::Slice(pairs) => {
                let at = pairs.binary_search_by_key(&level, |&(key, _)| key).ok()?;
                let child = pairs.get(at)?.1;
                let mut shrunk = Vec::with_capacity(pairs.len().saturating_sub(1));
                shrunk.extend_from_slice(pairs.get(..at).unwrap_or_default());
                shrunk.extend_from_slice(pairs.get(at + 1..).unwrap_or_default());
                *pairs = shrunk.into_boxed_slice();
                Some(child)
            }
            Children::Tree(tree) => {
                let child = tree.remove(&level)?;
                if tree.len() <= SLICE_AGAIN {
                    let pairs: Box<[(u32, u32)]> = tree.iter().map(|(&k, &v)| (k, v)).collect();
                    *self = Children::Slice(pairs);
                }
                Some(child)
            }
        }
    }

    /// Calls `visit` with every child node, in level-id order.
    pub(super) fn for_each_child(&self, mut visit: impl FnMut(u32)) {
        match self {
            Children::Slice(pairs) => pairs.iter().for_each(|&(_, child)| visit(child)),
            Children::Tree(tree) => tree.values().for_each(|&child| visit(child)),
        }
    }

    /// Replaces every child node `c` by `renumber(c)`; the level ids, and so
    /// the order, stay as they are.
    pub(super) fn renumber(&mut self, mut renumber: impl FnMut(u32) -> u32) {
        match self {
            Children::Slice(pairs) => pairs
                .iter_mut()
                .for_each(|(_, child)| *child = renumber(*child)),
            Children::Tree(tree) => tree
                .values_mut()
                .for_each(|child| *child = renumber(*child)),
        }
    }
}
