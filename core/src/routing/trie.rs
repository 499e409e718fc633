//! The filter trie: one node per distinct filter prefix, stored in an arena
//! and addressed by `u32`, with edges labelled by interned level ids.
//!
//! The trie only knows shapes; who holds which filter is recorded on its
//! nodes by the route table.

use std::collections::BTreeSet;

use super::interner::{Interner, FIRST_RESERVED_ID};
use super::node::{TrieNode, NO_NODE};
use super::topic::TopicFilter;
use super::topic_levels::TopicLevels;

/// The root is created with the trie and never removed.
pub(super) const ROOT: u32 = 0;
/// The label of a `+` edge; no interned level can have it.
pub(super) const PLUS_LABEL: u32 = FIRST_RESERVED_ID;
/// The label of a `#` edge; no interned level can have it.
pub(super) const HASH_LABEL: u32 = FIRST_RESERVED_ID + 1;
/// The label of the root, and of a topic level no filter mentions.
pub(super) const NO_LABEL: u32 = FIRST_RESERVED_ID + 2;
/// Marks a vacant arena slot (cheaper than an `Option` around every node).
const VACANT_LABEL: u32 = FIRST_RESERVED_ID + 3;

/// Only this many vacant slots (160 KiB) are tolerated before the arena is
/// renumbered, and only if they outnumber the live nodes.
const COMPACT_MIN_VACANT: usize = 4096;

/// The arena of trie nodes.
pub(super) struct Trie {
    slots: Vec<TrieNode>,
    /// Reusing the lowest vacant slot first keeps live nodes packed at the
    /// start, so slots at the end empty out and can be returned.
    vacant: BTreeSet<u32>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            slots: vec![TrieNode::new(NO_NODE, NO_LABEL)],
            vacant: BTreeSet::new(),
        }
    }
}

impl Trie {
    #[inline]
    pub(super) fn node(&self, index: u32) -> Option<&TrieNode> {
        let node = self.slots.get(usize::try_from(index).ok()?)?;
        (node.label != VACANT_LABEL).then_some(node)
    }

    pub(super) fn node_mut(&mut self, index: u32) -> Option<&mut TrieNode> {
        let node = self.slots.get_mut(usize::try_from(index).ok()?)?;
        (node.label != VACANT_LABEL).then_some(node)
    }

    /// How many nodes exist, the root included.
    pub(super) fn live_nodes(&self) -> usize {
        self.slots.len().saturating_sub(self.vacant.len())
    }

    /// Arena slots, vacant ones included.
    #[cfg(test)]
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The node for `filter`, if the trie has it.
    pub(super) fn find(&self, filter: &TopicFilter, labels: &Interner) -> Option<u32> {
        filter.levels().try_fold(ROOT, |at, level| {
            let node = self.node(at)?;
            let child = match level {
                "+" => node.plus,
                "#" => node.hash,
                _ => node.exact_child(labels.lookup(level)?)?,
            };
            (child != NO_NODE).then_some(child)
        })
    }

    /// The node for `filter`, created with its missing ancestors if needed.
    /// `None` only if the arena or the interner ran out of `u32` ids; then
    /// nothing is left behind.
    pub(super) fn find_or_create(
        &mut self,
        filter: &TopicFilter,
        labels: &mut Interner,
    ) -> Option<u32> {
        let mut at = ROOT;
        for level in filter.levels() {
            match self.child_or_create(at, level, labels) {
                Some(child) => at = child,
                None => {
                    self.prune(at, labels);
                    return None;
                }
            }
        }
        Some(at)
    }

    fn child_or_create(&mut self, parent: u32, level: &str, labels: &mut Interner) -> Option<u32> {
        let node = self.node(parent)?;
        let existing = match level {
            "+" => node.plus,
            "#" => node.hash,
            _ => labels
                .lookup(level)
                .and_then(|label| node.exact_child(label))
                .unwrap_or(NO_NODE),
        };
        if existing != NO_NODE {
            return Some(existing);
        }
        let label = match level {
            "+" => PLUS_LABEL,
            "#" => HASH_LABEL,
            _ => labels.acquire(level)?,
        };
        let Some(child) = self.allocate(TrieNode::new(parent, label)) else {
            if label < FIRST_RESERVED_ID {
                labels.release(label);
            }
            return None;
        };
        let node = self.node_mut(parent)?;
        match label {
            PLUS_LABEL => node.plus = child,
            HASH_LABEL => node.hash = child,
            _ => node.add_exact_child(label, child),
        }
        Some(child)
    }

