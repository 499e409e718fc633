//! A core answering the cluster API.
//!
//! Every request goes through the same gate, in this order: route, size,
//! signature, body, then the member checks. All checks finish before anything
//! changes, so a refused request leaves the node exactly as it was.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};

use super::{Node, Phase};
use crate::auth::{AuthError, Sender};
use crate::id::{NodeId, Role, StreamId};
use crate::membership::Change;
use crate::time::Now;
use crate::wire::endpoint::RouteError;
use crate::wire::messages::{
    Accepted, AckRequest, ConfirmRequest, ForwardRequest, HeartbeatRequest, HeartbeatResponse,
    LeaveRequest, MemberRecord, MemberState, RegisterRequest, RegisterResponse, RoutesRequest,
    Stamp, StreamFrame, SyncRequest, SyncResponse,
};
use crate::wire::{
    self, check_size, decode_json, error_response, json_response, Endpoint, WireError,
};

/// Why a request was refused. The node's state is unchanged by it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No such path or method.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Too large or malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Missing, wrong, stale or replayed credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The signed sender and the body disagree on who is speaking.
    #[error("request signed by {signed} speaks for {claimed}")]
    IdentityMismatch {
        /// The node that signed.
        signed: NodeId,
        /// The node the body names.
        claimed: NodeId,
    },
    /// The sender is not a registered member (or was declared dead, or is
    /// registered with another core): it must register again.
    #[error("{node} is not registered here: {reason}")]
    NotRegistered {
        /// The sender.
        node: NodeId,
        /// Why.
        reason: &'static str,
    },
    /// The sender's incarnation is older than the one the cluster knows.
    #[error("{node} incarnation {theirs} is stale: the cluster knows {known}")]
    StaleIncarnation {
        /// The sender.
        node: NodeId,
        /// The incarnation it used.
        theirs: u64,
        /// The one the cluster knows.
        known: u64,
    },
    /// A node with this node's own name but another incarnation.
    #[error("the name {node} is taken by this core")]
    NameTaken {
        /// The name.
        node: NodeId,
    },
    /// Only cores talk to cores this way.
    #[error("{endpoint} is for cores; {node} is a worker")]
    CoresOnly {
        /// The endpoint.
        endpoint: &'static str,
        /// The sender.
        node: NodeId,
    },
    /// Workers serve no API.
    #[error("a worker serves no cluster API")]
    NotACore,
    /// A `/sync` carried routes of a member this core has never heard of
    /// (and whose record the sync does not bring): applying them would keep
    /// routes no departure ever removes. The whole sync is refused.
    #[error("routes of {node}, a member this core has never heard of")]
    UnknownRouteOwner {
        /// The member the routes belong to.
        node: NodeId,
    },
    /// The node is leaving, has left, or was rejected.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Retained entries that are well-formed JSON but not valid.
    #[error(transparent)]
    Retained(#[from] crate::wire::retained::RetainedError),
    /// A `GET /explain` that cannot be answered.
    #[error(transparent)]
    Explain(#[from] super::ExplainError),
}

/// The `error` kind of [`RequestError::UnknownRouteOwner`].
pub(super) const UNKNOWN_ROUTE_OWNER: &str = "unknown_route_owner";

impl RequestError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Route(e) => e.status(),
            RequestError::Wire(e) => e.status(),
            RequestError::Auth(e) => e.status(),
            RequestError::IdentityMismatch { .. } => StatusCode::BAD_REQUEST,
            RequestError::NotRegistered { .. }
            | RequestError::StaleIncarnation { .. }
            | RequestError::NameTaken { .. } => StatusCode::CONFLICT,
            RequestError::CoresOnly { .. } => StatusCode::FORBIDDEN,
            RequestError::Retained(_) => StatusCode::BAD_REQUEST,
            RequestError::Explain(e) => e.status(),
            RequestError::NotACore => StatusCode::NOT_FOUND,
            RequestError::UnknownRouteOwner { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            RequestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Short snake_case name, the `error` of the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Route(e) => e.kind(),
            RequestError::Wire(e) => e.kind(),
            RequestError::Auth(e) => e.kind(),
            RequestError::IdentityMismatch { .. } => "identity_mismatch",
            RequestError::NotRegistered { .. } => "not_registered",
            RequestError::StaleIncarnation { .. } => "stale_incarnation",
            RequestError::NameTaken { .. } => "name_taken",
            RequestError::CoresOnly { .. } => "cores_only",
            RequestError::NotACore => "not_a_core",
            RequestError::UnknownRouteOwner { .. } => UNKNOWN_ROUTE_OWNER,
            RequestError::ShuttingDown => "shutting_down",
            RequestError::Retained(_) => "invalid_retained",
            RequestError::Explain(e) => e.kind(),
        }
    }
}

