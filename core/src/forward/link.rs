//! One outbound link per peer: a bounded queue, a capped window of
//! sent-but-unacknowledged batches, and retries with exponential backoff.
//!
//! A link knows nothing of HTTP or streams. The node asks it for the next
//! batch, sends that batch however the peer is reached, and reports back:
//! [`Link::ack_through`] when the peer acknowledged, [`Link::failed`] when a
//! request failed, [`Link::rewind`] when a stream broke. Every message a link
//! gives up on comes back as a [`Dropped`] with a [`DropReason`], so the node
//! can count it and tell the host: nothing is lost silently.
//!
//! Order: a link sends in the order items were pushed, and a failure puts
//! the failed items back in front of everything sent after them, so retries
//! keep that order. The receiver sees publish order as long as a failure
//! takes every later batch with it, which holds for stop-and-wait links
//! (`max_batches_in_flight == 1`, HTTP) and for streams (a broken stream
//! fails everything unacknowledged through [`Link::rewind`]).
//!
//! Size: a batch is cut by count (`batch_size`) and by bytes
//! (`max_batch_bytes`, each item's [`Carried::wire_len`] plus one separator
//! between items), so that it fits the receiver's body limit. An item that
//! could never fit is refused at [`Link::push`]; a receiver that still
//! answers "too large" ([`Link::too_large`]) makes the link cut smaller
//! batches, down to one item, and an item refused on its own is dropped:
//! whatever can still go goes.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::queue::{BoundedQueue, Push, QueuePolicy};
use crate::time::Instant;

/// What a link needs to know about what it carries.
pub trait Carried {
    /// The MQTT QoS of the message: 0, 1 or 2. Anything above 0 is retried
    /// until acknowledged or expired; 0 is sent once.
    fn qos(&self) -> u8;

    /// The bytes the item takes in a batch (separators between items not
    /// counted): what [`LinkSettings::max_batch_bytes`] is measured in.
    fn wire_len(&self) -> usize;
}

/// Why a link gave up on a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// The link's queue was full and its policy dropped this message.
    QueueFull,
    /// The message waited or was retried longer than the expiry.
    Expired,
    /// A QoS 0 message was in a batch that failed; QoS 0 is never retried.
    Qos0Lost,
    /// The link was closed (the peer died or left) with the message aboard.
    PeerGone,
    /// The message alone is larger than the receiver takes in one body.
    TooLarge,
    /// This node left the cluster or was refused by it with the message
    /// aboard, not yet confirmed by the next hop (it may have arrived).
    Abandoned,
    /// A worker's stream carried a message not addressed to it: not
    /// delivered here, and the core that sent it took it as done.
    Misaddressed,
    /// A copy arrived more than the deduplication window below the newest
    /// one delivered from its origin, or from an older incarnation of its
    /// origin than one already delivered: it cannot be told from a
    /// duplicate, so it is not delivered. Either a late copy of a message
    /// delivered before, or a message lost to this node.
    TooLate,
}

/// A message a link gave up on, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped<T> {
    /// The message, handed back so the node can report or release it.
    pub item: T,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// Settings of a link (all from the node's configuration).
///
/// Zero is never meant for a count: `queue_length`, `max_in_flight`,
/// `batch_size` and `max_batches_in_flight` are taken as at least 1, since a
/// link with any of them at 0 could never send anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// The most messages waiting to be sent (`queueLength`).
    pub queue_length: usize,
    /// What a full queue drops (`queuePolicy`).
    pub policy: QueuePolicy,
    /// The most messages sent and unacknowledged or awaiting a retry
    /// (`maxInFlight`); beyond it messages wait in the queue.
    pub max_in_flight: usize,
    /// The most messages in one batch (`batchSize`).
    pub batch_size: usize,
    /// The most bytes of items in one batch: the sum of their
    /// [`Carried::wire_len`] plus one separator byte between two items
    /// (from `maxBodySize`, less the batch's envelope). An item larger than
    /// this on its own is refused by [`Link::push`].
    pub max_batch_bytes: usize,
    /// The first wait before a retry (`retryBackoff`).
    pub retry_backoff: Duration,
    /// The longest wait before a retry (`retryBackoffMax`).
    pub retry_backoff_max: Duration,
    /// How long a message may wait or be retried, counted from its push
    /// (`messageExpiry`).
    pub expiry: Duration,
    /// The most batches sent and unacknowledged at once: 1 for HTTP links
    /// (stop-and-wait), large for stream links, where acks arrive later.
    pub max_batches_in_flight: usize,
}

/// A batch's number on its link: starts at 1 and grows by one per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// Counters of a link, for `status()` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Messages put into batches, retries included.
    pub sent: u64,
    /// Messages acknowledged by the peer.
    pub acked: u64,
    /// Messages sent again after a failure (also counted in `sent`).
    pub retries: u64,
    /// Messages given up on, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Messages waiting in the queue now.
    pub queued: usize,
    /// Messages sent and unacknowledged, or awaiting a retry, now.
    pub in_flight: usize,
}

/// A message with the instant it was pushed, from which its expiry runs.
#[derive(Clone, Debug)]
struct Entry<T> {
    item: T,
    queued_at: Instant,
    /// The item's [`Carried::wire_len`], taken once at push.
    size: usize,
}

/// The items of one batch in flight, borrowed from the link
/// ([`Link::batch_items`]).
#[derive(Clone, Debug)]
pub struct BatchItems<'a, T> {
    entries: std::slice::Iter<'a, Entry<T>>,
}

impl<'a, T> Iterator for BatchItems<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        self.entries.next().map(|e| &e.item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<T> ExactSizeIterator for BatchItems<'_, T> {}

#[derive(Clone, Debug)]
struct Batch<T> {
    id: BatchId,
    entries: Vec<Entry<T>>,
}

