//! A core keeping in touch with the other cores and feeding its workers'
//! streams.
//!
//! Every core registers with every URL in `clusters` (learning, from the
//! answer, which core lives there, or that the URL is its own), heartbeats
//! the live cores, and pushes each of its own decisions to them with
//! `/sync`, one request in flight per peer, the rest coalesced in its
//! outbox. Heartbeats carry a digest of the member list; a core whose digest
//! differs from a peer's gets the peer's full list in the answer and pushes
//! its own back, so lost syncs are repaired within a heartbeat.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::{Event, Node, Pending, Phase, StreamOutput, TransportError};
use crate::config::Config;
use crate::id::{NodeId, StreamId};
use crate::membership::Change;
use crate::time::{Instant, Now};
use crate::wire::messages::{
    HeartbeatRequest, HeartbeatResponse, LeaveRequest, LogPosition, MemberRecord, MemberState,
    RegisterRequest, RegisterResponse, Stamp, SyncResponse,
};
use crate::wire::{decode_response, encode_json, status_error, Endpoint, ErrorBody};

use super::serve::UNKNOWN_ROUTE_OWNER;

/// One URL a core registers with.
#[derive(Debug, Clone)]
struct Slot {
    /// Names the slot in [`Pending::CoreRegister`]; never reused.
    id: u64,
    url: String,
    /// The core that answered there.
    node: Option<NodeId>,
    /// The URL turned out to be this core's own.
    is_self: bool,
    /// Learnt from a core that registered, not listed in `clusters`: it
    /// goes when that core is forgotten or moves.
    learnt: bool,
    next_attempt: Instant,
    backoff: Duration,
}

/// What a core keeps beyond the member list.
#[derive(Debug, Default)]
pub(super) struct CoreDuty {
    slots: Vec<Slot>,
    next_slot: u64,
    streams: BTreeMap<StreamId, NodeId>,
    stream_of: BTreeMap<NodeId, StreamId>,
    next_stream: u64,
}

impl CoreDuty {
    pub(super) fn new(config: &Config) -> Self {
        let mut duty = CoreDuty::default();
        if config.core {
            for url in &config.clusters {
                duty.add_slot(&url.to_string(), None, false, config.retry_backoff);
            }
            if let Some(own) = &config.advertise {
                let own = own.to_string();
                for slot in duty.slots.iter_mut().filter(|s| s.url == own) {
                    slot.is_self = true;
                }
            }
        }
        duty
    }

    fn add_slot(&mut self, url: &str, node: Option<NodeId>, learnt: bool, backoff: Duration) {
        let url = url.trim_end_matches('/').to_owned();
        if !self.slots.iter().any(|s| s.url == url) {
            self.next_slot += 1;
            self.slots.push(Slot {
                id: self.next_slot,
                url,
                node,
                is_self: false,
                learnt,
                next_attempt: Instant::ZERO,
                backoff,
            });
        }
    }

    /// Remembers where a core that registered with us lives. A learnt
    /// address it left behind (it came back elsewhere) is forgotten.
    pub(super) fn learn_core(&mut self, node: &NodeId, address: Option<&str>) {
        if let Some(address) = address {
            let url = address.trim_end_matches('/');
            self.slots
                .retain(|s| !(s.learnt && s.node.as_ref() == Some(node) && s.url != url));
            match self.slots.iter_mut().find(|s| s.url == url) {
                Some(slot) => slot.node = Some(node.clone()),
                None => self.add_slot(url, Some(node.clone()), true, Duration::from_millis(100)),
            }
        }
    }

    /// Forgets learnt addresses of cores the member list no longer holds.
    /// Slots from `clusters` stay: the configuration names them.
    pub(super) fn forget_learnt(&mut self, known: impl Fn(&NodeId) -> bool) {
        self.slots
            .retain(|s| !s.learnt || s.node.as_ref().is_some_and(&known));
    }

    fn slot(&self, id: u64) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    /// How many addresses this core registers with or has learnt.
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    fn address_of(&self, node: &NodeId) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.node.as_ref() == Some(node) && !s.is_self)
            .map(|s| s.url.as_str())
    }

    pub(super) fn open_stream(&mut self, worker: &NodeId) -> (StreamId, Option<StreamId>) {
        self.next_stream += 1;
        let stream = StreamId(self.next_stream);
        let replaced = self.stream_of.insert(worker.clone(), stream);
        if let Some(old) = replaced {
            self.streams.remove(&old);
        }
        self.streams.insert(stream, worker.clone());
        (stream, replaced)
    }

    /// Forgets a stream; returns its worker.
    pub(super) fn forget_stream(&mut self, stream: StreamId) -> Option<NodeId> {
        let worker = self.streams.remove(&stream)?;
        if self.stream_of.get(&worker) == Some(&stream) {
            self.stream_of.remove(&worker);
        }
        Some(worker)
    }

    /// The streams being fed.
    pub(super) fn streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.streams.keys().copied()
    }

    /// The current stream of a worker.
    pub(super) fn stream_of(&self, worker: &NodeId) -> Option<StreamId> {
        self.stream_of.get(worker).copied()
    }

    pub(super) fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

