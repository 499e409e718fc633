//! One shared-subscription group on one filter: its members and whose turn
//! is next.

use super::members::Members;

/// The members holding `$share/{group}/{filter}` for one group and filter.
///
/// Each matching message goes to one member, taken in turn from the members
/// sorted by node id: the turn passes to the first member after the last one
/// served, wrapping around. Defining turns by id rather than by arrival
/// keeps them fair when members join or leave mid-round: nobody is served
/// twice in a round, and a newcomer is served when the round reaches its
/// place.
#[derive(Default)]
pub(super) struct SharedGroup {
    /// Member indices, ordered by their node ids.
    members: Vec<u32>,
    /// Position in `members` of the next one to receive.
    next: usize,
}

impl SharedGroup {
    /// Adds `member`; false if it was there already.
    pub(super) fn add(&mut self, member: u32, directory: &Members) -> bool {
        if self.members.contains(&member) {
            return false;
        }
        let Some(id) = directory.id(member) else {
            return false;
        };
        let at = self
            .members
            .partition_point(|&other| directory.id(other).is_some_and(|other| other < id));
        self.members.insert(at, member);
        // The turn goes to the first member after the last one served, in id
        // order; a newcomer sorting before that point waits for the next round.
        if at < self.next {
            self.next += 1;
        }
        true
    }

    /// Removes `member`; false if it was not there.
    pub(super) fn remove(&mut self, member: u32) -> bool {
        let Some(at) = self.members.iter().position(|&m| m == member) else {
            return false;
        };
        self.members.remove(at);
        if at < self.next {
            self.next -= 1;
        }
        if self.next >= self.members.len() {
            self.next = 0;
        }
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member whose turn it is; the turn then passes on.
    #[inline]
    pub(super) fn take_turn(&mut self) -> Option<u32> {
        let chosen = *self.members.get(self.next)?;
        self.next = if self.next + 1 >= self.members.len() {
            0
        } else {
            self.next + 1
        };
        Some(chosen)
    }

    /// The member whose turn it is, without passing the turn on.
    pub(super) fn peek(&self) -> Option<u32> {
        self.members.get(self.next).copied()
    }

    /// The members, in turn order.
    pub(super) fn members(&self) -> &[u32] {
        &self.members
    }
}
