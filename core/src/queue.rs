//! Bounded queues with a discard policy.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// What a full queue does with one more message (`queuePolicy` in plugin.yaml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// `0`: keep what is queued, drop the message that arrives.
    #[default]
    DiscardNewest,
    /// `1`: drop the oldest queued message to make room.
    DiscardOldest,
}

impl QueuePolicy {
    /// The policy's number in plugin.yaml.
    pub fn code(self) -> u8 {
        match self {
            QueuePolicy::DiscardNewest => 0,
            QueuePolicy::DiscardOldest => 1,
        }
    }

    /// The policy for a plugin.yaml number, if it is one.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(QueuePolicy::DiscardNewest),
            1 => Some(QueuePolicy::DiscardOldest),
            _ => None,
        }
    }
}

/// What became of a push onto a [`BoundedQueue`].
///
/// Every drop is also counted in [`BoundedQueue::dropped`]; the dropped item
/// is handed back so the caller can report or release it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped message should be reported"]
pub enum Push<T> {
    /// The item was queued and nothing was dropped.
    Queued,
    /// The queue was full and kept its older items: the newest was dropped.
    /// After [`push`](BoundedQueue::push) that is the item pushed; after
    /// [`push_front`](BoundedQueue::push_front) it is the item evicted from
    /// the back.
    DroppedNewest(T),
    /// The queue was full and made room by dropping its oldest item. After
    /// [`push`](BoundedQueue::push) that is the item evicted from the front;
    /// after [`push_front`](BoundedQueue::push_front) it is the item pushed,
    /// which was older than everything queued.
    DroppedOldest(T),
}

impl<T> Push<T> {
    /// Whether nothing was dropped.
    pub fn is_queued(&self) -> bool {
        matches!(self, Push::Queued)
    }

    /// The dropped item, if any.
    pub fn into_dropped(self) -> Option<T> {
        match self {
            Push::Queued => None,
            Push::DroppedNewest(item) | Push::DroppedOldest(item) => Some(item),
        }
    }
}

/// A FIFO queue that never holds more than its capacity and, when full,
/// drops by age as its [`QueuePolicy`] says, counting every drop.
///
/// Items are ordered oldest (front) to newest (back). Memory is reserved as
/// items arrive, not up front, so a large `queueLength` costs nothing until
/// it is used. A capacity of 0 is taken as 1: a queue that can hold nothing
/// would drop every message, which no configuration means.
///
/// ```
/// use mqtt_cluster_core::queue::{BoundedQueue, Push, QueuePolicy};
///
/// let mut queue = BoundedQueue::new(2, QueuePolicy::DiscardOldest);
/// assert_eq!(queue.push("a"), Push::Queued);
/// assert_eq!(queue.push("b"), Push::Queued);
/// assert_eq!(queue.push("c"), Push::DroppedOldest("a"));
/// assert_eq!(queue.pop(), Some("b"));
/// // A retry goes back to the front: it is older than what is queued.
/// assert_eq!(queue.push_front("b"), Push::Queued);
/// assert_eq!(queue.iter().copied().collect::<Vec<_>>(), ["b", "c"]);
/// assert_eq!(queue.dropped(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
    policy: QueuePolicy,
    dropped: u64,
}

impl<T> BoundedQueue<T> {
    /// An empty queue holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize, policy: QueuePolicy) -> Self {
        BoundedQueue {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            dropped: 0,
        }
    }

    /// Adds `item` as the newest; when full, drops by the policy.
    #[inline]
    pub fn push(&mut self, item: T) -> Push<T> {
        if self.items.len() < self.capacity {
            self.items.push_back(item);
            return Push::Queued;
        }
        self.dropped = self.dropped.saturating_add(1);
        match self.policy {
            QueuePolicy::DiscardNewest => Push::DroppedNewest(item),
            QueuePolicy::DiscardOldest => match self.items.pop_front() {
                Some(oldest) => {
                    self.items.push_back(item);
                    Push::DroppedOldest(oldest)
                }
                // Unreachable with capacity >= 1, but refusing is the safe answer.
                None => Push::DroppedOldest(item),
            },
        }
    }

    /// Puts `item` back as the oldest, for a retry that must go out before
    /// what was queued after it. When full, the policy still drops by age:
    /// [`DiscardNewest`](QueuePolicy::DiscardNewest) evicts the newest item
    /// at the back, [`DiscardOldest`](QueuePolicy::DiscardOldest) refuses
    /// `item` itself, being the oldest.
    pub fn push_front(&mut self, item: T) -> Push<T> {
        if self.items.len() < self.capacity {
            self.items.push_front(item);
            return Push::Queued;
        }
        self.dropped = self.dropped.saturating_add(1);
        match self.policy {
            QueuePolicy::DiscardOldest => Push::DroppedOldest(item),
            QueuePolicy::DiscardNewest => match self.items.pop_back() {
                Some(newest) => {
                    self.items.push_front(item);
                    Push::DroppedNewest(newest)
                }
                None => Push::DroppedNewest(item),
            },
        }
    }

    /// Queues `item` even when full: for items the policy must never drop,
    /// bounded by other means.
    pub fn push_over(&mut self, item: T) {
        self.items.push_back(item);
    }

    /// Removes the oldest (`oldest`) or newest item `pick` accepts.
    pub fn remove_where(&mut self, oldest: bool, pick: impl Fn(&T) -> bool) -> Option<T> {
        let index = if oldest {
            self.items.iter().position(pick)
        } else {
            self.items.iter().rposition(pick)
        }?;
        self.items.remove(index)
    }

    /// Takes the oldest item.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// The oldest item.
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the next [`push`](Self::push) would drop something.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    /// The most items the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What the queue drops when full.
    pub fn policy(&self) -> QueuePolicy {
        self.policy
    }

    /// How many items the policy has dropped since the queue was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The queued items, oldest first.
    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, T> {
        self.items.iter()
    }

    /// Takes all queued items, oldest first. Taking is not dropping: the
    /// drop count stays as it is.
    pub fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, T> {
        self.items.drain(..)
    }
}