impl Node {
    /// Answers a peer's request. For `GET /stream` the answer is only the
    /// response head: its extensions carry the [`StreamId`] whose body the
    /// runtime then takes from [`Node::poll_stream`].
    pub fn handle_request(&mut self, now: Now, request: Request<Bytes>) -> Response<Bytes> {
        let now = self.advance(now);
        match self.serve(now, &request) {
            Ok(response) => {
                self.stats.requests_accepted += 1;
                self.flush(now);
                response
            }
            Err(error) => {
                *self
                    .stats
                    .requests_refused
                    .entry(error.kind().to_owned())
                    .or_default() += 1;
                error_response(error.status(), error.kind(), error.to_string())
            }
        }
    }

    fn serve(
        &mut self,
        now: Now,
        request: &Request<Bytes>,
    ) -> Result<Response<Bytes>, RequestError> {
        let endpoint = Endpoint::recognise(request.method(), request.uri().path())?;
        if endpoint == Endpoint::Health {
            // Healthy means taking part: a load balancer sends nothing more
            // to a node that is leaving, has left or was refused.
            let (status, text) = match self.phase {
                Phase::Running => (StatusCode::OK, "ok"),
                Phase::Leaving => (StatusCode::SERVICE_UNAVAILABLE, "leaving"),
                Phase::Left => (StatusCode::SERVICE_UNAVAILABLE, "left"),
                Phase::Rejected => (StatusCode::SERVICE_UNAVAILABLE, "rejected"),
            };
            let body = serde_json::json!({ "status": text, "node": self.id });
            let mut response = json_response(&body);
            *response.status_mut() = status;
            return Ok(response);
        }
        if self.role != Role::Core {
            return Err(RequestError::NotACore);
        }
        if endpoint == Endpoint::Metrics {
            let text = self.metrics();
            return Ok(wire::response_with(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                Bytes::from(text),
            ));
        }
        if self.phase != Phase::Running {
            return Err(RequestError::ShuttingDown);
        }
        check_size(request, request.body().len(), self.config.max_body_size)?;
        let sender = self.auth.check(request, now.wall)?;
        let response = self.serve_signed(now, endpoint, &sender, request)?;
        // Only now is the counter used up: a request refused for its body or
        // its sender's membership leaves the replay guard as it was.
        self.auth.accept(&sender);
        Ok(response)
    }

