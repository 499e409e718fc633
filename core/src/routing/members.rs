//! Subscriber nodes interned as small integers, each with the list of routes
//! it holds so that all of them can be removed at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::id::NodeId;

/// The `group` of a [`RouteKey`] for a plain (unshared) subscription.
pub(super) const PLAIN: u32 = u32::MAX;

/// One route of a member: the trie node of its filter and the interned share
/// group, or [`PLAIN`]. Eight bytes instead of the filter text: the text can
/// be rebuilt from the trie when a snapshot needs it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) struct RouteKey {
    pub(super) leaf: u32,
    pub(super) group: u32,
}

pub(super) struct Member {
    pub(super) id: NodeId,
    pub(super) routes: BTreeSet<RouteKey>,
}

/// `NodeId` <-> member index, for members holding at least one route.
#[derive(Default)]
pub(super) struct Members {
    by_id: BTreeMap<NodeId, u32>,
    slots: Vec<Option<Member>>,
    /// Lowest first, as in the trie, so the slot table stays short.
    vacant: BTreeSet<u32>,
    /// `rank[index]`: the member's position in node-id order, and
    /// `by_rank[position]`: the member index there. Matching collects ranks
    /// and sorts integers instead of comparing node-id strings.
    rank: Vec<u32>,
    by_rank: Vec<u32>,
}

impl Members {
    pub(super) fn index_of(&self, id: &NodeId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// The index of `id`, registering it if needed. `None` only if `u32`
    /// indices ran out.
    pub(super) fn index_or_add(&mut self, id: &NodeId) -> Option<u32> {
        if let Some(index) = self.index_of(id) {
            return Some(index);
        }
        let member = Member {
            id: id.clone(),
            routes: BTreeSet::new(),
        };
        let index = match self.vacant.pop_first() {
            Some(index) => {
                *self.slots.get_mut(usize::try_from(index).ok()?)? = Some(member);
                index
            }
            None => {
                let index = u32::try_from(self.slots.len()).ok()?;
                self.slots.push(Some(member));
                index
            }
        };
        self.by_id.insert(id.clone(), index);
        self.rerank();
        Some(index)
    }

    /// Membership changes are rare next to lookups, so ranks are simply
    /// recomputed in full.
    fn rerank(&mut self) {
        self.rank.clear();
        self.rank.resize(self.slots.len(), u32::MAX);
        self.by_rank.clear();
        self.by_rank.extend(self.by_id.values().copied());
        for (position, &index) in self.by_rank.iter().enumerate() {
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| self.rank.get_mut(i));
            if let (Some(slot), Ok(position)) = (slot, u32::try_from(position)) {
                *slot = position;
            }
        }
    }

    /// The member's position in node-id order.
    #[inline]
    pub(super) fn rank(&self, index: u32) -> Option<u32> {
        self.rank.get(usize::try_from(index).ok()?).copied()
    }

    /// The id of the member at `rank` in node-id order.
    #[inline]
    pub(super) fn id_by_rank(&self, rank: u32) -> Option<&NodeId> {
        self.id(*self.by_rank.get(usize::try_from(rank).ok()?)?)
    }

    pub(super) fn get(&self, index: u32) -> Option<&Member> {
        self.slots.get(usize::try_from(index).ok()?)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, index: u32) -> Option<&mut Member> {
        self.slots.get_mut(usize::try_from(index).ok()?)?.as_mut()
    }

    #[inline]
    pub(super) fn id(&self, index: u32) -> Option<&NodeId> {
        self.get(index).map(|member| &member.id)
    }

    /// Forgets the member at `index` if it holds no route any more.
    pub(super) fn forget_if_idle(&mut self, index: u32) {
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        else {
            return;
        };
        if !slot.as_ref().is_some_and(|member| member.routes.is_empty()) {
            return;
        }
        if let Some(member) = slot.take() {
            self.by_id.remove(&member.id);
        }
        self.vacant.insert(index);
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
            self.vacant.pop_last();
        }
        if self.by_id.is_empty() {
            self.slots = Vec::new();
        }
        self.rerank();
    }

    /// Members holding routes.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// One more than the highest member index in use.
    pub(super) fn index_bound(&self) -> usize {
        self.slots.len()
    }

    /// The members' ids, sorted.
    pub(super) fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.by_id.keys()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        self.slots.iter_mut().flatten()
    }
}