impl<'a, T> IntoIterator for &'a BoundedQueue<T> {
    type Item = &'a T;
    type IntoIter = std::collections::vec_deque::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queue_capacity_zero_is_taken_as_one() {
        let mut queue = BoundedQueue::new(0, QueuePolicy::DiscardNewest);
        assert_eq!(queue.capacity(), 1);
        assert_eq!(queue.push(1), Push::Queued);
        assert_eq!(queue.push(2), Push::DroppedNewest(2));
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn queue_discard_newest_refuses_what_arrives_when_full() {
        let mut queue = BoundedQueue::new(2, QueuePolicy::DiscardNewest);
        assert!(queue.push(1).is_queued());
        assert!(queue.push(2).is_queued());
        assert!(queue.is_full());
        assert_eq!(queue.push(3), Push::DroppedNewest(3));
        assert_eq!(queue.iter().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(queue.dropped(), 1);
        assert_eq!(queue.policy(), QueuePolicy::DiscardNewest);
    }

    #[test]
    fn queue_discard_oldest_evicts_the_front_when_full() {
        let mut queue = BoundedQueue::new(2, QueuePolicy::DiscardOldest);
        let _ = (queue.push(1), queue.push(2));
        assert_eq!(queue.push(3), Push::DroppedOldest(1));
        assert_eq!(queue.front(), Some(&2));
        assert_eq!(queue.pop(), Some(2));
        assert_eq!(queue.pop(), Some(3));
        assert_eq!(queue.pop(), None);
        assert_eq!(queue.dropped(), 1);
    }

    #[test]
    fn queue_push_front_when_full_drops_by_age() {
        let mut newest_goes = BoundedQueue::new(2, QueuePolicy::DiscardNewest);
        let _ = (newest_goes.push(2), newest_goes.push(3));
        assert_eq!(newest_goes.push_front(1), Push::DroppedNewest(3));
        assert_eq!(newest_goes.drain().collect::<Vec<_>>(), [1, 2]);

        let mut oldest_goes = BoundedQueue::new(2, QueuePolicy::DiscardOldest);
        let _ = (oldest_goes.push(2), oldest_goes.push(3));
        assert_eq!(oldest_goes.push_front(1), Push::DroppedOldest(1));
        assert_eq!(oldest_goes.drain().collect::<Vec<_>>(), [2, 3]);
        assert_eq!((newest_goes.dropped(), oldest_goes.dropped()), (1, 1));
    }

    #[test]
    fn queue_drain_does_not_count_as_dropping() {
        let mut queue = BoundedQueue::new(3, QueuePolicy::DiscardOldest);
        let _ = (queue.push('a'), queue.push('b'));
        assert_eq!(queue.drain().count(), 2);
        assert!(queue.is_empty());
        assert_eq!(queue.dropped(), 0);
        assert_eq!(queue.push('a').into_dropped(), None);
    }

    #[test]
    fn queue_reserves_memory_only_as_items_arrive() {
        let queue: BoundedQueue<u64> = BoundedQueue::new(10_000_000, QueuePolicy::DiscardNewest);
        assert_eq!(queue.items.capacity(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(u32),
        PushFront(u32),
        Pop,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u32>().prop_map(Op::Push),
            1 => any::<u32>().prop_map(Op::PushFront),
            3 => Just(Op::Pop),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = QueuePolicy> {
        prop_oneof![
            Just(QueuePolicy::DiscardNewest),
            Just(QueuePolicy::DiscardOldest)
        ]
    }

    proptest! {
        #[test]
        fn queue_behaves_like_a_vec_model(
            capacity in 0..6usize,
            policy in arb_policy(),
            ops in prop::collection::vec(arb_op(), 0..200),
        ) {
            let bound = capacity.max(1);
            let mut queue = BoundedQueue::new(capacity, policy);
            let mut model: Vec<u32> = Vec::new();
            let mut model_dropped = 0u64;
            for op in ops {
                match op {
                    Op::Push(item) => {
                        let expected = if model.len() < bound {
                            model.push(item);
                            Push::Queued
                        } else if policy == QueuePolicy::DiscardNewest {
                            Push::DroppedNewest(item)
                        } else {
                            let oldest = model.remove(0);
                            model.push(item);
                            Push::DroppedOldest(oldest)
                        };
                        model_dropped += u64::from(!expected.is_queued());
                        prop_assert_eq!(queue.push(item), expected);
                    }
                    Op::PushFront(item) => {
                        let expected = if model.len() < bound {
                            model.insert(0, item);
                            Push::Queued
                        } else if policy == QueuePolicy::DiscardOldest {
                            Push::DroppedOldest(item)
                        } else {
                            let newest = model.pop().unwrap();
                            model.insert(0, item);
                            Push::DroppedNewest(newest)
                        };
                        model_dropped += u64::from(!expected.is_queued());
                        prop_assert_eq!(queue.push_front(item), expected);
                    }
                    Op::Pop => {
                        let expected = (!model.is_empty()).then(|| model.remove(0));
                        prop_assert_eq!(queue.pop(), expected);
                    }
                }
                prop_assert!(queue.len() <= bound);
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(queue.front(), model.first());
                prop_assert_eq!(queue.is_full(), model.len() == bound);
                prop_assert_eq!(queue.dropped(), model_dropped);
            }
            prop_assert_eq!(queue.iter().copied().collect::<Vec<_>>(), model);
        }
    }
}