    fn serve_signed(
        &mut self,
        now: Now,
        endpoint: Endpoint,
        sender: &Sender,
        request: &Request<Bytes>,
    ) -> Result<Response<Bytes>, RequestError> {
        let body = request.body();
        match endpoint {
            Endpoint::Register => self.serve_register(now, sender, decode_json(body)?),
            Endpoint::Heartbeat => self.serve_heartbeat(now, sender, decode_json(body)?),
            Endpoint::Sync => self.serve_sync(now, sender, decode_json(body)?),
            Endpoint::Leave => self.serve_leave(now, sender, decode_json(body)?),
            Endpoint::Stream => self.serve_stream(now, sender),
            Endpoint::Routes => {
                let request: RoutesRequest = decode_json(body)?;
                if request.update.node != sender.node
                    || request.update.incarnation != sender.incarnation
                {
                    return Err(RequestError::IdentityMismatch {
                        signed: sender.node.clone(),
                        claimed: request.update.node,
                    });
                }
                self.registered(sender)?;
                self.membership.heard(&sender.node, now.instant);
                Ok(json_response(&self.serve_routes_update(request)))
            }
            Endpoint::Forward => {
                let request: ForwardRequest = decode_json(body)?;
                let role = self.registered(sender)?.role;
                // A worker forwards only what it published itself: a batch
                // speaking for another origin is refused whole, before any
                // of it is relayed.
                if role == Role::Worker {
                    if let Some(forged) = request.messages.iter().find(|m| m.origin != sender.node)
                    {
                        return Err(RequestError::IdentityMismatch {
                            signed: sender.node.clone(),
                            claimed: forged.origin.clone(),
                        });
                    }
                }
                self.membership.heard(&sender.node, now.instant);
                *self
                    .stats
                    .received_from
                    .entry(sender.node.to_string())
                    .or_default() += request.messages.len() as u64;
                Ok(json_response(&self.serve_forward(now, role, request)))
            }
            Endpoint::Ack => {
                let request: AckRequest = decode_json(body)?;
                self.registered(sender)?;
                self.membership.heard(&sender.node, now.instant);
                self.serve_ack(&sender.node, &request);
                Ok(json_response(&Accepted { ok: true }))
            }
            Endpoint::Confirm => {
                let request: ConfirmRequest = decode_json(body)?;
                if self.registered(sender)?.role != Role::Core {
                    return Err(RequestError::CoresOnly {
                        endpoint: endpoint.path(),
                        node: sender.node.clone(),
                    });
                }
                self.membership.heard(&sender.node, now.instant);
                self.serve_confirm(now, request);
                Ok(json_response(&Accepted { ok: true }))
            }
            Endpoint::Retained => self.serve_retained(now, sender, decode_json(body)?),
            Endpoint::Status => Ok(json_response(&self.status())),
            Endpoint::Explain => {
                let query = crate::wire::explain::ExplainQuery::parse(request.uri().query())
                    .map_err(super::ExplainError::from)?;
                Ok(json_response(&self.explain(&query)?))
            }
            Endpoint::Health | Endpoint::Metrics => {
                Err(RequestError::Route(RouteError::NotFound {
                    path: endpoint.path().to_owned(),
                }))
            }
        }
    }

    fn serve_register(
        &mut self,
        now: Now,
        sender: &Sender,
        body: RegisterRequest,
    ) -> Result<Response<Bytes>, RequestError> {
        if body.node != sender.node || body.incarnation != sender.incarnation {
            return Err(RequestError::IdentityMismatch {
                signed: sender.node.clone(),
                claimed: body.node,
            });
        }
        if body.node == self.id {
            // A core that lists itself in `clusters` reaches itself: answer so
            // it can tell, but record nothing.
            if body.incarnation != self.incarnation() {
                return Err(RequestError::NameTaken { node: body.node });
            }
            return Ok(json_response(&self.register_answer(&body.node)));
        }
        if let Some(known) = self.membership.get(&body.node) {
            if known.incarnation > body.incarnation {
                return Err(RequestError::StaleIncarnation {
                    node: body.node,
                    theirs: body.incarnation.0,
                    known: known.incarnation.0,
                });
            }
            if known.incarnation == body.incarnation && known.state.is_gone() {
                return Err(RequestError::NotRegistered {
                    node: body.node,
                    reason:
                        "this incarnation was declared dead or left; register with a higher one",
                });
            }
        }
        let home = match body.role {
            Role::Core => body.node.clone(),
            Role::Worker => self.id.clone(),
        };
        let address = match body.role {
            Role::Core => body.address.clone().or_else(|| {
                self.membership
                    .get(&body.node)
                    .and_then(|r| r.address.clone())
            }),
            Role::Worker => None,
        };
        let wanted = MemberRecord {
            id: body.node.clone(),
            role: body.role,
            incarnation: body.incarnation,
            state: MemberState::Alive,
            home,
            address,
            // `decide` stamps it.
            stamp: Stamp {
                clock: 0,
                by: self.id.clone(),
            },
        };
        let unchanged = self
            .membership
            .get(&body.node)
            .is_some_and(|r| same_but_stamp(r, &wanted));
        if !unchanged {
            let change = self.membership.decide(wanted, now.instant);
            self.publish_decisions(now, vec![change]);
        }
        self.membership.heard(&body.node, now.instant);
        if body.role == Role::Core {
            self.core.learn_core(&body.node, body.address.as_deref());
        }
        Ok(json_response(&self.register_answer(&body.node)))
    }