impl Node {
    /// The periodic work of a core.
    pub(super) fn core_tick(&mut self, now: Now) {
        let decisions = self.watch(now);
        self.publish_decisions(now, decisions);
        let keep = self.config.dead_timeout.saturating_mul(10);
        self.membership
            .forget_tombstones(now.instant, keep, super::MAX_TOMBSTONES);
        self.forget_departed();
        // Syncs that failed go again now.
        self.sync_outbox.release();
        let slots: Vec<u64> = self.core.slots.iter().map(|s| s.id).collect();
        for slot in slots {
            if self.slot_needs_registering(slot, now.instant) {
                self.core_register(now, slot);
            }
        }
        let digest = self.membership.digest();
        let peers: Vec<NodeId> = self.membership.peer_cores().map(|r| r.id.clone()).collect();
        for peer in peers {
            // A few heartbeats may be in flight at once, so one lost or slow
            // answer does not silence a peer for a whole request timeout.
            let busy = self.count_pending(
                |p| matches!(p, Pending::CoreHeartbeat { peer: p, .. } if *p == peer),
            ) >= super::MAX_HEARTBEATS_IN_FLIGHT;
            if busy {
                continue;
            }
            if let Some(url) = self.peer_address(&peer) {
                let seen = self.members_seen(&peer);
                let body = encode_json(&HeartbeatRequest {
                    members_digest: digest.clone(),
                    retained_digest: self.retained_digest_for_peers(),
                    members_seen: seen,
                    routes_behind: !self.peer_holds_own_route_log(&peer),
                });
                self.send(
                    now,
                    &url,
                    Some(peer.clone()),
                    Endpoint::Heartbeat,
                    body,
                    Pending::CoreHeartbeat { peer, seen },
                );
            }
        }
    }

    fn slot_needs_registering(&self, id: u64, now: Instant) -> bool {
        let Some(slot) = self.core.slot(id) else {
            return false;
        };
        if slot.is_self || now < slot.next_attempt {
            return false;
        }
        if self.is_pending(|p| *p == Pending::CoreRegister { slot: id }) {
            return false;
        }
        match &slot.node {
            None => true,
            Some(node) => self.membership.get(node).is_none_or(|r| r.state.is_gone()),
        }
    }

    fn core_register(&mut self, now: Now, slot: u64) {
        let Some(url) = self.core.slot(slot).map(|s| s.url.clone()) else {
            return;
        };
        let me = self.membership.me().cloned();
        let body = encode_json(&RegisterRequest {
            node: self.id.clone(),
            role: self.role,
            incarnation: self.incarnation(),
            address: me.and_then(|r| r.address),
        });
        let peer = self.core.slot(slot).and_then(|s| s.node.clone());
        self.send(
            now,
            &url,
            peer,
            Endpoint::Register,
            body,
            Pending::CoreRegister { slot },
        );
    }

    /// Where to reach another core.
    pub(super) fn peer_address(&self, peer: &NodeId) -> Option<String> {
        self.core
            .address_of(peer)
            .map(str::to_owned)
            .or_else(|| self.membership.get(peer).and_then(|r| r.address.clone()))
    }

    fn slot_failed(&mut self, now: Now, slot: u64) {
        let max = self.config.retry_backoff_max;
        if let Some(s) = self.core.slot_mut(slot) {
            s.next_attempt = now.instant + s.backoff;
            s.backoff = s.backoff.saturating_mul(2).min(max);
        }
    }

    pub(super) fn on_core_register(
        &mut self,
        now: Now,
        slot: u64,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let Ok(response) = result else {
            self.slot_failed(now, slot);
            return;
        };
        let url = self
            .core
            .slot(slot)
            .map(|s| s.url.clone())
            .unwrap_or_default();
        match response.status() {
            StatusCode::OK => {}
            StatusCode::FORBIDDEN => {
                let reason = status_error(&response).to_string();
                self.reject(url, reason);
                return;
            }
            StatusCode::CONFLICT if conflict_kind(&response) != "name_taken" => {
                // The cluster has this incarnation down as dead or stale.
                self.reincarnate(now);
                self.core_register(now, slot);
                return;
            }
            _ => {
                self.count_bad_response(status_error(&response).kind());
                self.slot_failed(now, slot);
                return;
            }
        }
        let answer: RegisterResponse = match decode_response(&response, self.config.max_body_size) {
            Ok(answer) => answer,
            Err(error) => {
                self.count_bad_response(error.kind());
                self.slot_failed(now, slot);
                return;
            }
        };
        if let Some(s) = self.core.slot_mut(slot) {
            s.backoff = self.config.retry_backoff;
            s.node = Some(answer.core.clone());
            s.is_self = answer.core == self.id;
        }
        if answer.core == self.id {
            self.learn_own_address(now, url);
            return;
        }
        let at = answer.members_at.map(|version| LogPosition {
            incarnation: answer.core_incarnation,
            version,
        });
        let changes = self.merge_records(now, answer.members);
        self.membership.heard(&answer.core, now.instant);
        self.members_reached(&answer.core, at);
        self.apply_changes(now, changes);
    }

