//! The filter trie: one node per distinct filter prefix, stored in an arena
//! and addressed by `u32`, with edges labelled by interned level ids.
//!
//! The trie only knows shapes; who holds which filter is recorded on its
//! nodes by the route table.

use std::collections::BTreeSet;

use super::children::Children;
use super::interner::{Interner, FIRST_RESERVED_ID};
use super::topic::TopicFilter;

/// Means "no node" wherever a node index is expected.
pub(super) const NO_NODE: u32 = u32::MAX;
/// The root is created with the trie and never removed.
pub(super) const ROOT: u32 = 0;
/// The label of a `+` edge; no interned level can have it.
pub(super) const PLUS_LABEL: u32 = FIRST_RESERVED_ID;
/// The label of a `#` edge; no interned level can have it.
pub(super) const HASH_LABEL: u32 = FIRST_RESERVED_ID + 1;
/// The label of the root, and of a topic level no filter mentions.
pub(super) const NO_LABEL: u32 = FIRST_RESERVED_ID + 2;

/// Only this many vacant slots (about 224 KiB) are tolerated before the
/// arena is renumbered, and only if they outnumber the live nodes.
const COMPACT_MIN_VACANT: usize = 4096;

/// One filter prefix. Holders are kept here so that matching reads one node
/// per level; `shared_groups` only counts, the groups themselves live in the
/// route table, looked up by node index when the count is non-zero.
pub(super) struct TrieNode {
    pub(super) parent: u32,
    /// The label of the edge from the parent.
    pub(super) label: u32,
    /// Wildcard children sit outside `exact` so matching finds them without
    /// a search.
    pub(super) plus: u32,
    pub(super) hash: u32,
    pub(super) shared_groups: u32,
    pub(super) exact: Children,
    /// Members holding the plain filter ending here, sorted, exactly sized.
    pub(super) plain: Box<[u32]>,
}

impl TrieNode {
    fn new(parent: u32, label: u32) -> Self {
        TrieNode {
            parent,
            label,
            plus: NO_NODE,
            hash: NO_NODE,
            shared_groups: 0,
            exact: Children::default(),
            plain: Box::default(),
        }
    }

    fn is_unused(&self) -> bool {
        self.plain.is_empty()
            && self.shared_groups == 0
            && self.plus == NO_NODE
            && self.hash == NO_NODE
            && self.exact.is_empty()
    }

    fn for_each_child(&self, mut visit: impl FnMut(u32)) {
        if self.plus != NO_NODE {
            visit(self.plus);
        }
        if self.hash != NO_NODE {
            visit(self.hash);
        }
        self.exact.for_each_child(visit);
    }

    /// Adds `member` to the plain holders; false if it was there already.
    pub(super) fn add_plain(&mut self, member: u32) -> bool {
        match self.plain.binary_search(&member) {
            Ok(_) => false,
            Err(at) => {
                let mut grown = Vec::with_capacity(self.plain.len() + 1);
                grown.extend_from_slice(self.plain.get(..at).unwrap_or_default());
                grown.push(member);
                grown.extend_from_slice(self.plain.get(at..).unwrap_or_default());
                self.plain = grown.into_boxed_slice();
                true
            }
        }
    }

    /// Removes `member` from the plain holders; false if it was not there.
    pub(super) fn remove_plain(&mut self, member: u32) -> bool {
        let Ok(at) = self.plain.binary_search(&member) else {
            return false;
        };
        let mut shrunk = Vec::with_capacity(self.plain.len().saturating_sub(1));
        shrunk.extend_from_slice(self.plain.get(..at).unwrap_or_default());
        shrunk.extend_from_slice(self.plain.get(at + 1..).unwrap_or_default());
        self.plain = shrunk.into_boxed_slice();
        true
    }
}

/// The arena of trie nodes.
pub(super) struct Trie {
    slots: Vec<Option<TrieNode>>,
    /// Reusing the lowest vacant slot first keeps live nodes packed at the
    /// start, so slots at the end empty out and can be returned.
    vacant: BTreeSet<u32>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            slots: vec![Some(TrieNode::new(NO_NODE, NO_LABEL))],
            vacant: BTreeSet::new(),
        }
    }
}

