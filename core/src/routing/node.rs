//! The layout of one trie node, sized for the common case.
//!
//! Most nodes of a large table have at most one exact child and at most one
//! plain holder (`site/7/dev/3` leads only to `temp`, which one node holds).
//! Those cases live inline, so such a node is 40 bytes with nothing on the
//! heap, and matching reads it without following a pointer. A node with more
//! children or holders moves them all into one boxed [`Overflow`].

use super::children::Children;

/// Means "no node" wherever a node index is expected.
pub(super) const NO_NODE: u32 = u32::MAX;
/// Means "no member" wherever a member index is expected.
pub(super) const NO_MEMBER: u32 = u32::MAX;

/// The children and holders that do not fit inline.
#[derive(Default)]
struct Overflow {
    /// Two or more exact children, or none.
    children: Children,
    /// Two or more plain holders, sorted, or none.
    holders: Box<[u32]>,
}

/// One filter prefix: its edges and who holds the filter ending here.
///
/// Shared groups are only counted here; the route table keeps them, looked
/// up by node index when the count is non-zero.
pub(super) struct TrieNode {
    pub(super) parent: u32,
    /// The label of the edge from the parent.
    pub(super) label: u32,
    /// Wildcard children are kept apart from the exact ones so that matching
    /// finds them without a search.
    pub(super) plus: u32,
    pub(super) hash: u32,
    pub(super) shared_groups: u32,
    /// The exact child, when there is exactly one (else `NO_NODE`).
    only_child: u32,
    only_child_label: u32,
    /// The plain holder, when there is exactly one (else `NO_MEMBER`).
    only_holder: u32,
    overflow: Option<Box<Overflow>>,
}

impl TrieNode {
    pub(super) fn new(parent: u32, label: u32) -> Self {
        TrieNode {
            parent,
            label,
            plus: NO_NODE,
            hash: NO_NODE,
            shared_groups: 0,
            only_child: NO_NODE,
            only_child_label: 0,
            only_holder: NO_MEMBER,
            overflow: None,
        }
    }

    /// Whether the node holds nothing and leads nowhere, so it can go.
    pub(super) fn is_unused(&self) -> bool {
        self.only_holder == NO_MEMBER
            && self.only_child == NO_NODE
            && self.overflow.is_none()
            && self.shared_groups == 0
            && self.plus == NO_NODE
            && self.hash == NO_NODE
    }

    /// Whether any exact child exists, i.e. whether the next topic level is
    /// worth looking up.
    #[inline]
    pub(super) fn has_exact_children(&self) -> bool {
        self.only_child != NO_NODE
            || self
                .overflow
                .as_ref()
                .is_some_and(|o| !o.children.is_empty())
    }

    /// The exact child and its label, when there is exactly one.
    #[inline]
    pub(super) fn only_exact_child(&self) -> Option<(u32, u32)> {
        (self.only_child != NO_NODE).then_some((self.only_child_label, self.only_child))
    }

    /// The exact child under `label`.
    #[inline]
    pub(super) fn exact_child(&self, label: u32) -> Option<u32> {
        if self.only_child != NO_NODE {
            return (self.only_child_label == label).then_some(self.only_child);
        }
        self.overflow.as_ref()?.children.get(label)
    }

    /// Adds the exact child `child` under `label`, which must be absent.
    pub(super) fn add_exact_child(&mut self, label: u32, child: u32) {
        if !self.has_exact_children() {
            self.only_child = child;
            self.only_child_label = label;
            return;
        }
        let (moved_label, moved) = (self.only_child_label, self.only_child);
        self.only_child = NO_NODE;
        let children = &mut self.overflow.get_or_insert_with(Box::default).children;
        if moved != NO_NODE {
            children.insert(moved_label, moved);
        }
        children.insert(label, child);
    }

    /// Removes the exact child under `label`, if any.
    pub(super) fn remove_exact_child(&mut self, label: u32) {
        if self.only_child != NO_NODE {
            if self.only_child_label == label {
                self.only_child = NO_NODE;
            }
            return;
        }
        let Some(overflow) = self.overflow.as_mut() else {
            return;
        };
        overflow.children.remove(label);
        if let Some((last_label, last)) = overflow.children.only_entry() {
            overflow.children = Children::default();
            self.only_child = last;
            self.only_child_label = last_label;
        }
        self.drop_empty_overflow();
    }