/// The outbound side of one peer: queue, batches in flight, retries.
///
/// Messages wait in order in three places, oldest first: batches in flight,
/// then messages awaiting a retry, then the bounded queue. At most
/// `max_in_flight` messages are in the first two together, and at most
/// `queue_length` in the queue, so a slow or dead peer costs bounded memory.
///
/// The link reads no clock: every method that depends on time takes `now`,
/// and an earlier `now` than one seen before counts as the latest seen.
/// [`next_deadline`](Self::next_deadline) says when time alone will give it
/// something to do; call [`expire`](Self::expire) before
/// [`next_batch`](Self::next_batch) so that expired messages are not sent.
///
/// ```
/// use std::time::Duration;
/// use mqtt_cluster_core::forward::link::{Carried, Link, LinkSettings};
/// use mqtt_cluster_core::queue::QueuePolicy;
/// use mqtt_cluster_core::Instant;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Msg(&'static str, u8);
/// impl Carried for Msg {
///     fn qos(&self) -> u8 {
///         self.1
///     }
///     fn wire_len(&self) -> usize {
///         self.0.len()
///     }
/// }
///
/// let mut link = Link::new(LinkSettings {
///     queue_length: 100,
///     policy: QueuePolicy::DiscardNewest,
///     max_in_flight: 10,
///     batch_size: 10,
///     max_batch_bytes: 1024,
///     retry_backoff: Duration::from_millis(200),
///     retry_backoff_max: Duration::from_secs(5),
///     expiry: Duration::from_secs(60),
///     max_batches_in_flight: 1,
/// });
/// let now = Instant::ZERO;
/// assert!(link.push(now, Msg("a", 1)).is_none());
/// assert!(link.push(now, Msg("b", 0)).is_none());
///
/// let (id, batch) = link.next_batch(now).unwrap();
/// assert_eq!(batch, [Msg("a", 1), Msg("b", 0)]);
/// assert_eq!(link.in_flight(), 2);
/// // Stop-and-wait: nothing more goes until this batch is settled.
/// assert!(link.next_batch(now).is_none());
///
/// assert_eq!(link.ack_through(id), 2);
/// assert!(link.is_idle());
/// assert_eq!(link.stats().acked, 2);
/// ```
#[derive(Clone, Debug)]
pub struct Link<T> {
    settings: LinkSettings,
    queue: BoundedQueue<Entry<T>>,
    /// Failed QoS ≥ 1 messages, in push order; they go before the queue.
    retry: VecDeque<Entry<T>>,
    /// Sent and unacknowledged, by increasing id.
    batches: VecDeque<Batch<T>>,
    /// Messages in `batches`, kept so `in_flight` needs no walk.
    sent_unacked: usize,
    next_id: u64,
    /// The wait the next failure will impose.
    backoff: Duration,
    /// Nothing is sent before this instant (set by a failure).
    retry_at: Option<Instant>,
    /// The byte budget batches are cut to now: `max_batch_bytes`, or less
    /// after the peer refused a batch as too large.
    batch_bytes: usize,
    latest: Instant,
    sent: u64,
    acked: u64,
    retries: u64,
    dropped: BTreeMap<DropReason, u64>,
}

impl<T: Carried + Clone> Link<T> {
    /// An empty link.
    pub fn new(settings: LinkSettings) -> Self {
        let settings = LinkSettings {
            queue_length: settings.queue_length.max(1),
            max_in_flight: settings.max_in_flight.max(1),
            batch_size: settings.batch_size.max(1),
            max_batches_in_flight: settings.max_batches_in_flight.max(1),
            ..settings
        };
        Link {
            queue: BoundedQueue::new(settings.queue_length, settings.policy),
            retry: VecDeque::new(),
            batches: VecDeque::new(),
            sent_unacked: 0,
            next_id: 1,
            backoff: settings.retry_backoff,
            retry_at: None,
            batch_bytes: settings.max_batch_bytes,
            latest: Instant::ZERO,
            sent: 0,
            acked: 0,
            retries: 0,
            dropped: BTreeMap::new(),
            settings,
        }
    }

    /// QoS 0 messages in the bounded queue: the only ones `queue_length`
    /// bounds (QoS 1 and 2 messages may take the queue over it, bounded by
    /// their origins' confirmation windows). Walks the queue.
    pub fn queued_at_most_once(&self) -> usize {
        self.queue.iter().filter(|e| e.item.qos() == 0).count()
    }

    /// When the oldest message the link holds (in flight, awaiting a
    /// retry, or queued) was pushed.
    pub fn oldest_pushed_at(&self) -> Option<Instant> {
        let in_flight = self
            .batches
            .front()
            .and_then(|b| b.entries.first())
            .map(|e| e.queued_at);
        let retry = self.retry.front().map(|e| e.queued_at);
        let queued = self.queue.front().map(|e| e.queued_at);
        in_flight.into_iter().chain(retry).chain(queued).min()
    }

    /// The settings in force (counts of 0 raised to 1).
    pub fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    /// Queues an item; returns what the policy dropped, if anything: the
    /// item itself under [`QueuePolicy::DiscardNewest`], the oldest queued
    /// one under [`QueuePolicy::DiscardOldest`]. An item larger than
    /// `max_batch_bytes` on its own never goes on the link: it comes back
    /// at once as [`DropReason::TooLarge`].
    pub fn push(&mut self, now: Instant, item: T) -> Option<Dropped<T>> {
        let now = self.observe(now);
        let size = item.wire_len();
        if size > self.settings.max_batch_bytes {
            let n = self.dropped.entry(DropReason::TooLarge).or_insert(0);
            *n = n.saturating_add(1);
            return Some(Dropped {
                item,
                reason: DropReason::TooLarge,
            });
        }
        if self.queue.is_full() {
            return self.push_when_full(Entry {
                item,
                queued_at: now,
                size,
            });
        }
        // Built in the call, so that the item moves once, straight into
        // the queue: messages are large and this is every message's path.
        match self.queue.push(Entry {
            item,
            queued_at: now,
            size,
        }) {
            Push::Queued => None,
            Push::DroppedNewest(entry) | Push::DroppedOldest(entry) => {
                Some(self.drop_entry(entry, DropReason::QueueFull))
            }
        }
    }

    /// The policy applies to QoS 0 only: a QoS 1 or 2 message is never
    /// dropped for a full queue, since its origin keeps it until confirmed
    /// and sends nothing beyond its confirmation window, which bounds what
    /// a queue holds of them. It takes the place of a QoS 0 message if the
    /// queue has one (the newest or the oldest, as the policy says), or
    /// goes over the bound.
    fn push_when_full(&mut self, entry: Entry<T>) -> Option<Dropped<T>> {
        let oldest = self.settings.policy == QueuePolicy::DiscardOldest;
        let evicted = if entry.item.qos() == 0 {
            if !oldest {
                return Some(self.drop_entry(entry, DropReason::QueueFull));
            }
            match self.queue.remove_where(true, |e| e.item.qos() == 0) {
                Some(evicted) => evicted,
                None => return Some(self.drop_entry(entry, DropReason::QueueFull)),
            }
        } else {
            match self.queue.remove_where(oldest, |e| e.item.qos() == 0) {
                Some(evicted) => evicted,
                None => {
                    self.queue.push_over(entry);
                    return None;
                }
            }
        };
        self.queue.push_over(entry);
        Some(self.drop_entry(evicted, DropReason::QueueFull))
    }

    /// The next batch to send, if one may go now.
    ///
    /// Nothing goes while a retry wait runs, while `max_batches_in_flight`
    /// batches are unacknowledged, or when there is nothing to send. Items
    /// awaiting a retry go first, then queued items as long as fewer than
    /// `max_in_flight` messages are in flight; at most `batch_size` in all,
    /// and no more bytes than the budget (`max_batch_bytes`, or less after a
    /// [`too_large`](Self::too_large)), though always at least one item.
    pub fn next_batch(&mut self, now: Instant) -> Option<(BatchId, Vec<T>)> {
        let id = self.next_batch_in_place(now)?;
        let items = self.batch_items(id)?.cloned().collect();
        Some((id, items))
    }

