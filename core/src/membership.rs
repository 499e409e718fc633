//! The member list: one record per node, merged so that every core ends with
//! the same list whatever order the records arrive in.
//!
//! Each record is a last-writer-wins register keyed by node id. The winner is
//! the record with the highest `(incarnation, stamp)`, where the stamp is a
//! Lamport clock plus the id of the core that made the change, so concurrent
//! changes made on two cores resolve identically everywhere. Lamport time
//! makes a change that was made *after* seeing another one always win over it.
//!
//! Who may change a record: a worker's home core (the one it registered with)
//! watches its heartbeats and is the only one to mark it alive again after a
//! suspicion; any core may raise suspicion or death of another core; only a
//! node itself refutes its own death, by coming back with a higher
//! incarnation. Dead and left records stay as tombstones for a while so that a
//! late, stale "alive" cannot bring a member back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::id::{Incarnation, NodeId, Role};
use crate::time::Instant;
use crate::wire::messages::{MemberRecord, MemberState, Stamp};

/// How a member's visible state changed with a merge or a local decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A member appeared, or came back with a new incarnation.
    Joined(MemberRecord),
    /// A member became suspect.
    Suspect(MemberRecord),
    /// A suspect member was heard from again.
    Recovered(MemberRecord),
    /// A member departed gracefully.
    Left(MemberRecord),
    /// A member was declared dead.
    Dead(MemberRecord),
    /// Only bookkeeping changed (home core, address, stamp).
    Updated(MemberRecord),
}

impl Change {
    /// The record after the change.
    pub fn record(&self) -> &MemberRecord {
        match self {
            Change::Joined(r)
            | Change::Suspect(r)
            | Change::Recovered(r)
            | Change::Left(r)
            | Change::Dead(r)
            | Change::Updated(r) => r,
        }
    }

