//! A worker's session with its core: register, keep the push stream open,
//! heartbeat, and fail over to the next core in `clusters` when the current
//! one falls silent for longer than `suspectTimeout`.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::{Event, Node, Pending, Phase, TransportError};
use crate::config::Config;
use crate::id::{NodeId, RequestId};
use crate::time::{Instant, Now};
use crate::wire::messages::{
    HeartbeatRequest, HeartbeatResponse, LeaveRequest, LogPosition, RegisterRequest,
    RegisterResponse, StreamFrame, StreamHello,
};
use crate::wire::sse::SseDecoder;
use crate::wire::{decode_response, encode_json, status_error, Endpoint};

/// How many `409`s in a row a worker answers by coming back with a higher
/// incarnation before it waits a backoff period (two nodes sharing a name
/// would otherwise outbid each other forever).
const MAX_CONFLICTS_IN_A_ROW: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionState {
    /// Waiting to try registering again.
    Idle { retry_at: Instant },
    /// A registration is in flight.
    Registering,
    /// Registered with `core`, last answered at `last_ok`.
    Registered { core: NodeId, last_ok: Instant },
}

#[derive(Debug)]
struct PushStream {
    request: RequestId,
    decoder: SseDecoder,
    /// The pages of a hello gathered so far, until its last one.
    hello: Option<StreamHello>,
}

/// What a worker keeps beyond the member list.
#[derive(Debug)]
pub(super) struct WorkerDuty {
    clusters: Vec<String>,
    candidate: usize,
    state: SessionState,
    stream: Option<PushStream>,
    backoff: Duration,
    failed_in_round: usize,
    conflicts: u32,
    /// The current core's member list and routing table have arrived whole
    /// (its stream's hello) since this worker registered with it.
    synced: bool,
}

impl WorkerDuty {
    pub(super) fn new(config: &Config) -> Self {
        WorkerDuty {
            clusters: config.clusters.iter().map(|u| u.to_string()).collect(),
            candidate: 0,
            state: SessionState::Idle {
                retry_at: Instant::ZERO,
            },
            stream: None,
            backoff: config.retry_backoff,
            failed_in_round: 0,
            conflicts: 0,
            synced: false,
        }
    }

    /// Whether this worker holds its current core's tables whole: false
    /// from each registration until that core's stream hello is applied.
    pub(super) fn synced(&self) -> bool {
        self.synced
    }

    /// The push stream this worker reads now, if any.
    pub(super) fn stream_request(&self) -> Option<RequestId> {
        self.stream.as_ref().map(|s| s.request)
    }

    /// The core this worker is registered with.
    pub(super) fn registered_core(&self) -> Option<&NodeId> {
        match &self.state {
            SessionState::Registered { core, .. } => Some(core),
            _ => None,
        }
    }

    fn candidate_url(&self) -> Option<String> {
        self.clusters.get(self.candidate).cloned()
    }
}

impl Node {
    pub(super) fn worker_start(&mut self, now: Now) {
        self.worker_register(now);
    }

    pub(super) fn worker_tick(&mut self, now: Now) {
        // A worker's copy of the member list keeps tombstones as long as a
        // core's does; its core stops mentioning them once it forgot them.
        let keep = self.config.dead_timeout.saturating_mul(10);
        self.membership
            .forget_tombstones(now.instant, keep, super::MAX_TOMBSTONES);
        self.forget_departed();
        match self.worker.state.clone() {
            SessionState::Idle { retry_at } if now.instant >= retry_at => self.worker_register(now),
            SessionState::Idle { .. } | SessionState::Registering => {}
            SessionState::Registered { core, last_ok } => {
                if now.instant.saturating_since(last_ok) > self.config.suspect_timeout {
                    self.events.push_back(Event::CoreUnreachable { core });
                    self.stats.failovers += 1;
                    self.worker.stream = None;
                    self.worker.candidate =
                        (self.worker.candidate + 1) % self.worker.clusters.len().max(1);
                    self.worker_register(now);
                    return;
                }
                // A few may be in flight at once, so one lost answer does not
                // stall liveness for a whole request timeout.
                if self.count_pending(|p| matches!(p, Pending::WorkerHeartbeat { .. }))
                    < super::MAX_HEARTBEATS_IN_FLIGHT
                {
                    let seen = self.members_seen(&core);
                    let body = encode_json(&HeartbeatRequest {
                        members_digest: self.membership.digest(),
                        retained_digest: self.retained_digest_for_peers(),
                        members_seen: seen,
                        routes_behind: false,
                    });
                    let pending = Pending::WorkerHeartbeat { seen };
                    self.send_to_core(now, Endpoint::Heartbeat, body, pending);
                }
                if self.worker.stream.is_none() {
                    self.open_stream(now);
                }
                // A route update whose answer was lost goes out again.
                self.send_own_routes(now);
            }
        }
    }

    pub(super) fn send_to_core(
        &mut self,
        now: Now,
        endpoint: Endpoint,
        body: Bytes,
        pending: Pending,
    ) -> Option<RequestId> {
        let url = self.worker.candidate_url()?;
        let peer = self.worker.registered_core().cloned();
        Some(self.send(now, &url, peer, endpoint, body, pending))
    }