    /// A core without `advertise` learns its address when it reaches itself
    /// through `clusters`; the others then learn it from its record.
    fn learn_own_address(&mut self, now: Now, url: String) {
        let Some(me) = self.membership.me().cloned() else {
            return;
        };
        if me.address.is_none() {
            let change = self.membership.decide(
                MemberRecord {
                    address: Some(url),
                    ..me
                },
                now.instant,
            );
            self.publish_decisions(now, vec![change]);
        }
    }

    pub(super) fn on_core_heartbeat(
        &mut self,
        now: Now,
        peer: &NodeId,
        seen: Option<LogPosition>,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let Ok(response) = result else { return };
        if response.status() == StatusCode::CONFLICT {
            self.reregister_with(now, peer);
            return;
        }
        let mut answer: HeartbeatResponse =
            match decode_response(&response, self.config.max_body_size) {
                Ok(answer) => answer,
                Err(error) => {
                    self.count_bad_response(error.kind());
                    return;
                }
            };
        self.membership.heard(peer, now.instant);
        self.members_seen_heard(peer, seen);
        if let Some(records) = answer.take_members() {
            let changes = self.merge_records(now, records);
            self.apply_changes(now, changes);
        }
        if answer.members_at.is_some() {
            self.members_reached(peer, answer.members_at);
        }
        self.convergence.heard_digest(peer, &answer.members_digest);
        self.convergence.heard_routes_held(peer, answer.routes_held);
        if self.membership.digest() != answer.members_digest {
            // The peer lacks something this core has.
            self.push_missing_members(peer, &answer.members_digest);
        } else {
            self.members_agree_with(peer);
        }
        self.catch_up_routes(peer, answer.routes_held, answer.routes_wanted);
        self.retained_after_heartbeat(now, Some(peer), &answer.retained_digest);
    }

    pub(super) fn on_core_sync(
        &mut self,
        now: Now,
        peer: &NodeId,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let answer = match &result {
            Ok(response) if response.status() == StatusCode::OK => {
                decode_response::<SyncResponse>(response, self.config.max_body_size)
                    .map_err(|e| e.kind().to_owned())
            }
            Ok(response) => Err(conflict_kind(response)),
            Err(_) => Err(String::new()),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(kind) => {
                // Back to the front of the outbox, sent again after the
                // next tick.
                let failed = self.sync_outbox.answered(peer, false);
                match &result {
                    Ok(r) if r.status() == StatusCode::CONFLICT => self.reregister_with(now, peer),
                    Ok(_) if kind == UNKNOWN_ROUTE_OWNER => {
                        // The peer has not heard of members whose routes
                        // went: their records go along next time.
                        // A page before the last fails with the payload
                        // still in flight: its owners count too.
                        let owners = failed
                            .iter()
                            .chain(self.sync_outbox.sending(peer))
                            .flat_map(|p| p.routes.iter().map(|u| &u.node));
                        let records: Vec<MemberRecord> = owners
                            .filter_map(|n| self.membership.get(n).cloned())
                            .collect();
                        self.sync_outbox.push_members(peer, records);
                    }
                    Ok(r) if r.status() == StatusCode::OK => self.count_bad_response(&kind),
                    Ok(r) => self.count_bad_response(status_error(r).kind()),
                    Err(_) => {}
                }
                return;
            }
        };
        self.sync_outbox.answered(peer, true);
        self.membership.heard(peer, now.instant);
        self.resend_route_snapshots(peer, &answer.resync);
    }

    /// A peer answered `409`: it does not know this core (it restarted, or
    /// declared this core dead). Register with it again now.
    pub(super) fn reregister_with(&mut self, now: Now, peer: &NodeId) {
        let find = |duty: &CoreDuty| {
            duty.slots
                .iter()
                .find(|s| s.node.as_ref() == Some(peer))
                .map(|s| s.id)
        };
        let slot = match find(&self.core) {
            Some(slot) => Some(slot),
            None => {
                let address = self.membership.get(peer).and_then(|r| r.address.clone());
                address.and_then(|address| {
                    self.core.learn_core(peer, Some(&address));
                    find(&self.core)
                })
            }
        };
        if let Some(slot) = slot {
            if !self.is_pending(|p| *p == Pending::CoreRegister { slot }) {
                self.core_register(now, slot);
            }
        }
    }