    fn between(old: Option<&MemberRecord>, new: &MemberRecord) -> Change {
        let record = new.clone();
        let Some(old) = old else {
            return match new.state {
                MemberState::Alive | MemberState::Suspect => Change::Joined(record),
                MemberState::Dead => Change::Dead(record),
                MemberState::Left => Change::Left(record),
            };
        };
        let new_life = new.incarnation > old.incarnation;
        match new.state {
            MemberState::Alive | MemberState::Suspect if new_life || old.state.is_gone() => {
                Change::Joined(record)
            }
            MemberState::Alive if old.state == MemberState::Suspect => Change::Recovered(record),
            MemberState::Suspect if old.state == MemberState::Alive => Change::Suspect(record),
            MemberState::Dead if old.state != MemberState::Dead || new_life => Change::Dead(record),
            MemberState::Left if old.state != MemberState::Left || new_life => Change::Left(record),
            _ => Change::Updated(record),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    record: MemberRecord,
    /// When this node last heard from the member itself (local knowledge,
    /// never sent to others).
    last_heard: Option<Instant>,
    /// When this node saw the member go dead or leave.
    gone_at: Option<Instant>,
    /// When this node first learnt of this incarnation of the member.
    since: Instant,
    /// The list's [`Membership::version`] when this record was installed.
    version: u64,
}

/// The member list of one node.
#[derive(Clone, Debug)]
pub struct Membership {
    me: NodeId,
    clock: u64,
    entries: BTreeMap<NodeId, Entry>,
    /// Every entry with a `gone_at` (tombstones, and this node once it
    /// left), oldest first: [`Membership::forget_tombstones`] runs at every
    /// tick and looks only at the oldest, never at the whole list.
    gone: BTreeSet<(Instant, NodeId)>,
    /// Counts records forgotten (tombstones expired, or dropped by
    /// [`Membership::retain_only`]), so that what is kept per member
    /// elsewhere is swept only when it may name someone gone.
    removals: u64,
    /// The sum of the live records' hashes ([`record_hash`]), kept as
    /// records change so that a digest never walks the list: with a
    /// thousand members changing several times a second, hashing the whole
    /// list at every heartbeat was most of what a node did.
    live_sum: u128,
    /// The digest's text, made when first asked for after a change.
    digest: std::cell::OnceCell<String>,
    /// Counts every record installed: a position in this node's log of
    /// changes, which peers quote to ask only for what came after.
    version: u64,
    /// Ids by the version that last changed them, so that the changes after
    /// a position are found without walking the list.
    by_version: BTreeMap<u64, NodeId>,
    /// The highest version of a record since forgotten: a peer that has not
    /// seen that far may still hold the record, and only a whole list
    /// tells it the record is gone.
    forgotten: u64,
}

impl Membership {
    /// A list holding only `me`, alive.
    pub fn new(me: MemberRecord, now: Instant) -> Self {
        let mut list = Membership {
            me: me.id.clone(),
            clock: me.stamp.clock,
            entries: BTreeMap::new(),
            gone: BTreeSet::new(),
            removals: 0,
            live_sum: 0,
            digest: std::cell::OnceCell::new(),
            version: 0,
            by_version: BTreeMap::new(),
            forgotten: 0,
        };
        list.install(me, now);
        if let Some(entry) = list.entries.get_mut(&list.me) {
            entry.last_heard = Some(now);
        }
        list
    }

    /// The position of the latest change in this node's log of changes.
    /// Positions mean something only to this node, in this incarnation.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The records changed after `version`, in the order they changed; or
    /// `None` if the changes no longer say everything a peer that saw only
    /// up to `version` needs (a record it may hold was forgotten since), or
    /// `version` is not one of this list's: that peer needs the whole list.
    pub fn changes_since(&self, version: u64) -> Option<Vec<MemberRecord>> {
        if version > self.version || version < self.forgotten {
            return None;
        }
        Some(
            self.by_version
                .range(version.saturating_add(1)..)
                .filter_map(|(_, id)| self.get(id).cloned())
                .collect(),
        )
    }

    /// This node's own record.
    pub fn me(&self) -> Option<&MemberRecord> {
        self.get(&self.me)
    }

    /// The record of `id`, dead or alive.
    pub fn get(&self, id: &NodeId) -> Option<&MemberRecord> {
        self.entries.get(id).map(|e| &e.record)
    }

    /// When this node last heard from `id` directly.
    pub fn last_heard(&self, id: &NodeId) -> Option<Instant> {
        self.entries.get(id).and_then(|e| e.last_heard)
    }

    /// How long `id` has been silent: since it was last heard from, or since
    /// this node learnt of its current incarnation if it never was.
    pub fn silence(&self, id: &NodeId, now: Instant) -> Duration {
        match self.entries.get(id) {
            Some(e) => now.saturating_since(e.last_heard.map_or(e.since, |t| t.max(e.since))),
            None => Duration::ZERO,
        }
    }

    /// When this node saw `id` die or leave.
    pub fn gone_at(&self, id: &NodeId) -> Option<Instant> {
        self.entries.get(id).and_then(|e| e.gone_at)
    }

    /// Every record, ordered by id.
    pub fn records(&self) -> impl Iterator<Item = &MemberRecord> {
        self.entries.values().map(|e| &e.record)
    }

    /// Every record, as sent in snapshots.
    pub fn snapshot(&self) -> Vec<MemberRecord> {
        self.records().cloned().collect()
    }

    /// Members that are alive or suspect.
    pub fn live(&self) -> impl Iterator<Item = &MemberRecord> {
        self.records().filter(|r| !r.state.is_gone())
    }

    /// Live cores other than this node.
    pub fn peer_cores(&self) -> impl Iterator<Item = &MemberRecord> {
        self.live()
            .filter(|r| r.role == Role::Core && r.id != self.me)
    }

    /// Number of records, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty (it never is: it holds this node).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that `id` was heard from at `now`.
    pub fn heard(&mut self, id: &NodeId, now: Instant) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.last_heard = Some(entry.last_heard.map_or(now, |t| t.max(now)));
        }
    }

    /// A digest of the live records: two nodes with equal digests hold the
    /// same live members in the same states. Tombstones are left out so that
    /// one node forgetting an old tombstone does not cause endless resyncs.
    /// It is the sum of one hash per live record, so it changes with each
    /// record in constant time and does not depend on the order records
    /// arrived in.
    pub fn digest(&self) -> String {
        self.digest
            .get_or_init(|| crate::auth::hex(&self.live_sum.to_be_bytes()[8..]))
            .clone()
    }

    /// Takes a record out of the live sum, or puts it in.
    fn count_live(&mut self, record: &MemberRecord, add: bool) {
        if record.state.is_gone() {
            return;
        }
        let hash = record_hash(record);
        self.live_sum = if add {
            self.live_sum.wrapping_add(hash)
        } else {
            self.live_sum.wrapping_sub(hash)
        };
    }

    /// Merges a record received from another node. Returns the visible change,
    /// if the record won.
    pub fn merge(&mut self, incoming: MemberRecord, now: Instant) -> Option<Change> {
        self.clock = self.clock.max(incoming.stamp.clock);
        let existing = self.entries.get(&incoming.id);
        if existing.is_some_and(|e| !incoming.supersedes(&e.record)) {
            return None;
        }
        Some(self.install(incoming, now))
    }