    fn worker_register(&mut self, now: Now) {
        self.worker.state = SessionState::Registering;
        self.worker.stream = None;
        let body = encode_json(&RegisterRequest {
            node: self.id.clone(),
            role: self.role,
            incarnation: self.incarnation(),
            address: None,
        });
        let candidate = self.worker.candidate;
        if self
            .send_to_core(
                now,
                Endpoint::Register,
                body,
                Pending::WorkerRegister { candidate },
            )
            .is_none()
        {
            self.worker.state = SessionState::Idle {
                retry_at: now.instant + self.config.retry_backoff_max,
            };
        }
    }

    /// Registers again with the current core (it forgot this worker).
    pub(super) fn worker_reregister(&mut self, now: Now) {
        if self.phase == Phase::Running && self.worker.state != SessionState::Registering {
            self.worker_register(now);
        }
    }

    fn open_stream(&mut self, now: Now) {
        self.reset_stream_acks();
        if let Some(request) =
            self.send_to_core(now, Endpoint::Stream, Bytes::new(), Pending::WorkerStream)
        {
            self.worker.stream = Some(PushStream {
                request,
                decoder: SseDecoder::new(self.config.max_body_size),
                hello: None,
            });
        }
    }

    pub(super) fn on_worker_register(
        &mut self,
        now: Now,
        candidate: usize,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        if candidate != self.worker.candidate || self.worker.state != SessionState::Registering {
            return;
        }
        let url = self.worker.candidate_url().unwrap_or_default();
        let response = match result {
            Ok(response) => response,
            Err(_) => return self.try_next_core(now),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::FORBIDDEN => {
                let reason = status_error(&response).to_string();
                return self.reject(url, reason);
            }
            StatusCode::CONFLICT => {
                self.worker.conflicts += 1;
                if self.worker.conflicts <= MAX_CONFLICTS_IN_A_ROW {
                    self.reincarnate(now);
                    return self.worker_register(now);
                }
                self.worker.conflicts = 0;
                return self.wait_before_retry(now);
            }
            _ => {
                self.count_bad_response(status_error(&response).kind());
                return self.try_next_core(now);
            }
        }
        let answer = match decode_response::<RegisterResponse>(&response, self.config.max_body_size)
        {
            Ok(answer) if answer.node_id == self.id => answer,
            Ok(_) => {
                self.count_bad_response("identity_mismatch");
                return self.try_next_core(now);
            }
            Err(error) => {
                self.count_bad_response(error.kind());
                return self.try_next_core(now);
            }
        };
        self.worker.state = SessionState::Registered {
            core: answer.core.clone(),
            last_ok: now.instant,
        };
        self.worker.backoff = self.config.retry_backoff;
        self.worker.failed_in_round = 0;
        self.worker.conflicts = 0;
        self.worker.synced = false;
        self.events.push_back(Event::Registered {
            node_id: answer.node_id,
            core: answer.core.clone(),
            incarnation: self.incarnation(),
        });
        let at = answer.members_at.filter(|_| !answer.partial);
        self.members_reached_only(&answer.core, answer.core_incarnation, at);
        // A partial list is completed by the stream's hello.
        let changes = self.adopt_records(now, answer.members, !answer.partial);
        self.apply_changes(now, changes);
        if self.phase == Phase::Running && self.worker.registered_core().is_some() {
            self.open_stream(now);
            self.routes_after_registration(now);
            self.retained_after_registration(now);
            self.resend_due = self.outstanding.unconfirmed() > 0;
        }
    }

    /// The candidate core did not answer: try the next one, and after a full
    /// round of failures wait, doubling the wait each round.
    fn try_next_core(&mut self, now: Now) {
        self.worker.failed_in_round += 1;
        self.worker.candidate = (self.worker.candidate + 1) % self.worker.clusters.len().max(1);
        if self.worker.failed_in_round >= self.worker.clusters.len() {
            self.worker.failed_in_round = 0;
            self.wait_before_retry(now);
        } else {
            self.worker_register(now);
        }
    }

    fn wait_before_retry(&mut self, now: Now) {
        self.worker.state = SessionState::Idle {
            retry_at: now.instant + self.worker.backoff,
        };
        self.worker.backoff = self
            .worker
            .backoff
            .saturating_mul(2)
            .min(self.config.retry_backoff_max);
    }