    /// Applies this node's own decisions and tells the other cores.
    pub(super) fn publish_decisions(&mut self, now: Now, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let records: Vec<MemberRecord> = changes.iter().map(|c| c.record().clone()).collect();
        self.apply_changes(now, changes);
        if self.role == super::Role::Core {
            let peers: Vec<NodeId> = self.membership.peer_cores().map(|r| r.id.clone()).collect();
            for peer in peers {
                self.sync_outbox
                    .push_members(&peer, records.iter().cloned());
            }
        }
    }

    /// Sends changed records to every worker stream this core feeds.
    pub(super) fn core_fan_out_to_streams(&mut self, records: &[MemberRecord]) {
        if records.is_empty() || self.core.streams.is_empty() {
            return;
        }
        let streams: Vec<StreamId> = self.core.streams.keys().copied().collect();
        self.push_member_frames(&streams, records.to_vec());
        // Streams of workers that are gone now end: the worker, if alive after
        // all, registers again.
        let gone: Vec<StreamId> = self
            .core
            .streams
            .iter()
            .filter(|(_, w)| {
                self.membership
                    .get(w)
                    .is_none_or(|r| r.state.is_gone() || r.home != self.id)
            })
            .map(|(s, _)| *s)
            .collect();
        for stream in gone {
            self.core.forget_stream(stream);
            self.stream_output.push_back(StreamOutput::Close { stream });
        }
    }

    /// A core departs: it marks itself left, tells the cores, and closes its
    /// workers' streams so they fail over at once.
    pub(super) fn core_leave(&mut self, now: Now) {
        let Some(me) = self
            .membership
            .with_state(&self.id.clone(), MemberState::Left)
        else {
            return;
        };
        let change = self.membership.decide(me, now.instant);
        let records = vec![change.record().clone()];
        self.core_fan_out_to_streams(&records);
        let peers: Vec<NodeId> = self.membership.peer_cores().map(|r| r.id.clone()).collect();
        for peer in peers {
            if let Some(url) = self.peer_address(&peer) {
                let body = encode_json(&LeaveRequest {});
                self.send(
                    now,
                    &url,
                    Some(peer),
                    Endpoint::Leave,
                    body,
                    Pending::CoreLeave,
                );
            }
        }
        let streams: Vec<StreamId> = self.core.streams.keys().copied().collect();
        for stream in streams {
            self.core.forget_stream(stream);
            self.stream_output.push_back(StreamOutput::Close { stream });
        }
    }

    /// A core refused this node's credentials: fatal.
    pub(super) fn reject(&mut self, core: String, reason: String) {
        self.phase = Phase::Rejected;
        self.abandon_links();
        self.events
            .push_back(Event::RegistrationRejected { core, reason });
    }

    /// Comes back with a higher incarnation after the cluster gave this one up.
    pub(super) fn reincarnate(&mut self, now: Now) {
        let incarnation = self.next_incarnation(now);
        let Some(me) = self.membership.me().cloned() else {
            return;
        };
        let record = MemberRecord {
            incarnation,
            state: MemberState::Alive,
            ..me
        };
        self.events.push_back(Event::Reincarnated { incarnation });
        match self.role {
            super::Role::Core => {
                let change = self.membership.decide(record, now.instant);
                self.routes_after_reincarnation();
                self.publish_decisions(now, vec![change]);
            }
            super::Role::Worker => {
                // A worker's record is its core's to stamp: the lowest stamp
                // lets the core's record of this incarnation win here too.
                let record = MemberRecord {
                    stamp: Stamp {
                        clock: 0,
                        by: self.id.clone(),
                    },
                    ..record
                };
                self.membership.merge(record, now.instant);
                self.routes_after_reincarnation();
            }
        }
    }

    /// Refutes the cluster's verdict if it gave up on this node.
    pub(super) fn check_own_record(&mut self, now: Now) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(me) = self.membership.me() else {
            return;
        };
        match (self.role, me.state) {
            (super::Role::Core, MemberState::Suspect | MemberState::Dead | MemberState::Left) => {
                self.reincarnate(now)
            }
            (super::Role::Worker, MemberState::Dead | MemberState::Left) => {
                self.worker_reincarnate(now)
            }
            _ => {}
        }
    }
}

/// The `error` kind of a JSON error response.
fn conflict_kind(response: &http::Response<Bytes>) -> String {
    serde_json::from_slice::<ErrorBody>(response.body())
        .map(|b| b.error)
        .unwrap_or_default()
}