impl Trie {
    #[inline]
    pub(super) fn node(&self, index: u32) -> Option<&TrieNode> {
        self.slots.get(usize::try_from(index).ok()?)?.as_ref()
    }

    pub(super) fn node_mut(&mut self, index: u32) -> Option<&mut TrieNode> {
        self.slots.get_mut(usize::try_from(index).ok()?)?.as_mut()
    }

    /// How many nodes exist, the root included.
    pub(super) fn live_nodes(&self) -> usize {
        self.slots.len() - self.vacant.len()
    }

    /// The node for `filter`, if the trie has it.
    pub(super) fn find(&self, filter: &TopicFilter, labels: &Interner) -> Option<u32> {
        filter.levels().try_fold(ROOT, |at, level| {
            let node = self.node(at)?;
            let child = match level {
                "+" => node.plus,
                "#" => node.hash,
                _ => node.exact.get(labels.lookup(level)?)?,
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
                .and_then(|label| node.exact.get(label))
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
            _ => node.exact.insert(label, child),
        }
        Some(child)
    }

    fn allocate(&mut self, node: TrieNode) -> Option<u32> {
        if let Some(index) = self.vacant.pop_first() {
            let slot = self.slots.get_mut(usize::try_from(index).ok()?)?;
            *slot = Some(node);
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
        self.slots.push(Some(node));
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
                        parent_node.exact.remove(label);
                        labels.release(label);
                    }
                }
            }
            self.free(index);
            index = parent;
        }
    }

    fn free(&mut self, index: u32) {
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| self.slots.get_mut(i)) {
            *slot = None;
            self.vacant.insert(index);
        }
        while matches!(self.slots.last(), Some(None)) {
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
    /// whose levels, as interned ids, are `levels` (`NO_LABEL` for a level no
    /// filter mentions). `dollar` says the topic starts with `$`.
    ///
    /// Each node is visited at most once: a node is one filter prefix, and a
    /// prefix matches a topic's first levels in one way only. The walk uses
    /// `stack` instead of recursion, because a topic may have 65535 levels.
    #[inline]
    pub(super) fn walk_matches(
        &self,
        levels: &[u32],
        dollar: bool,
        stack: &mut Vec<(u32, usize)>,
        mut visit: impl FnMut(u32, &TrieNode),
    ) {
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
            match levels.get(depth) {
                None => visit(index, node),
                Some(&level) => {
                    if wildcards_apply && node.plus != NO_NODE {
                        stack.push((node.plus, depth + 1));
                    }
                    if let Some(child) = node.exact.get(level) {
                        stack.push((child, depth + 1));
                    }
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
    /// so the holder records can follow.
    pub(super) fn compact(&mut self) -> Vec<u32> {
        let mut new_index = vec![NO_NODE; self.slots.len()];
        let mut order = Vec::with_capacity(self.live_nodes());
        if let Some(root) = new_index.get_mut(0) {
            *root = ROOT;
            order.push(ROOT);
        }
        let mut next = 0;
        while let Some(&old) = order.get(next) {
            next += 1;
            if let Some(node) = self.node(old) {
                node.for_each_child(|child| {
                    let Some(slot) = usize::try_from(child).ok().and_then(|c| new_index.get_mut(c))
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
            let Some(mut node) = usize::try_from(old)
                .ok()
                .and_then(|old| self.slots.get_mut(old))
                .and_then(Option::take)
            else {
                continue;
            };
            node.parent = follow(node.parent);
            node.plus = follow(node.plus);
            node.hash = follow(node.hash);
            node.exact.renumber(follow);
            slots.push(Some(node));
        }
        self.slots = slots;
        self.vacant.clear();
        new_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_trie_nodes_stay_small() {
        // Two of these per filter dominate the table's memory.
        assert_eq!(std::mem::size_of::<Children>(), 16);
        assert_eq!(std::mem::size_of::<Option<TrieNode>>(), 56);
    }
}