    pub(super) fn on_worker_heartbeat(
        &mut self,
        now: Now,
        seen: Option<LogPosition>,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let Ok(response) = result else { return };
        if response.status() == StatusCode::CONFLICT {
            // The core forgot this worker (it restarted): register again.
            return self.worker_reregister(now);
        }
        match decode_response::<HeartbeatResponse>(&response, self.config.max_body_size) {
            Ok(mut answer) => {
                self.core_answered(now);
                if let Some(core) = self.worker.registered_core().cloned() {
                    self.members_seen_heard(&core, seen);
                }
                if let Some(records) = answer.take_members() {
                    let changes = self.merge_records(now, records);
                    self.apply_changes(now, changes);
                }
                let core = self.worker.registered_core().cloned();
                if let Some(core) = &core {
                    self.convergence.heard_digest(core, &answer.members_digest);
                    self.convergence
                        .heard_core_differing(core, std::mem::take(&mut answer.cores_differing));
                }
                if let (Some(at), Some(core)) = (answer.members_at, core) {
                    self.members_reached(&core, Some(at));
                }
                self.retained_after_heartbeat(now, None, &answer.retained_digest);
            }
            Err(error) => self.count_bad_response(error.kind()),
        }
    }

    fn core_answered(&mut self, now: Now) {
        if let SessionState::Registered { last_ok, core } = &mut self.worker.state {
            *last_ok = now.instant;
            let core = core.clone();
            self.membership.heard(&core, now.instant);
        }
    }

    pub(super) fn on_stream_head(
        &mut self,
        now: Now,
        id: RequestId,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        if self.worker.stream.as_ref().map(|s| s.request) != Some(id) {
            return;
        }
        match result {
            Ok(response) if response.status() == StatusCode::OK => {
                // The head arrived: the body follows through handle_stream_data.
                self.pending.insert(id, Pending::WorkerStream);
                self.core_answered(now);
            }
            Ok(response) => {
                self.worker.stream = None;
                if response.status() == StatusCode::CONFLICT {
                    self.worker_register(now);
                } else {
                    self.count_bad_response(status_error(&response).kind());
                }
            }
            Err(_) => self.worker.stream = None,
        }
    }

    pub(super) fn on_stream_data(&mut self, now: Now, id: RequestId, data: &[u8]) {
        let Some(stream) = self.worker.stream.as_mut().filter(|s| s.request == id) else {
            return;
        };
        let mut frames = Vec::new();
        let mut broken = stream.decoder.push(data).is_err();
        while !broken {
            match stream.decoder.next_frame() {
                Some(Ok(frame)) => frames.push(frame),
                Some(Err(_)) => broken = true,
                None => break,
            }
        }
        for frame in frames {
            self.stats.stream_frames_received += 1;
            match StreamFrame::parse(&frame.event, &frame.data) {
                Ok(StreamFrame::Hello(page)) => {
                    // A hello in pages is gathered, and applied whole once
                    // its last page is in.
                    let Some(stream) = self.worker.stream.as_mut().filter(|s| s.request == id)
                    else {
                        break;
                    };
                    let hello = match stream.hello.take() {
                        Some(mut gathered) => {
                            gathered.members.extend(page.members);
                            gathered.routes.extend(page.routes);
                            gathered.more = page.more;
                            gathered
                        }
                        None => page,
                    };
                    if hello.more {
                        stream.hello = Some(hello);
                        continue;
                    }
                    let changes = self.adopt_records(now, hello.members, true);
                    self.apply_changes(now, changes);
                    self.members_streamed_to(frame.id.as_deref());
                    let replaced = self.replace_routes(hello.routes);
                    broken |= !replaced;
                    if replaced && !self.worker.synced {
                        if let Some(core) = self.worker.registered_core().cloned() {
                            self.worker.synced = true;
                            self.events.push_back(Event::Synced { core });
                        }
                    }
                }
                Ok(StreamFrame::Members(members)) => {
                    let changes = self.adopt_records(now, members, false);
                    self.apply_changes(now, changes);
                    self.members_streamed_to(frame.id.as_deref());
                }
                Ok(StreamFrame::Routes(updates)) => {
                    // The stream is ordered and complete: a gap means it is
                    // not to be trusted, and a new one starts with a snapshot.
                    broken |= !self.apply_route_updates(updates, None).is_empty();
                }
                Ok(StreamFrame::Messages(batch)) => self.take_stream_messages(now, id, batch),
                Ok(StreamFrame::Retained(page)) => self.take_retained_frame(now, page),
                Ok(StreamFrame::Confirms(confirms)) => self.take_confirms_frame(now, confirms),
                Err(_) => broken = true,
            }
        }
        if broken {
            // A corrupt stream is abandoned; the next tick opens a new one and
            // the core closes this one when the new one arrives.
            self.stats.stream_errors += 1;
            self.pending.remove(&id);
            self.worker.stream = None;
        }
    }

    pub(super) fn on_stream_end(&mut self, _now: Now, id: RequestId) {
        if self.worker.stream.as_ref().map(|s| s.request) == Some(id) {
            self.worker.stream = None;
        }
    }

    pub(super) fn worker_leave(&mut self, now: Now) {
        if self.worker.registered_core().is_some() {
            self.send_to_core(
                now,
                Endpoint::Leave,
                encode_json(&LeaveRequest {}),
                Pending::WorkerLeave,
            );
        }
        self.worker.stream = None;
    }

    /// The cluster declared this incarnation dead: come back higher.
    pub(super) fn worker_reincarnate(&mut self, now: Now) {
        self.reincarnate(now);
        self.worker_register(now);
    }
}