    /// Takes a record as it is, whatever its stamp: a worker mirrors its
    /// core, which is the authority on every record it sends. (A core that
    /// restarted stamps with a fresh clock; its worker must not prefer what
    /// the core's former life said.) Returns the change, if anything changed.
    pub fn adopt(&mut self, record: MemberRecord, now: Instant) -> Option<Change> {
        self.clock = self.clock.max(record.stamp.clock);
        if self
            .entries
            .get(&record.id)
            .is_some_and(|e| e.record == record)
        {
            return None;
        }
        Some(self.install(record, now))
    }

    /// Forgets every member but `keep` and this node: after adopting a
    /// core's full list, what the core does not know is gone.
    pub fn retain_only(&mut self, keep: &std::collections::BTreeSet<NodeId>) {
        let me = self.me.clone();
        let going: Vec<NodeId> = self
            .entries
            .keys()
            .filter(|id| **id != me && !keep.contains(*id))
            .cloned()
            .collect();
        for id in &going {
            self.remove(id);
        }
    }

    /// Records a decision this node made about a member (or itself): the
    /// record gets a fresh stamp that supersedes everything seen so far.
    pub fn decide(&mut self, mut record: MemberRecord, now: Instant) -> Change {
        self.clock = self.clock.saturating_add(1);
        record.stamp = Stamp {
            clock: self.clock,
            by: self.me.clone(),
        };
        self.install(record, now)
    }

    /// A record for `id` in `state`, based on the current one.
    pub fn with_state(&self, id: &NodeId, state: MemberState) -> Option<MemberRecord> {
        self.get(id).map(|r| MemberRecord { state, ..r.clone() })
    }

    fn install(&mut self, record: MemberRecord, now: Instant) -> Change {
        let old = self.entries.get(&record.id);
        let change = Change::between(old.map(|e| &e.record), &record);
        let same_life = old.is_some_and(|e| e.record.incarnation == record.incarnation);
        let last_heard = old.filter(|_| same_life).and_then(|e| e.last_heard);
        let since = old.filter(|_| same_life).map_or(now, |e| e.since);
        let gone_at = match (old, record.state.is_gone()) {
            (Some(e), true) if e.record.state.is_gone() => e.gone_at,
            (_, true) => Some(now),
            (_, false) => None,
        };
        let added = if record.state.is_gone() {
            0
        } else {
            record_hash(&record)
        };
        self.version += 1;
        let version = self.version;
        let id = record.id.clone();
        self.by_version.insert(version, id.clone());
        let replaced = self.entries.insert(
            record.id.clone(),
            Entry {
                record,
                last_heard,
                gone_at,
                since,
                version,
            },
        );
        if let Some(old) = &replaced {
            self.count_live(&old.record, false);
            self.by_version.remove(&old.version);
            if let Some(t) = old.gone_at {
                self.gone.remove(&(t, old.record.id.clone()));
            }
        }
        if let Some(t) = gone_at {
            self.gone.insert((t, id));
        }
        self.live_sum = self.live_sum.wrapping_add(added);
        self.digest = std::cell::OnceCell::new();
        change
    }

    /// Forgets tombstones older than `keep`, and the oldest ones beyond
    /// `max_tombstones`. Returns how many were forgotten.
    pub fn forget_tombstones(
        &mut self,
        now: Instant,
        keep: Duration,
        max_tombstones: usize,
    ) -> usize {
        let mut forgotten = 0;
        loop {
            // This node's own record is never forgotten: it is the only gone
            // entry the search may step over.
            let oldest = self.gone.iter().find(|(_, id)| *id != self.me).cloned();
            let Some((t, id)) = oldest else { break };
            let over_cap = self.gone.len() - usize::from(self.is_gone_me()) > max_tombstones;
            if now.saturating_since(t) <= keep && !over_cap {
                break;
            }
            self.remove(&id);
            forgotten += 1;
        }
        forgotten
    }

    /// Whether this node's own entry is among the gone ones.
    fn is_gone_me(&self) -> bool {
        self.entries
            .get(&self.me)
            .is_some_and(|e| e.gone_at.is_some())
    }

    /// Forgets one record, keeping the indexes and the digest true.
    fn remove(&mut self, id: &NodeId) {
        if let Some(e) = self.entries.remove(id) {
            self.digest = std::cell::OnceCell::new();
            self.count_live(&e.record, false);
            self.by_version.remove(&e.version);
            self.forgotten = self.forgotten.max(e.version);
            if let Some(t) = e.gone_at {
                self.gone.remove(&(t, id.clone()));
            }
            self.removals += 1;
        }
    }