    fn allocate(&mut self, node: TrieNode) -> Option<u32> {
        if let Some(index) = self.vacant.pop_first() {
            let slot = self.slots.get_mut(usize::try_from(index).ok()?)?;
            *slot = node;
            return Some(index);
        }
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&index| index < NO_NODE)?;
        if self.slots.len() == self.slots.capacity() {
            // Growing by an eighth instead of doubling bounds the unused
            // tail to about 12% of the arena; the extra copies are few.
            self.slots.reserve_exact(self.slots.len() / 8 + 16);
        }
        self.slots.push(node);
        Some(index)
    }

    /// Removes `index` and then each ancestor that is left holding nothing
    /// and leading nowhere, releasing their labels.
    pub(super) fn prune(&mut self, mut index: u32, labels: &mut Interner) {
        while index != ROOT {
            let Some(node) = self.node(index) else {
                return;
            };
            if !node.is_unused() {
                return;
            }
            let (parent, label) = (node.parent, node.label);
            if let Some(parent_node) = self.node_mut(parent) {
                match label {
                    PLUS_LABEL => parent_node.plus = NO_NODE,
                    HASH_LABEL => parent_node.hash = NO_NODE,
                    _ => {
                        parent_node.remove_exact_child(label);
                        labels.release(label);
                    }
                }
            }
            self.free(index);
            index = parent;
        }
    }

    fn free(&mut self, index: u32) {
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            // Replacing the node drops its overflow, returning that memory.
            *slot = TrieNode::new(NO_NODE, VACANT_LABEL);
            self.vacant.insert(index);
        }
        while self.slots.last().is_some_and(|n| n.label == VACANT_LABEL) {
            self.slots.pop();
            self.vacant.pop_last();
        }
        if self.slots.capacity() > 4 * self.slots.len() {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }

    /// The filter text of `index`, rebuilt from the labels on its path.
    pub(super) fn filter_text(&self, index: u32, labels: &Interner) -> Option<String> {
        let mut path = Vec::new();
        let mut at = index;
        while at != ROOT {
            let node = self.node(at)?;
            path.push(match node.label {
                PLUS_LABEL => "+",
                HASH_LABEL => "#",
                label => labels.resolve(label)?,
            });
            at = node.parent;
        }
        path.reverse();
        Some(path.join("/"))
    }

    /// Calls `visit` for every node holding filters that match the topic
    /// whose levels are `levels`; `dollar` says the topic starts with `$`.
    ///
    /// Each node is visited at most once: a node is one filter prefix, and a
    /// prefix matches a topic's first levels in one way only. The walk uses
    /// `stack` instead of recursion, because a topic may have tens of
    /// thousands of levels.
    #[inline]
    pub(super) fn walk_matches(
        &self,
        levels: &mut impl TopicLevels,
        dollar: bool,
        stack: &mut Vec<(u32, usize)>,
        mut visit: impl FnMut(u32, &TrieNode),
    ) {
        let level_count = levels.count();
        stack.clear();
        stack.push((ROOT, 0));
        while let Some((index, depth)) = stack.pop() {
            let Some(node) = self.node(index) else {
                continue;
            };
            // MQTT-4.7.2-1: a leading wildcard does not match `$` topics.
            let wildcards_apply = !(dollar && index == ROOT);
            if wildcards_apply && node.hash != NO_NODE {
                // `#` matches what remains, including nothing (`a/#` matches `a`).
                if let Some(hash) = self.node(node.hash) {
                    visit(node.hash, hash);
                }
            }
            if depth >= level_count {
                visit(index, node);
                continue;
            }
            if wildcards_apply && node.plus != NO_NODE {
                stack.push((node.plus, depth + 1));
            }
            if let Some((label, child)) = node.only_exact_child() {
                if levels.is(depth, label) {
                    stack.push((child, depth + 1));
                }
            } else if node.has_exact_children() {
                if let Some(child) = node.exact_child(levels.label(depth)) {
                    stack.push((child, depth + 1));
                }
            }
        }
    }

    /// Whether so many slots are vacant that renumbering pays off.
    pub(super) fn wants_compaction(&self) -> bool {
        self.vacant.len() >= COMPACT_MIN_VACANT && self.vacant.len() > self.live_nodes()
    }

    /// Renumbers live nodes breadth-first from the root, dropping vacant
    /// slots, and returns `new_index[old_index]` (`NO_NODE` for vacant ones)
    /// so the holder records can follow. Breadth-first order also puts the
    /// levels near the root, which every lookup reads, close together.
    pub(super) fn compact(&mut self) -> Vec<u32> {
        let mut new_index = vec![NO_NODE; self.slots.len()];
        let mut order: Vec<u32> = Vec::with_capacity(self.live_nodes());
        if let Some(root) = new_index.get_mut(0) {
            *root = ROOT;
            order.push(ROOT);
        }
        let mut next = 0;
        while let Some(&old) = order.get(next) {
            next += 1;
            if let Some(node) = self.node(old) {
                node.for_each_child(|child| {
                    let Some(slot) = usize::try_from(child)
                        .ok()
                        .and_then(|c| new_index.get_mut(c))
                    else {
                        return;
                    };
                    if *slot == NO_NODE {
                        if let Ok(renumbered) = u32::try_from(order.len()) {
                            *slot = renumbered;
                            order.push(child);
                        }
                    }
                });
            }
        }
        let follow = |old: u32| -> u32 {
            usize::try_from(old)
                .ok()
                .and_then(|old| new_index.get(old))
                .copied()
                .unwrap_or(NO_NODE)
        };
        let mut slots = Vec::with_capacity(order.len());
        for &old in &order {
            let Some(slot) = usize::try_from(old)
                .ok()
                .and_then(|old| self.slots.get_mut(old))
            else {
                continue;
            };
            let mut node = std::mem::replace(slot, TrieNode::new(NO_NODE, VACANT_LABEL));
            node.renumber(follow);
            slots.push(node);
        }
        self.slots = slots;
        self.vacant.clear();
        new_index
    }
}