    /// Like [`next_batch`](Self::next_batch), but leaves the batch's items
    /// where the link keeps them for a retry and returns only its id: read
    /// them with [`batch_items`](Self::batch_items) to send them. This
    /// spares a copy of every message when the sender only serialises them.
    pub fn next_batch_in_place(&mut self, now: Instant) -> Option<BatchId> {
        let now = self.observe(now);
        if let Some(at) = self.retry_at {
            if now < at {
                return None;
            }
            self.retry_at = None;
        }
        if self.batches.len() >= self.settings.max_batches_in_flight {
            return None;
        }
        let waiting = self.retry.len().saturating_add(self.queue.len());
        let mut entries = Vec::with_capacity(waiting.min(self.settings.batch_size));
        // Bytes the batch takes so far, separators included.
        let mut bytes = 0usize;
        let budget = self.batch_bytes;
        let fits = |entries: &Vec<Entry<T>>, bytes: usize, next: &Entry<T>| {
            entries.is_empty() || bytes.saturating_add(1).saturating_add(next.size) <= budget
        };
        // Each entry taken is counted as sent-unacked at once, so that
        // `in_flight()` stays exact while the batch is being filled.
        while entries.len() < self.settings.batch_size {
            if !self.retry.front().is_some_and(|e| fits(&entries, bytes, e)) {
                break;
            }
            let Some(entry) = self.retry.pop_front() else {
                break;
            };
            bytes = grown(bytes, &entries, entry.size);
            self.sent_unacked = self.sent_unacked.saturating_add(1);
            entries.push(entry);
        }
        let resent = entries.len();
        // Queued items go only behind every retry, to keep the order.
        while self.retry.is_empty()
            && entries.len() < self.settings.batch_size
            && self.in_flight() < self.settings.max_in_flight
        {
            if !self.queue.front().is_some_and(|e| fits(&entries, bytes, e)) {
                break;
            }
            let Some(entry) = self.queue.pop() else {
                break;
            };
            bytes = grown(bytes, &entries, entry.size);
            self.sent_unacked = self.sent_unacked.saturating_add(1);
            entries.push(entry);
        }
        if entries.is_empty() {
            return None;
        }
        self.retries = self.retries.saturating_add(count(resent));
        self.sent = self.sent.saturating_add(count(entries.len()));
        let id = BatchId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        self.batches.push_back(Batch { id, entries });
        Some(id)
    }

    /// The items of batch `id`, in order, while it is in flight; `None` once
    /// it was acknowledged or failed (or was never sent).
    pub fn batch_items(&self, id: BatchId) -> Option<BatchItems<'_, T>> {
        // Batches are kept by increasing id; a stream link may hold many.
        let index = self.batches.binary_search_by_key(&id, |b| b.id).ok()?;
        let batch = self.batches.get(index)?;
        Some(BatchItems {
            entries: batch.entries.iter(),
        })
    }

    /// Cumulative ack: every batch with id `<= through` is done. Returns how
    /// many messages were acked. Expired messages acked late still count as
    /// acked: the peer has them. An ack resets the retry backoff.
    pub fn ack_through(&mut self, through: BatchId) -> usize {
        self.ack_through_each(through, |_| {})
    }

    /// Like [`ack_through`](Self::ack_through), and shows each acknowledged
    /// item to `seen` first, in order.
    pub fn ack_through_each(&mut self, through: BatchId, mut seen: impl FnMut(&T)) -> usize {
        let mut acked = 0usize;
        while self.batches.front().is_some_and(|b| b.id <= through) {
            if let Some(batch) = self.batches.pop_front() {
                acked = acked.saturating_add(batch.entries.len());
                batch.entries.iter().for_each(|e| seen(&e.item));
            }
        }
        if acked > 0 {
            self.sent_unacked = self.sent_unacked.saturating_sub(acked);
            self.acked = self.acked.saturating_add(count(acked));
            self.backoff = self.settings.retry_backoff;
        }
        acked
    }

    /// A batch failed (HTTP error or timeout). It and every later batch in
    /// flight, in order, give up their QoS 0 items ([`DropReason::Qos0Lost`])
    /// and expired ones ([`DropReason::Expired`]); the rest go back in front
    /// of everything queued, to be retried after the current backoff, which
    /// then doubles up to `retry_backoff_max`. The wait holds back the queue
    /// too, even if nothing is left to retry: the peer has just failed, and
    /// hammering it would not help.
    ///
    /// An id that is not in flight (unknown, already acked or already
    /// failed) changes nothing: a late report must not make a retry twice.
    pub fn failed(&mut self, now: Instant, batch: BatchId) -> Vec<Dropped<T>> {
        let now = self.observe(now);
        let Some(position) = self.batches.iter().position(|b| b.id == batch) else {
            return Vec::new();
        };
        let failed = self.batches.split_off(position);
        let drops = self.take_back(now, failed);
        let wait = self.backoff.min(self.settings.retry_backoff_max);
        self.retry_at = Some(now + wait);
        self.backoff = self
            .backoff
            .saturating_mul(2)
            .min(self.settings.retry_backoff_max);
        drops
    }

    /// The peer refused batch `batch` as too large for its body limit
    /// (`413`): it took none of it. A batch of one item drops that item
    /// ([`DropReason::TooLarge`]): it can never go. A larger batch halves the
    /// link's byte budget (to at most half of what that batch took) and goes
    /// back, every item of it, QoS 0 included since none was delivered, in
    /// front of everything else, to be sent again at once in smaller
    /// batches. Repeated refusals thus end, within a few rounds, in batches of
    /// one item, and nothing behind a message that cannot go waits for it.
    ///
    /// Later batches in flight, if any, are taken back as by
    /// [`failed`](Self::failed), without a wait. An id not in flight changes
    /// nothing.
    pub fn too_large(&mut self, now: Instant, batch: BatchId) -> Vec<Dropped<T>> {
        let now = self.observe(now);
        let Some(position) = self.batches.iter().position(|b| b.id == batch) else {
            return Vec::new();
        };
        let mut failed = self.batches.split_off(position);
        let Some(refused) = failed.pop_front() else {
            return Vec::new();
        };
        let mut drops = self.take_back(now, failed);
        self.sent_unacked = self.sent_unacked.saturating_sub(refused.entries.len());
        if let [_] = refused.entries.as_slice() {
            for entry in refused.entries {
                drops.push(self.drop_entry(entry, DropReason::TooLarge));
            }
        } else {
            let took = refused.entries.iter().fold(0usize, |sum, e| {
                sum.saturating_add(e.size).saturating_add(1)
            });
            self.batch_bytes = self.batch_bytes.min(took / 2);
            for entry in refused.entries.into_iter().rev() {
                self.retry.push_front(entry);
            }
        }
        drops
    }

    /// The byte budget batches are cut to now: `max_batch_bytes`, or less
    /// once the peer refused a batch as too large.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// The stream carrying this link broke: every unacknowledged batch fails
    /// as in [`failed`](Self::failed), but with no wait, since a new stream
    /// is opened right away and nothing was wrong with the messages.
    pub fn rewind(&mut self, now: Instant) -> Vec<Dropped<T>> {
        let now = self.observe(now);
        let failed = std::mem::take(&mut self.batches);
        let drops = self.take_back(now, failed);
        self.retry_at = None;
        drops
    }

    /// Drops queued or awaiting-retry items pushed `expiry` or longer ago,
    /// whatever their QoS. Items in flight are left alone: they are judged
    /// when their batch fails or is acked.
    pub fn expire(&mut self, now: Instant) -> Vec<Dropped<T>> {
        let now = self.observe(now);
        let mut drops = Vec::new();
        // Both lists are in push order and the clock never goes backwards,
        // so the expired items are a prefix of each.
        while self.retry.front().is_some_and(|e| self.is_expired(e, now)) {
            if let Some(entry) = self.retry.pop_front() {
                drops.push(self.drop_entry(entry, DropReason::Expired));
            }
        }
        while self.queue.front().is_some_and(|e| self.is_expired(e, now)) {
            if let Some(entry) = self.queue.pop() {
                drops.push(self.drop_entry(entry, DropReason::Expired));
            }
        }
        drops
    }

    /// Everything left, oldest first, as drops with
    /// [`DropReason::PeerGone`]; the link is then empty, with no retry wait
    /// and its backoff reset.
    pub fn close(&mut self) -> Vec<Dropped<T>> {
        self.close_for(DropReason::PeerGone)
    }

    /// Counts a message of this link's peer dropped elsewhere (no path
    /// reached the peer), so that the link's counters tell every drop.
    pub fn count_dropped(&mut self, reason: DropReason) {
        let n = self.dropped.entry(reason).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Everything left, oldest first, handed back to be sent another way
    /// (counted as neither sent nor dropped here); the link is then empty
    /// as after [`close`](Self::close).
    pub fn hand_over(&mut self) -> Vec<T> {
        let mut entries: Vec<Entry<T>> =
            Vec::with_capacity(self.queued().saturating_add(self.in_flight()));
        for batch in std::mem::take(&mut self.batches) {
            entries.extend(batch.entries);
        }
        entries.extend(std::mem::take(&mut self.retry));
        entries.extend(self.queue.drain());
        self.sent_unacked = 0;
        self.retry_at = None;
        self.backoff = self.settings.retry_backoff;
        entries.into_iter().map(|entry| entry.item).collect()
    }

    /// Like [`close`](Self::close), with another reason for the drops.
    pub fn close_for(&mut self, reason: DropReason) -> Vec<Dropped<T>> {
        let items = self.hand_over();
        items
            .into_iter()
            .map(|item| {
                let n = self.dropped.entry(reason).or_insert(0);
                *n = n.saturating_add(1);
                Dropped { item, reason }
            })
            .collect()
    }

    /// The earliest instant at which [`next_batch`](Self::next_batch) or
    /// [`expire`](Self::expire) would do something new because of time:
    /// the end of a retry wait (if anything waits to be sent) or the expiry
    /// of the oldest waiting item. `None` if time alone changes nothing.
    pub fn next_deadline(&self) -> Option<Instant> {
        let pending = !self.retry.is_empty() || !self.queue.is_empty();
        let retry = self.retry_at.filter(|_| pending);
        let expiry = self
            .retry
            .front()
            .into_iter()
            .chain(self.queue.front())
            .map(|e| e.queued_at + self.settings.expiry)
            .min();
        retry.into_iter().chain(expiry).min()
    }

    /// Messages waiting in the bounded queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Messages sent and unacknowledged, plus those awaiting a retry.
    pub fn in_flight(&self) -> usize {
        self.sent_unacked.saturating_add(self.retry.len())
    }

    /// Whether messages wait to be sent (queued or awaiting a retry): only
    /// then can [`expire`](Self::expire) or [`next_batch`](Self::next_batch)
    /// find anything to do.
    pub fn has_waiting(&self) -> bool {
        !self.queue.is_empty() || !self.retry.is_empty()
    }

    /// Whether the link sends nothing more until an acknowledgement: its
    /// window of messages or of batches in flight is full.
    pub fn is_window_full(&self) -> bool {
        self.in_flight() >= self.settings.max_in_flight
            || self.batches.len() >= self.settings.max_batches_in_flight
    }

    /// Whether a failed batch waits out its backoff at `now`.
    pub fn waits_for_retry(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

    /// Whether nothing is queued and nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight() == 0
    }

    /// The link's counters and depths.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            sent: self.sent,
            acked: self.acked,
            retries: self.retries,
            dropped: self.dropped.clone(),
            queued: self.queued(),
            in_flight: self.in_flight(),
        }
    }

    fn observe(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn is_expired(&self, entry: &Entry<T>, now: Instant) -> bool {
        now >= entry.queued_at + self.settings.expiry
    }

    fn drop_entry(&mut self, entry: Entry<T>, reason: DropReason) -> Dropped<T> {
        let n = self.dropped.entry(reason).or_insert(0);
        *n = n.saturating_add(1);
        Dropped {
            item: entry.item,
            reason,
        }
    }

    /// Takes failed batches out of flight: QoS 0 and expired items are
    /// dropped, the rest go in front of the retry list, which holds only
    /// items sent after them.
    fn take_back(&mut self, now: Instant, failed: VecDeque<Batch<T>>) -> Vec<Dropped<T>> {
        let mut drops = Vec::new();
        let mut back = Vec::new();
        for batch in failed {
            self.sent_unacked = self.sent_unacked.saturating_sub(batch.entries.len());
            for entry in batch.entries {
                if entry.item.qos() == 0 {
                    drops.push(self.drop_entry(entry, DropReason::Qos0Lost));
                } else if self.is_expired(&entry, now) {
                    drops.push(self.drop_entry(entry, DropReason::Expired));
                } else {
                    back.push(entry);
                }
            }
        }
        for entry in back.into_iter().rev() {
            self.retry.push_front(entry);
        }
        drops
    }
}