    /// How many records were forgotten so far: when it has not moved, no
    /// member left the list.
    pub fn removals(&self) -> u64 {
        self.removals
    }

    /// This node's incarnation as the list knows it.
    pub fn my_incarnation(&self) -> Incarnation {
        self.me().map(|r| r.incarnation).unwrap_or_default()
    }
}

/// A record's share of the digest: the first 16 bytes of a SHA-256 of its
/// fields, each one delimited so that no two records hash the same bytes.
fn record_hash(record: &MemberRecord) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(record.id.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(record.incarnation.0.to_be_bytes());
    hasher.update([record.state as u8, record.role as u8]);
    hasher.update(record.home.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(record.address.as_deref().unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(record.stamp.clock.to_be_bytes());
    hasher.update(record.stamp.by.as_str().as_bytes());
    hasher.update([0xff]);
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn record(name: &str, inc: u64, state: MemberState, clock: u64, by: &str) -> MemberRecord {
        MemberRecord {
            id: id(name),
            role: Role::Worker,
            incarnation: Incarnation(inc),
            state,
            home: id("c1"),
            address: None,
            stamp: Stamp { clock, by: id(by) },
        }
    }

    fn core_list(name: &str) -> Membership {
        let me = MemberRecord {
            role: Role::Core,
            home: id(name),
            ..record(name, 1, MemberState::Alive, 0, name)
        };
        Membership::new(me, Instant::ZERO)
    }

    #[test]
    fn higher_stamp_wins_and_order_of_arrival_does_not_matter() {
        let a = record("w", 1, MemberState::Alive, 3, "c1");
        let b = record("w", 1, MemberState::Suspect, 4, "c1");
        let c = record("w", 1, MemberState::Dead, 4, "c2");
        let mut one = core_list("x");
        let mut two = core_list("x");
        for r in [a.clone(), b.clone(), c.clone()] {
            one.merge(r, Instant::ZERO);
        }
        for r in [c, a, b] {
            two.merge(r, Instant::ZERO);
        }
        assert_eq!(one.snapshot(), two.snapshot());
        assert_eq!(one.get(&id("w")).unwrap().state, MemberState::Dead);
        assert_eq!(one.digest(), two.digest());
    }

    #[test]
    fn a_new_incarnation_beats_any_stamp_of_the_old_one() {
        let mut list = core_list("c1");
        list.merge(record("w", 1, MemberState::Dead, 100, "c1"), Instant::ZERO);
        let change = list.merge(record("w", 2, MemberState::Alive, 1, "c2"), Instant::ZERO);
        assert!(matches!(change, Some(Change::Joined(_))));
    }

    #[test]
    fn a_decision_supersedes_everything_seen() {
        let mut list = core_list("c1");
        list.merge(record("w", 1, MemberState::Alive, 41, "c2"), Instant::ZERO);
        let suspect = list.with_state(&id("w"), MemberState::Suspect).unwrap();
        let change = list.decide(suspect, Instant::ZERO);
        assert!(matches!(change, Change::Suspect(_)));
        assert_eq!(list.get(&id("w")).unwrap().stamp.clock, 42);
    }

    #[test]
    fn tombstones_are_left_out_of_the_digest_and_forgotten_after_a_while() {
        let mut list = core_list("c1");
        let before = list.digest();
        list.merge(
            record("w", 1, MemberState::Dead, 1, "c1"),
            Instant::from_millis(10),
        );
        assert_eq!(list.digest(), before);
        assert_eq!(
            list.forget_tombstones(Instant::from_millis(20), Duration::from_millis(100), 10),
            0
        );
        assert_eq!(
            list.forget_tombstones(Instant::from_millis(200), Duration::from_millis(100), 10),
            1
        );
        assert!(list.get(&id("w")).is_none());
    }

    #[test]
    fn changes_name_the_visible_transition() {
        let alive = record("w", 1, MemberState::Alive, 1, "c1");
        let suspect = record("w", 1, MemberState::Suspect, 2, "c1");
        let back = record("w", 1, MemberState::Alive, 3, "c1");
        let left = record("w", 1, MemberState::Left, 4, "c1");
        let mut list = core_list("c1");
        assert!(matches!(
            list.merge(alive, Instant::ZERO),
            Some(Change::Joined(_))
        ));
        assert!(matches!(
            list.merge(suspect, Instant::ZERO),
            Some(Change::Suspect(_))
        ));
        assert!(matches!(
            list.merge(back, Instant::ZERO),
            Some(Change::Recovered(_))
        ));
        assert!(matches!(
            list.merge(left, Instant::ZERO),
            Some(Change::Left(_))
        ));
    }
}