    /// The plain holders, sorted.
    #[inline]
    pub(super) fn holders(&self) -> &[u32] {
        if self.only_holder != NO_MEMBER {
            return std::slice::from_ref(&self.only_holder);
        }
        match &self.overflow {
            Some(overflow) => &overflow.holders,
            None => &[],
        }
    }

    /// Adds a plain holder; false if it was one already.
    pub(super) fn add_holder(&mut self, member: u32) -> bool {
        let current = self.holders();
        let Err(at) = current.binary_search(&member) else {
            return false;
        };
        if current.is_empty() {
            self.only_holder = member;
            return true;
        }
        let mut grown = Vec::with_capacity(current.len() + 1);
        grown.extend_from_slice(current.get(..at).unwrap_or_default());
        grown.push(member);
        grown.extend_from_slice(current.get(at..).unwrap_or_default());
        self.only_holder = NO_MEMBER;
        self.overflow.get_or_insert_with(Box::default).holders = grown.into_boxed_slice();
        true
    }

    /// Removes a plain holder; false if it was not one.
    pub(super) fn remove_holder(&mut self, member: u32) -> bool {
        if self.only_holder != NO_MEMBER {
            let held = self.only_holder == member;
            if held {
                self.only_holder = NO_MEMBER;
            }
            return held;
        }
        let Some(overflow) = self.overflow.as_mut() else {
            return false;
        };
        let Ok(at) = overflow.holders.binary_search(&member) else {
            return false;
        };
        let mut rest: Vec<u32> = Vec::with_capacity(overflow.holders.len().saturating_sub(1));
        rest.extend_from_slice(overflow.holders.get(..at).unwrap_or_default());
        rest.extend_from_slice(overflow.holders.get(at + 1..).unwrap_or_default());
        if let [last] = rest[..] {
            self.only_holder = last;
            overflow.holders = Box::default();
        } else {
            overflow.holders = rest.into_boxed_slice();
        }
        self.drop_empty_overflow();
        true
    }

    fn drop_empty_overflow(&mut self) {
        if self
            .overflow
            .as_ref()
            .is_some_and(|o| o.children.is_empty() && o.holders.is_empty())
        {
            self.overflow = None;
        }
    }

    /// Calls `visit` with every child: `+`, `#`, then the exact ones.
    pub(super) fn for_each_child(&self, mut visit: impl FnMut(u32)) {
        for child in [self.plus, self.hash, self.only_child] {
            if child != NO_NODE {
                visit(child);
            }
        }
        if let Some(overflow) = &self.overflow {
            overflow.children.for_each_child(visit);
        }
    }

    /// Replaces every node index `i` the node refers to by `renumber(i)`.
    pub(super) fn renumber(&mut self, mut renumber: impl FnMut(u32) -> u32) {
        for link in [
            &mut self.parent,
            &mut self.plus,
            &mut self.hash,
            &mut self.only_child,
        ] {
            if *link != NO_NODE {
                *link = renumber(*link);
            }
        }
        if let Some(overflow) = &mut self.overflow {
            overflow.children.renumber(renumber);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_trie_nodes_stay_small() {
        // Two of these per filter dominate the table's memory.
        assert_eq!(std::mem::size_of::<TrieNode>(), 40);
        assert_eq!(std::mem::size_of::<Children>(), 16);
    }

    #[test]
    fn routing_node_moves_children_and_holders_inline_and_back() {
        let mut node = TrieNode::new(NO_NODE, 0);
        node.add_exact_child(5, 50);
        assert_eq!((node.exact_child(5), node.exact_child(6)), (Some(50), None));
        node.add_exact_child(6, 60);
        node.add_exact_child(4, 40);
        assert_eq!(node.exact_child(5), Some(50));
        node.remove_exact_child(5);
        node.remove_exact_child(4);
        assert_eq!(node.exact_child(6), Some(60));
        assert!(node.overflow.is_none());
        node.remove_exact_child(6);
        assert!(!node.has_exact_children());

        assert!(node.add_holder(3));
        assert!(!node.add_holder(3));
        assert!(node.add_holder(1));
        assert!(node.add_holder(2));
        assert_eq!(node.holders(), [1, 2, 3]);
        assert!(node.remove_holder(1));
        assert!(!node.remove_holder(1));
        assert!(node.remove_holder(3));
        assert_eq!(node.holders(), [2]);
        assert!(node.overflow.is_none());
        assert!(node.remove_holder(2));
        assert!(node.is_unused());
    }
}