/// Bytes of a batch after adding an item of `size` to `entries`.
fn grown<T>(bytes: usize, entries: &[Entry<T>], size: usize) -> usize {
    let separator = usize::from(!entries.is_empty());
    bytes.saturating_add(separator).saturating_add(size)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Msg {
        id: u64,
        qos: u8,
    }

    impl Carried for Msg {
        fn qos(&self) -> u8 {
            self.qos
        }
        fn wire_len(&self) -> usize {
            size_of(self.id)
        }
    }

    /// Items' sizes vary with their id, from 1 to 7 bytes.
    fn size_of(id: u64) -> usize {
        (id % 7 + 1) as usize
    }

    fn msg(id: u64, qos: u8) -> Msg {
        Msg { id, qos }
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn settings() -> LinkSettings {
        LinkSettings {
            queue_length: 100,
            policy: QueuePolicy::DiscardNewest,
            max_in_flight: 100,
            batch_size: 10,
            max_batch_bytes: 1_000,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            expiry: Duration::from_millis(10_000),
            max_batches_in_flight: 1,
        }
    }

    fn ids(items: &[Msg]) -> Vec<u64> {
        items.iter().map(|m| m.id).collect()
    }

    fn dropped_ids(drops: &[Dropped<Msg>], reason: DropReason) -> Vec<u64> {
        drops
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.item.id)
            .collect()
    }

    fn push_all(link: &mut Link<Msg>, now: Instant, items: &[(u64, u8)]) {
        for &(id, qos) in items {
            assert!(link.push(now, msg(id, qos)).is_none());
        }
    }

    #[test]
    fn link_batch_in_place_lends_its_items_while_in_flight() {
        let mut link = Link::new(LinkSettings {
            batch_size: 2,
            max_batches_in_flight: 10,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 0), (3, 1)]);
        let first = link.next_batch_in_place(ms(0)).unwrap();
        let second = link.next_batch_in_place(ms(0)).unwrap();
        let items = |link: &Link<Msg>, id| {
            link.batch_items(id)
                .map(|items| items.map(|m| m.id).collect::<Vec<_>>())
        };
        assert_eq!(items(&link, first), Some(vec![1, 2]));
        assert_eq!(items(&link, second), Some(vec![3]));
        assert_eq!(link.in_flight(), 3);
        link.ack_through(first);
        assert_eq!(items(&link, first), None, "acknowledged");
        assert_eq!(items(&link, second), Some(vec![3]));
        assert_eq!(items(&link, BatchId(99)), None, "never sent");
    }

    #[test]
    fn link_batch_ids_start_at_one_and_grow() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 1)]);
        let (first, _) = link.next_batch(ms(0)).unwrap();
        assert_eq!(first, BatchId(1));
        link.ack_through(first);
        push_all(&mut link, ms(0), &[(2, 1)]);
        assert_eq!(link.next_batch(ms(0)).unwrap().0, BatchId(2));
    }

    #[test]
    fn link_qos0_is_dropped_when_its_batch_fails() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 0), (2, 1), (3, 0)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        let drops = link.failed(ms(5), id);
        assert_eq!(dropped_ids(&drops, DropReason::Qos0Lost), [1, 3]);
        assert_eq!(drops.len(), 2);
        assert_eq!(link.in_flight(), 1);
        let (_, again) = link.next_batch(ms(105)).unwrap();
        assert_eq!(ids(&again), [2], "QoS 0 is never sent twice");
        assert_eq!(link.stats().dropped.get(&DropReason::Qos0Lost), Some(&2));
    }

    #[test]
    fn link_qos1_is_retried_in_order_before_the_queue() {
        let mut link = Link::new(LinkSettings {
            batch_size: 3,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 2), (3, 1)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        push_all(&mut link, ms(1), &[(4, 1), (5, 1)]);
        assert!(link.failed(ms(1), id).is_empty());
        let (_, retried) = link.next_batch(ms(101)).unwrap();
        assert_eq!(ids(&retried), [1, 2, 3]);
        assert_eq!(link.stats().retries, 3);
        assert_eq!(link.stats().sent, 6);
    }

    #[test]
    fn link_retry_and_queue_share_a_batch_in_order() {
        let mut link = Link::new(LinkSettings {
            batch_size: 4,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 1)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        push_all(&mut link, ms(0), &[(3, 1), (4, 1), (5, 1)]);
        let _ = link.failed(ms(0), id);
        let (_, batch) = link.next_batch(ms(100)).unwrap();
        assert_eq!(ids(&batch), [1, 2, 3, 4]);
    }

    #[test]
    fn link_backoff_doubles_up_to_the_max_and_resets_on_ack() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 1)]);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let (id, _) = link.next_batch(ms(now)).unwrap();
            let _ = link.failed(ms(now), id);
            let deadline = link.next_deadline().unwrap();
            waits.push(deadline.as_millis() - now);
            assert!(
                link.next_batch(ms(deadline.as_millis() - 1)).is_none(),
                "too early"
            );
            now = deadline.as_millis();
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);

        let (id, _) = link.next_batch(ms(now)).unwrap();
        assert_eq!(link.ack_through(id), 1);
        push_all(&mut link, ms(now), &[(2, 1)]);
        let (id, _) = link.next_batch(ms(now)).unwrap();
        let _ = link.failed(ms(now), id);
        assert_eq!(
            link.next_deadline(),
            Some(ms(now + 100)),
            "reset by the ack"
        );
    }

    #[test]
    fn link_retry_wait_holds_the_queue_too() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 0)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        let _ = link.failed(ms(0), id);
        push_all(&mut link, ms(0), &[(2, 1)]);
        assert!(link.next_batch(ms(50)).is_none());
        assert_eq!(link.next_deadline(), Some(ms(100)));
        assert_eq!(ids(&link.next_batch(ms(100)).unwrap().1), [2]);
    }

    #[test]
    fn link_expire_drops_waiting_items_but_not_those_in_flight() {
        let mut link = Link::new(LinkSettings {
            batch_size: 1,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 0)]);
        push_all(&mut link, ms(5_000), &[(3, 1)]);
        let (id, _) = link.next_batch(ms(5_000)).unwrap();
        assert_eq!(
            link.next_deadline(),
            Some(ms(10_000)),
            "item 2 expires first"
        );
        assert!(link.expire(ms(9_999)).is_empty());
        let drops = link.expire(ms(10_000));
        assert_eq!(dropped_ids(&drops, DropReason::Expired), [2]);
        assert_eq!(link.in_flight(), 1, "item 1 is in flight, judged later");
        assert_eq!(link.next_deadline(), Some(ms(15_000)));

        // Acked after its expiry: the peer has it, so it counts as acked.
        assert_eq!(link.ack_through(id), 1);
        assert_eq!(link.stats().acked, 1);
        assert_eq!(link.stats().dropped.get(&DropReason::Expired), Some(&1));
    }

    #[test]
    fn link_expired_item_in_a_failed_batch_is_dropped_not_retried() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 1)]);
        push_all(&mut link, ms(3_000), &[(2, 1)]);
        let (id, _) = link.next_batch(ms(3_000)).unwrap();
        let drops = link.failed(ms(10_000), id);
        assert_eq!(dropped_ids(&drops, DropReason::Expired), [1]);
        assert_eq!(drops.len(), 1);
        assert_eq!(ids(&link.next_batch(ms(10_100)).unwrap().1), [2]);
    }

    #[test]
    fn link_retried_items_expire_while_waiting() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 1)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        let _ = link.failed(ms(9_990), id);
        assert_eq!(link.next_deadline(), Some(ms(10_000)));
        let drops = link.expire(ms(10_000));
        assert_eq!(dropped_ids(&drops, DropReason::Expired), [1]);
        assert!(link.is_idle());
        assert_eq!(link.next_deadline(), None);
    }

    #[test]
    fn link_in_flight_cap_holds_messages_in_the_queue() {
        let mut link = Link::new(LinkSettings {
            max_in_flight: 3,
            batch_size: 2,
            max_batches_in_flight: 10,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [1, 2]);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [3]);
        assert!(link.next_batch(ms(0)).is_none());
        assert_eq!((link.in_flight(), link.queued()), (3, 2));
        assert_eq!(link.ack_through(BatchId(1)), 2);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [4, 5]);
    }

    #[test]
    fn link_max_batches_in_flight_is_respected() {
        let mut link = Link::new(LinkSettings {
            batch_size: 1,
            max_batches_in_flight: 2,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 1), (3, 1)]);
        assert!(link.next_batch(ms(0)).is_some());
        assert!(link.next_batch(ms(0)).is_some());
        assert!(link.next_batch(ms(0)).is_none());
        link.ack_through(BatchId(1));
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [3]);
    }

    #[test]
    fn link_full_queue_drops_by_policy() {
        let newest = LinkSettings {
            queue_length: 2,
            ..settings()
        };
        let mut link = Link::new(newest.clone());
        push_all(&mut link, ms(0), &[(1, 0), (2, 0)]);
        assert_eq!(
            link.push(ms(0), msg(3, 0)),
            Some(Dropped {
                item: msg(3, 0),
                reason: DropReason::QueueFull
            })
        );

        let mut link = Link::new(LinkSettings {
            policy: QueuePolicy::DiscardOldest,
            ..newest
        });
        push_all(&mut link, ms(0), &[(1, 0), (2, 0)]);
        let dropped = link.push(ms(0), msg(3, 0)).unwrap();
        assert_eq!(
            (dropped.item.id, dropped.reason),
            (1, DropReason::QueueFull)
        );
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [2, 3]);
        assert_eq!(link.stats().dropped.get(&DropReason::QueueFull), Some(&1));
    }

    #[test]
    fn a_full_queue_never_drops_qos1_by_policy() {
        for policy in [QueuePolicy::DiscardNewest, QueuePolicy::DiscardOldest] {
            let mut link = Link::new(LinkSettings {
                queue_length: 2,
                policy,
                ..settings()
            });
            // A QoS 1 message takes the place of a QoS 0 one...
            push_all(&mut link, ms(0), &[(1, 0), (2, 1)]);
            let dropped = link.push(ms(0), msg(3, 1)).unwrap();
            assert_eq!(
                (dropped.item.id, dropped.reason),
                (1, DropReason::QueueFull)
            );
            // ...goes over the bound when there is none...
            assert_eq!(link.push(ms(0), msg(4, 1)), None);
            assert_eq!(link.queued(), 3);
            // ...and a QoS 0 message finds no QoS 0 one to replace.
            let dropped = link.push(ms(0), msg(5, 0)).unwrap();
            assert_eq!(dropped.item.id, 5);
            assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [2, 3, 4]);
        }
    }

    #[test]
    fn with_two_qos0_messages_queued_the_policy_picks_which_one_goes() {
        for (policy, gone) in [
            (QueuePolicy::DiscardNewest, 2),
            (QueuePolicy::DiscardOldest, 1),
        ] {
            let mut link = Link::new(LinkSettings {
                queue_length: 2,
                policy,
                ..settings()
            });
            push_all(&mut link, ms(0), &[(1, 0), (2, 0)]);
            let dropped = link.push(ms(0), msg(3, 1)).unwrap();
            assert_eq!(dropped.item.id, gone);
        }
    }

    #[test]
    fn link_ack_is_cumulative() {
        let mut link = Link::new(LinkSettings {
            batch_size: 2,
            max_batches_in_flight: 5,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        while link.next_batch(ms(0)).is_some() {}
        assert_eq!(link.ack_through(BatchId(2)), 4);
        assert_eq!(link.ack_through(BatchId(2)), 0, "acked twice counts once");
        assert_eq!(link.ack_through(BatchId(1)), 0);
        assert_eq!(link.in_flight(), 1);
        assert_eq!(link.ack_through(BatchId(u64::MAX)), 1);
        assert!(link.is_idle());
        assert_eq!(link.stats().acked, 5);
    }

    #[test]
    fn link_failure_of_unknown_or_acked_batch_changes_nothing() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(0), &[(1, 0)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        assert!(link.failed(ms(0), BatchId(99)).is_empty());
        link.ack_through(id);
        assert!(link.failed(ms(0), id).is_empty());
        push_all(&mut link, ms(0), &[(2, 1)]);
        assert!(link.next_batch(ms(0)).is_some(), "no retry wait was set");
        assert_eq!(link.stats().dropped, BTreeMap::new());
    }

    #[test]
    fn link_failure_takes_later_batches_with_it() {
        let mut link = Link::new(LinkSettings {
            batch_size: 1,
            max_batches_in_flight: 5,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 0), (3, 1), (4, 1)]);
        let (first, _) = link.next_batch(ms(0)).unwrap();
        let (second, _) = link.next_batch(ms(0)).unwrap();
        let (_, _) = link.next_batch(ms(0)).unwrap();
        let drops = link.failed(ms(0), second);
        assert_eq!(dropped_ids(&drops, DropReason::Qos0Lost), [2]);
        assert_eq!(link.in_flight(), 2, "batch 1 in flight, item 3 to retry");
        assert!(link.failed(ms(0), BatchId(3)).is_empty(), "already failed");
        assert_eq!(link.ack_through(first), 1);
        assert_eq!(ids(&link.next_batch(ms(100)).unwrap().1), [3]);
        assert_eq!(ids(&link.next_batch(ms(100)).unwrap().1), [4]);
    }

    #[test]
    fn link_rewind_fails_everything_without_waiting() {
        let mut link = Link::new(LinkSettings {
            batch_size: 2,
            max_batches_in_flight: 100,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 0), (3, 2), (4, 1), (5, 1)]);
        link.next_batch(ms(0)).unwrap();
        link.next_batch(ms(0)).unwrap();
        let drops = link.rewind(ms(0));
        assert_eq!(dropped_ids(&drops, DropReason::Qos0Lost), [2]);
        assert_eq!(drops.len(), 1);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [1, 3]);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [4, 5]);
        assert_eq!(link.stats().retries, 3);
    }

    #[test]
    fn link_rewind_cancels_a_retry_wait() {
        let mut link = Link::new(LinkSettings {
            max_batches_in_flight: 100,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1)]);
        let (id, _) = link.next_batch(ms(0)).unwrap();
        let _ = link.failed(ms(0), id);
        assert!(link.rewind(ms(1)).is_empty());
        assert_eq!(ids(&link.next_batch(ms(1)).unwrap().1), [1]);
    }

    #[test]
    fn link_close_returns_everything_oldest_first() {
        let mut link = Link::new(LinkSettings {
            batch_size: 1,
            max_batches_in_flight: 100,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 1), (3, 0), (4, 1)]);
        let (_, _) = link.next_batch(ms(0)).unwrap();
        let (second, _) = link.next_batch(ms(0)).unwrap();
        let _ = link.next_batch(ms(0)).unwrap();
        let _ = link.failed(ms(0), second);
        let drops = link.close();
        assert_eq!(dropped_ids(&drops, DropReason::PeerGone), [1, 2, 4]);
        assert_eq!(drops.len(), 3, "item 3 was dropped by the failure");
        assert!(link.is_idle());
        assert_eq!(link.next_deadline(), None);
        assert_eq!(link.stats().dropped.get(&DropReason::PeerGone), Some(&3));
        push_all(&mut link, ms(0), &[(5, 1)]);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [5], "no wait left");
    }

    #[test]
    fn link_clock_going_backwards_counts_as_the_latest_seen() {
        let mut link = Link::new(settings());
        push_all(&mut link, ms(1_000), &[(1, 1)]);
        let (id, _) = link.next_batch(ms(1_000)).unwrap();
        let _ = link.failed(ms(500), id);
        assert_eq!(link.next_deadline(), Some(ms(1_100)));
        assert!(link.next_batch(ms(0)).is_none());
        push_all(&mut link, ms(0), &[(2, 1)]);
        assert!(link.expire(ms(10_999)).is_empty());
        assert_eq!(link.expire(ms(11_000)).len(), 2);
    }

    #[test]
    fn link_cuts_batches_by_bytes_and_refuses_what_never_fits() {
        // Sizes are `id % 7 + 1`: items 1..=5 take 2..=6 bytes.
        let mut link = Link::new(LinkSettings {
            max_batch_bytes: 10,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        // 2 + 1 + 3 + 1 + 4 = 11 > 10: items 1 and 2 (6 bytes) only.
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [1, 2]);
        link.ack_through(id);
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [3, 4], "4 + 1 + 5 = 10 fits exactly");
        link.ack_through(id);
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [5]);

        let mut small = Link::new(LinkSettings {
            max_batch_bytes: 6,
            ..settings()
        });
        let dropped = small.push(ms(0), msg(6, 1)).unwrap();
        assert_eq!((dropped.item.id, dropped.reason), (6, DropReason::TooLarge));
        assert_eq!(small.stats().dropped.get(&DropReason::TooLarge), Some(&1));
        assert!(small.is_idle(), "it never went on the link");
    }

    #[test]
    fn link_too_large_answers_shrink_batches_until_one_item_is_dropped() {
        let mut link = Link::new(LinkSettings {
            max_batch_bytes: 1_000,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 1), (2, 0), (3, 1), (4, 0), (5, 1)]);
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [1, 2, 3, 4, 5]);
        // 2+3+4+5+6 bytes and 5 separators: 25; the budget halves to 12.
        assert!(link.too_large(ms(0), id).is_empty(), "none of it was lost");
        assert_eq!(link.batch_bytes(), 12);
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [1, 2, 3], "QoS 0 goes again too");
        assert!(link.too_large(ms(0), id).is_empty());
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [1, 2]);
        assert!(link.too_large(ms(0), id).is_empty());
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [1]);
        let drops = link.too_large(ms(0), id);
        assert_eq!(dropped_ids(&drops, DropReason::TooLarge), [1]);
        // Everything behind the refused item still goes, at once.
        let (id, batch) = link.next_batch(ms(0)).unwrap();
        assert_eq!(ids(&batch), [2]);
        link.ack_through(id);
        let rest: Vec<u64> = std::iter::from_fn(|| {
            let (id, batch) = link.next_batch(ms(0))?;
            link.ack_through(id);
            Some(ids(&batch))
        })
        .flatten()
        .collect();
        assert_eq!(rest, [3, 4, 5]);
        assert!(link.is_idle());
        assert_eq!(link.stats().acked, 4);
        // A late or unknown refusal changes nothing.
        assert!(link.too_large(ms(0), id).is_empty());
    }

    #[test]
    fn link_zero_counts_are_taken_as_one() {
        let mut link = Link::new(LinkSettings {
            queue_length: 0,
            max_in_flight: 0,
            batch_size: 0,
            max_batches_in_flight: 0,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 0)]);
        assert!(link.push(ms(0), msg(2, 0)).is_some());
        assert_eq!(ids(&link.next_batch(ms(0)).unwrap().1), [1]);
        assert_eq!(link.settings().queue_length, 1);
    }

    #[test]
    fn link_stats_serialise_with_snake_case_reasons() {
        let mut link = Link::new(LinkSettings {
            queue_length: 1,
            ..settings()
        });
        push_all(&mut link, ms(0), &[(1, 0)]);
        let _ = link.push(ms(0), msg(2, 0));
        let json = serde_json::to_value(link.stats()).unwrap();
        assert_eq!(json["dropped"]["queue_full"], 1);
        assert_eq!(json["queued"], 1);
    }

    // ---- Property tests against a model -------------------------------

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8),
        Next,
        Ack(u8),
        Fail(u8),
        Rewind,
        Expire,
        Advance(u16),
        TooLarge(u8),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3u8).prop_map(Op::Push),
            5 => Just(Op::Next),
            3 => any::<u8>().prop_map(Op::Ack),
            2 => any::<u8>().prop_map(Op::Fail),
            1 => Just(Op::Rewind),
            2 => Just(Op::Expire),
            3 => (0..400u16).prop_map(Op::Advance),
            1 => any::<u8>().prop_map(Op::TooLarge),
        ]
    }

    fn arb_settings() -> impl Strategy<Value = LinkSettings> {
        (
            1..6usize,
            prop_oneof![
                Just(QueuePolicy::DiscardNewest),
                Just(QueuePolicy::DiscardOldest)
            ],
            1..6usize,
            1..4usize,
            1..4usize,
            200..2_000u64,
            5..24usize,
        )
            .prop_map(
                |(queue_length, policy, max_in_flight, batch_size, max_batches, expiry, bytes)| {
                    LinkSettings {
                        queue_length,
                        policy,
                        max_in_flight,
                        batch_size,
                        max_batch_bytes: bytes,
                        retry_backoff: Duration::from_millis(50),
                        retry_backoff_max: Duration::from_millis(400),
                        expiry: Duration::from_millis(expiry),
                        max_batches_in_flight: max_batches,
                    }
                },
            )
    }

    /// What the test knows from the outside: which items are still the
    /// link's, which batches it handed out, and what became of each item.
    struct Model {
        settings: LinkSettings,
        now: u64,
        next_item: u64,
        /// Items pushed and neither acked nor dropped: id -> (qos, pushed at).
        held: BTreeMap<u64, (u8, u64)>,
        batches: BTreeMap<BatchId, Vec<Msg>>,
        last_batch: Option<BatchId>,
        done: BTreeSet<u64>,
        acked: Vec<u64>,
        sent_qos0: BTreeSet<u64>,
        drops: u64,
    }

    impl Model {
        fn new(settings: LinkSettings) -> Self {
            Model {
                settings,
                now: 0,
                next_item: 0,
                held: BTreeMap::new(),
                batches: BTreeMap::new(),
                last_batch: None,
                done: BTreeSet::new(),
                acked: Vec::new(),
                sent_qos0: BTreeSet::new(),
                drops: 0,
            }
        }

        fn in_model_batch(&self, id: u64) -> bool {
            self.batches.values().flatten().any(|m| m.id == id)
        }

        fn expired(&self, id: u64) -> bool {
            let pushed = self.held.get(&id).map_or(0, |&(_, at)| at);
            self.now >= pushed + self.settings.expiry.as_millis() as u64
        }

        fn finish(&mut self, id: u64) -> Result<(), TestCaseError> {
            prop_assert!(self.held.remove(&id).is_some(), "item {} not held", id);
            prop_assert!(self.done.insert(id), "item {} finished twice", id);
            Ok(())
        }

        /// Checks drops from failed batches: `failed` holds their items.
        fn check_failure(
            &mut self,
            failed: &[Msg],
            drops: Vec<Dropped<Msg>>,
        ) -> Result<(), TestCaseError> {
            let dropped: BTreeSet<u64> = drops.iter().map(|d| d.item.id).collect();
            for m in failed {
                if m.qos == 0 {
                    prop_assert!(dropped.contains(&m.id), "QoS 0 item {} kept", m.id);
                }
            }
            for d in drops {
                prop_assert!(failed.contains(&d.item));
                match d.reason {
                    DropReason::Qos0Lost => prop_assert_eq!(d.item.qos, 0),
                    DropReason::Expired => {
                        prop_assert!(d.item.qos > 0);
                        prop_assert!(self.expired(d.item.id));
                    }
                    other => prop_assert!(false, "unexpected reason {:?}", other),
                }
                self.finish(d.item.id)?;
                self.drops += 1;
            }
            Ok(())
        }

        fn step(&mut self, link: &mut Link<Msg>, op: Op) -> Result<(), TestCaseError> {
            let now = ms(self.now);
            match op {
                Op::Push(qos) => {
                    let id = self.next_item;
                    self.next_item += 1;
                    self.held.insert(id, (qos, self.now));
                    let too_large = size_of(id) > self.settings.max_batch_bytes;
                    let dropped = link.push(now, msg(id, qos));
                    prop_assert_eq!(
                        too_large,
                        dropped
                            .as_ref()
                            .is_some_and(|d| d.item.id == id && d.reason == DropReason::TooLarge)
                    );
                    if let Some(d) = dropped {
                        if !too_large {
                            prop_assert_eq!(d.reason, DropReason::QueueFull);
                            prop_assert_eq!(d.item.qos, 0, "QoS 1 dropped by policy");
                        }
                        prop_assert!(!self.in_model_batch(d.item.id));
                        self.finish(d.item.id)?;
                        self.drops += 1;
                    }
                }
                Op::Next => {
                    if let Some((id, items)) = link.next_batch(now) {
                        prop_assert!(self.last_batch < Some(id), "ids grow");
                        prop_assert!(!items.is_empty());
                        prop_assert!(items.len() <= self.settings.batch_size);
                        let bytes: usize =
                            items.iter().map(|m| size_of(m.id)).sum::<usize>() + items.len() - 1;
                        prop_assert!(items.len() == 1 || bytes <= link.batch_bytes());
                        prop_assert!(link.batch_bytes() <= self.settings.max_batch_bytes);
                        prop_assert!(self.batches.len() < self.settings.max_batches_in_flight);
                        for m in &items {
                            prop_assert_eq!(self.held.get(&m.id).map(|h| h.0), Some(m.qos));
                            prop_assert!(
                                !self.in_model_batch(m.id),
                                "item {} sent twice at once",
                                m.id
                            );
                            if m.qos == 0 {
                                prop_assert!(self.sent_qos0.insert(m.id), "QoS 0 sent twice");
                            }
                        }
                        self.last_batch = Some(id);
                        self.batches.insert(id, items);
                    }
                }
                Op::Ack(pick) => {
                    let through = BatchId(
                        self.last_batch
                            .map_or(0, |b| b.0)
                            .saturating_sub(u64::from(pick % 4)),
                    );
                    let later = self
                        .batches
                        .split_off(&BatchId(through.0.saturating_add(1)));
                    let acked = std::mem::replace(&mut self.batches, later);
                    let expected: usize = acked.values().map(Vec::len).sum();
                    prop_assert_eq!(link.ack_through(through), expected);
                    for m in acked.into_values().flatten() {
                        self.finish(m.id)?;
                        self.acked.push(m.id);
                    }
                }
                Op::Fail(pick) => {
                    let target = BatchId(
                        self.last_batch
                            .map_or(0, |b| b.0)
                            .saturating_sub(u64::from(pick % 4)),
                    );
                    let drops = link.failed(now, target);
                    if self.batches.contains_key(&target) {
                        let failed: Vec<Msg> = self
                            .batches
                            .split_off(&target)
                            .into_values()
                            .flatten()
                            .collect();
                        self.check_failure(&failed, drops)?;
                    } else {
                        prop_assert!(drops.is_empty(), "failure of unknown batch dropped items");
                    }
                }
                Op::Rewind => {
                    let failed: Vec<Msg> = std::mem::take(&mut self.batches)
                        .into_values()
                        .flatten()
                        .collect();
                    let drops = link.rewind(now);
                    self.check_failure(&failed, drops)?;
                }
                Op::Expire => {
                    for d in link.expire(now) {
                        prop_assert_eq!(d.reason, DropReason::Expired);
                        prop_assert!(!self.in_model_batch(d.item.id), "in-flight item expired");
                        prop_assert!(self.expired(d.item.id));
                        self.finish(d.item.id)?;
                        self.drops += 1;
                    }
                }
                Op::Advance(by) => self.now += u64::from(by),
                Op::TooLarge(pick) => {
                    let target = BatchId(
                        self.last_batch
                            .map_or(0, |b| b.0)
                            .saturating_sub(u64::from(pick % 4)),
                    );
                    let mut drops = link.too_large(now, target);
                    let Some(refused) = self.batches.remove(&target) else {
                        prop_assert!(drops.is_empty(), "refusal of unknown batch dropped items");
                        return self.check(link);
                    };
                    let later: Vec<Msg> = self
                        .batches
                        .split_off(&target)
                        .into_values()
                        .flatten()
                        .collect();
                    if let [alone] = refused.as_slice() {
                        let at = drops.iter().position(|d| d.item == *alone);
                        prop_assert!(at.is_some(), "a batch of one refused must drop it");
                        let d = drops.remove(at.unwrap_or_default());
                        prop_assert_eq!(d.reason, DropReason::TooLarge);
                        self.finish(d.item.id)?;
                        self.drops += 1;
                    } else {
                        // None of it was delivered: QoS 0 may go again.
                        for m in &refused {
                            self.sent_qos0.remove(&m.id);
                        }
                    }
                    self.check_failure(&later, drops)?;
                }
            }
            self.check(link)
        }

        fn check(&self, link: &Link<Msg>) -> Result<(), TestCaseError> {
            // (a) bounds.
            // QoS 1 and 2 may go over the bound; QoS 0 never does.
            prop_assert!(link.queued_at_most_once() <= self.settings.queue_length);
            prop_assert!(link.in_flight() <= self.settings.max_in_flight);
            // (b) conservation: what is neither acked nor dropped is still aboard.
            prop_assert_eq!(link.queued() + link.in_flight(), self.held.len());
            let in_batches: usize = self.batches.values().map(Vec::len).sum();
            prop_assert!(in_batches <= link.in_flight());
            let stats = link.stats();
            prop_assert_eq!(stats.acked, self.acked.len() as u64);
            prop_assert_eq!(stats.dropped.values().sum::<u64>(), self.drops);
            prop_assert_eq!(self.done.len() + self.held.len(), self.next_item as usize);
            // (c) order: acks come in push order (ids are pushed in order).
            prop_assert!(
                self.acked.windows(2).all(|w| w[0] < w[1]),
                "acked out of order: {:?}",
                self.acked
            );
            prop_assert_eq!(link.is_idle(), self.held.is_empty());
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn link_matches_the_model(
            settings in arb_settings(),
            ops in prop::collection::vec(arb_op(), 0..300),
        ) {
            let mut link = Link::new(settings.clone());
            let mut model = Model::new(settings);
            for op in ops {
                model.step(&mut link, op)?;
            }

            // Liveness: with a healthy peer from here on, everything left is
            // acked or expires; nothing is stuck.
            for _ in 0..1_000 {
                if link.is_idle() {
                    break;
                }
                if let Some(deadline) = link.next_deadline() {
                    model.now = model.now.max(deadline.as_millis());
                }
                model.step(&mut link, Op::Expire)?;
                model.step(&mut link, Op::Next)?;
                model.step(&mut link, Op::Ack(0))?;
            }
            prop_assert!(link.is_idle(), "link stuck: {:?}", link.stats());
            prop_assert_eq!(link.next_deadline(), None);
            prop_assert!(link.close().is_empty());
        }

        #[test]
        fn link_close_hands_back_exactly_what_is_held(
            settings in arb_settings(),
            ops in prop::collection::vec(arb_op(), 0..200),
        ) {
            let mut link = Link::new(settings.clone());
            let mut model = Model::new(settings);
            for op in ops {
                model.step(&mut link, op)?;
            }
            let drops = link.close();
            prop_assert!(drops.iter().all(|d| d.reason == DropReason::PeerGone));
            let returned: Vec<u64> = drops.iter().map(|d| d.item.id).collect();
            let held: Vec<u64> = model.held.keys().copied().collect();
            prop_assert_eq!(returned, held, "close returns what is held, oldest first");
            prop_assert!(link.is_idle());
            prop_assert_eq!(link.stats().in_flight + link.stats().queued, 0);
        }
    }
}