    /// The answer to a registration: as many members as one body carries,
    /// the core's and the new member's records first, and `partial` if some
    /// were left out.
    fn register_answer(&self, node: &NodeId) -> RegisterResponse {
        let mut members = self.membership.snapshot();
        // A stable sort: these two first, the rest in id order.
        members.sort_by_key(|r| r.id != self.id && r.id != *node);
        let mut answer = RegisterResponse {
            node_id: node.clone(),
            core: self.id.clone(),
            core_incarnation: self.incarnation(),
            members: Vec::new(),
            partial: false,
            members_at: Some(self.membership.version()),
        };
        let room = self.config.max_body_size.saturating_sub(
            wire::paging::json_len(&answer).saturating_add(r#","partial":true"#.len()),
        );
        answer.partial = wire::paging::truncate_to(&mut members, room);
        if answer.partial {
            answer.members_at = None;
        }
        answer.members = members;
        answer
    }

    /// The sender's record, if it is a live member in the incarnation it
    /// signed with.
    pub(super) fn registered(&self, sender: &Sender) -> Result<&MemberRecord, RequestError> {
        let not_registered = |reason| RequestError::NotRegistered {
            node: sender.node.clone(),
            reason,
        };
        let record = self
            .membership
            .get(&sender.node)
            .ok_or_else(|| not_registered("unknown member"))?;
        if record.incarnation > sender.incarnation {
            return Err(RequestError::StaleIncarnation {
                node: sender.node.clone(),
                theirs: sender.incarnation.0,
                known: record.incarnation.0,
            });
        }
        if record.incarnation < sender.incarnation {
            return Err(not_registered("new incarnation"));
        }
        if record.state.is_gone() {
            return Err(not_registered("declared dead or left"));
        }
        if record.role == Role::Worker && record.home != self.id {
            return Err(not_registered("registered with another core"));
        }
        Ok(record)
    }

    fn serve_heartbeat(
        &mut self,
        now: Now,
        sender: &Sender,
        body: HeartbeatRequest,
    ) -> Result<Response<Bytes>, RequestError> {
        let record = self.registered(sender)?;
        let role = record.role;
        let from_core = role == Role::Core;
        let recovered =
            (record.role == Role::Worker && record.state == MemberState::Suspect).then(|| {
                MemberRecord {
                    state: MemberState::Alive,
                    ..record.clone()
                }
            });
        self.membership.heard(&sender.node, now.instant);
        if let Some(record) = recovered {
            let change = self.membership.decide(record, now.instant);
            self.publish_decisions(now, vec![change]);
        }
        let digest = self.membership.digest();
        if from_core {
            self.convergence
                .heard_digest(&sender.node, &body.members_digest);
            self.convergence
                .heard_routes_behind(&sender.node, body.routes_behind);
        }
        let member_answer =
            self.member_answer(&sender.node, role, body.members_seen, &body.members_digest);
        // Only cores repair routes this way: a worker's stream is ordered
        // and complete, and a broken one is replaced with a fresh snapshot.
        let (routes_held, routes_wanted) = if from_core {
            (
                self.routes_held_of(&sender.node, sender.incarnation),
                self.routes_wanted_from(&sender.node),
            )
        } else {
            (None, Vec::new())
        };
        if !from_core {
            self.retained_heard_worker(&sender.node, &body.retained_digest);
        }
        let mut answer = HeartbeatResponse {
            members_digest: digest,
            members: member_answer.members,
            member_changes: member_answer.member_changes,
            members_at: member_answer.members_at,
            routes_held,
            routes_wanted,
            retained_digest: self.retained_digest_for_peers(),
            cores_differing: if from_core {
                Vec::new()
            } else {
                self.convergence.status().differing
            },
        };
        self.fit_heartbeat_answer(&sender.node, from_core, &mut answer);
        Ok(json_response(&answer))
    }

    fn serve_sync(
        &mut self,
        now: Now,
        sender: &Sender,
        body: SyncRequest,
    ) -> Result<Response<Bytes>, RequestError> {
        // Any known core may sync, even one this core declared dead or one
        // with a newer incarnation: its records are how it refutes.
        let known =
            self.membership
                .get(&sender.node)
                .ok_or_else(|| RequestError::NotRegistered {
                    node: sender.node.clone(),
                    reason: "unknown member",
                })?;
        if known.role != Role::Core {
            return Err(RequestError::CoresOnly {
                endpoint: Endpoint::Sync.path(),
                node: sender.node.clone(),
            });
        }
        if known.incarnation > sender.incarnation {
            return Err(RequestError::StaleIncarnation {
                node: sender.node.clone(),
                theirs: sender.incarnation.0,
                known: known.incarnation.0,
            });
        }
        // Routes come only for members the cluster knows: this core, or the
        // sync brings their records.
        let unknown = body.routes.iter().find(|u| {
            self.membership.get(&u.node).is_none() && !body.members.iter().any(|m| m.id == u.node)
        });
        if let Some(update) = unknown {
            return Err(RequestError::UnknownRouteOwner {
                node: update.node.clone(),
            });
        }
        let changes = self.merge_records(now, body.members);
        self.membership.heard(&sender.node, now.instant);
        self.apply_changes(now, changes);
        let resync = self.apply_route_updates(body.routes, Some(&sender.node));
        if resync.is_empty() && body.routes_for == Some(self.incarnation()) {
            self.routes_synced_to(&sender.node, sender.incarnation, body.routes_at);
        }
        Ok(json_response(&SyncResponse {
            members_digest: self.membership.digest(),
            resync,
        }))
    }

    fn serve_leave(
        &mut self,
        now: Now,
        sender: &Sender,
        _body: LeaveRequest,
    ) -> Result<Response<Bytes>, RequestError> {
        let record = self.registered(sender)?;
        let left = MemberRecord {
            state: MemberState::Left,
            ..record.clone()
        };
        let change = self.membership.decide(left, now.instant);
        self.publish_decisions(now, vec![change]);
        Ok(json_response(&Accepted { ok: true }))
    }

    fn serve_stream(&mut self, now: Now, sender: &Sender) -> Result<Response<Bytes>, RequestError> {
        let record = self.registered(sender)?;
        if record.role != Role::Worker {
            return Err(RequestError::NotRegistered {
                node: sender.node.clone(),
                reason: "only workers open a stream",
            });
        }
        self.membership.heard(&sender.node, now.instant);
        let (stream, replaced) = self.core.open_stream(&sender.node);
        if let Some(old) = replaced {
            self.stream_output
                .push_back(super::StreamOutput::Close { stream: old });
        }
        // Whatever the old stream had not acknowledged goes out again here.
        self.rewind_stream_link(now, &sender.node);
        let hello = self.hello_frames();
        self.push_frames_with_position(&[stream], hello);
        self.retained_after_hello(&sender.node, stream);
        let mut response = wire::response_with(StatusCode::OK, "text/event-stream", Bytes::new());
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        response.extensions_mut().insert(stream);
        Ok(response)
    }

    /// Queues one frame for one stream.
    pub(super) fn push_frame(&mut self, stream: StreamId, frame: &StreamFrame) {
        self.push_frame_bytes(stream, Node::frame(frame));
    }

    /// Queues an already framed SSE frame for `stream`.
    pub(super) fn push_frame_bytes(&mut self, stream: StreamId, bytes: Bytes) {
        self.stats.stream_frames_sent += 1;
        self.stream_output
            .push_back(super::StreamOutput::Data { stream, bytes });
    }

    /// Merges records from a peer, refusing none: each is a plain value whose
    /// fields serde has already checked.
    /// A worker takes its core's records as they are; `complete` says they
    /// are the core's whole list, so members missing from it are gone.
    pub(super) fn adopt_records(
        &mut self,
        now: Now,
        records: Vec<MemberRecord>,
        complete: bool,
    ) -> Vec<Change> {
        if complete {
            let keep: std::collections::BTreeSet<NodeId> =
                records.iter().map(|r| r.id.clone()).collect();
            self.membership.retain_only(&keep);
        }
        records
            .into_iter()
            .filter_map(|r| self.membership.adopt(r, now.instant))
            .collect()
    }

    pub(super) fn merge_records(&mut self, now: Now, records: Vec<MemberRecord>) -> Vec<Change> {
        records
            .into_iter()
            .filter_map(|r| self.membership.merge(r, now.instant))
            .collect()
    }
}

fn same_but_stamp(a: &MemberRecord, b: &MemberRecord) -> bool {
    a.id == b.id
        && a.role == b.role
        && a.incarnation == b.incarnation
        && a.state == b.state
        && a.home == b.home
        && a.address == b.address
}
