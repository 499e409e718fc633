//! Member lists and routing tables sent in pages that fit the receiver's
//! body limit.
//!
//! Every node of a cluster is meant to have the same `maxBodySize` (the
//! README says so); a node cuts what it sends to fit its own. Members are
//! independent records and route updates independent updates, so any page
//! can be applied on its own: `/sync` pages are separate requests, stream
//! pages separate frames, and only a worker's hello, which replaces its
//! whole picture, is gathered until its last page. One member's routes too
//! many for one body go as a snapshot in parts
//! ([`RouteChange::SnapshotPart`]), which receivers gather.
//!
//! Not paged: a worker's own route update to its core (`POST /routes`)
//! is one body, so one node's own subscriptions must fit `maxBodySize`
//! (about 100 000 filters of 30 bytes with the default 4 MiB).

use super::outbox::SyncPayload;
use super::{Node, Pending};
use crate::id::{NodeId, StreamId};
use crate::time::Now;
use crate::wire::messages::{
    HeartbeatResponse, MemberRecord, RouteChange, RouteUpdate, StreamFrame, StreamHello,
    SyncRequest,
};
use crate::wire::paging::{items_len, json_len, pages};
use crate::wire::{encode_json, sse, Endpoint};

/// Bytes a stream frame counts besides its JSON data: `event: ` and
/// `data: ` (the decoder counts the bytes of the lines, not their ends).
const FRAME_HEAD: usize = "event: ".len() + "data: ".len();
/// The `id: {version}\n` line the last page of a `members` or `hello`
/// frame carries: its position in the core's log of member changes.
const POSITION_LINE: usize = "id: ".len() + 20 + 1;

/// Room kept for fields an empty list leaves out of a body (a skipped
/// `"routes":[]`, a `"partial":true`), so that a measured envelope is an
/// upper bound.
const SKIPPED_FIELDS: usize = 32;

impl Node {
    /// Room for list items in a body whose other parts take `envelope`
    /// bytes.
    fn body_room(&self, envelope: usize) -> usize {
        self.config
            .max_body_size
            .saturating_sub(envelope.saturating_add(SKIPPED_FIELDS))
    }

    /// Room for the JSON data of a stream frame of `event`.
    fn frame_room(&self, event: &str) -> usize {
        self.config
            .max_body_size
            .saturating_sub(FRAME_HEAD.saturating_add(event.len()))
    }

    /// Route updates with each one too large for `room` bytes replaced by
    /// a snapshot of the same version in parts that fit: a snapshot is
    /// cut as it is, a delta is replaced by this node's snapshot of the
    /// member if it holds exactly the version the delta brings it to (the
    /// same routes, told whole), and left as it is otherwise (a receiver
    /// that refuses it finds a gap and asks for a snapshot, which is cut).
    fn split_large_updates(&self, updates: Vec<RouteUpdate>, room: usize) -> Vec<RouteUpdate> {
        let mut out = Vec::with_capacity(updates.len());
        for update in updates {
            if json_len(&update) <= room {
                out.push(update);
                continue;
            }
            let routes = match update.change {
                RouteChange::Snapshot { routes } => routes,
                RouteChange::Delta { .. }
                    if self.routes.version_of(&update.node)
                        == Some((update.incarnation, update.seq)) =>
                {
                    self.routes.routes_of(&update.node)
                }
                _ => {
                    out.push(update);
                    continue;
                }
            };
            let part = |part, last, routes| RouteUpdate {
                node: update.node.clone(),
                incarnation: update.incarnation,
                seq: update.seq,
                change: RouteChange::SnapshotPart { part, last, routes },
            };
            let envelope = json_len(&part(u32::MAX, false, Vec::new()));
            let parts = pages(routes, room.saturating_sub(envelope));
            let count = parts.len();
            if count == 0 {
                out.push(part(0, true, Vec::new()));
            }
            for (i, routes) in parts.into_iter().enumerate() {
                let number = u32::try_from(i).unwrap_or(u32::MAX);
                out.push(part(number, i + 1 == count, routes));
            }
        }
        out
    }

    /// Sends member records and route updates to another core with `/sync`,
    /// in as many requests as needed for each to fit one body: members
    /// first, then routes, each list in order.
    pub(super) fn send_sync_pages(
        &mut self,
        now: Now,
        peer: &NodeId,
        payload: SyncPayload,
    ) -> usize {
        let Some(url) = self.peer_address(peer) else {
            return 0;
        };
        let SyncPayload {
            members,
            routes,
            routes_at,
        } = payload;
        let envelope = json_len(&SyncRequest {
            routes_at: Some(u64::MAX),
            routes_for: Some(crate::id::Incarnation(u64::MAX)),
            ..SyncRequest::default()
        });
        let room = self.body_room(envelope);
        let routes = self.split_large_updates(routes, room);
        let mut bodies: Vec<SyncRequest> = pages(members, room)
            .into_iter()
            .map(|members| SyncRequest {
                members,
                ..SyncRequest::default()
            })
            .collect();
        bodies.extend(pages(routes, room).into_iter().map(|routes| SyncRequest {
            routes,
            ..SyncRequest::default()
        }));
        if bodies.is_empty() {
            bodies.push(SyncRequest::default());
        }
        // Pages are separate requests that may be taken in any order, or
        // one lost: only a sync in one body says how far it brings the peer.
        if let ([only], Some((incarnation, version))) = (bodies.as_mut_slice(), routes_at) {
            only.routes_at = Some(version);
            only.routes_for = Some(incarnation);
        }
        let pages = bodies.len();
        for body in bodies {
            self.send(
                now,
                &url,
                Some(peer.clone()),
                Endpoint::Sync,
                encode_json(&body),
                Pending::CoreSync { peer: peer.clone() },
            );
        }
        pages
    }

    /// The hello frames of a new stream: the core's member list and every
    /// member's routes, members first, in as many frames as needed for each
    /// to fit; every frame but the last says `more`.
    pub(super) fn hello_frames(&self) -> Vec<StreamFrame> {
        let hello = |members, routes| StreamHello {
            core: self.id.clone(),
            members,
            routes,
            more: true,
        };
        let envelope = json_len(&hello(Vec::new(), Vec::new()));
        let room = self
            .frame_room("hello")
            .saturating_sub(envelope.saturating_add(SKIPPED_FIELDS + POSITION_LINE));
        let mut frames: Vec<StreamHello> = pages(self.membership.snapshot(), room)
            .into_iter()
            .map(|members| hello(members, Vec::new()))
            .collect();
        let snapshots = self.split_large_updates(self.routes.snapshots(), room);
        frames.extend(
            pages(snapshots, room)
                .into_iter()
                .map(|routes| hello(Vec::new(), routes)),
        );
        if frames.is_empty() {
            frames.push(hello(Vec::new(), Vec::new()));
        }
        if let Some(last) = frames.last_mut() {
            last.more = false;
        }
        frames.into_iter().map(StreamFrame::Hello).collect()
    }

    /// Pushes member records to `streams`, in as many `members` frames as
    /// needed for each to fit.
    pub(super) fn push_member_frames(&mut self, streams: &[StreamId], records: Vec<MemberRecord>) {
        let room = self.frame_room("members").saturating_sub(2 + POSITION_LINE);
        let frames = pages(records, room)
            .into_iter()
            .map(StreamFrame::Members)
            .collect();
        self.push_frames_with_position(streams, frames);
    }

    /// Pushes `frames` to `streams`, in order, the last one with an `id:`
    /// line: this core's member-log version, which the worker then holds
    /// (every change this core installed is on the stream by then).
    pub(super) fn push_frames_with_position(
        &mut self,
        streams: &[StreamId],
        frames: Vec<StreamFrame>,
    ) {
        let last = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            let bytes = if i + 1 == last {
                sse::encode_with_id(
                    frame.event_name(),
                    self.membership.version(),
                    &frame.to_json(),
                )
            } else {
                frame.to_sse()
            };
            for stream in streams {
                self.push_frame_bytes(*stream, bytes.clone());
            }
        }
    }

    /// Pushes route updates to `streams`, in order, in as many `routes`
    /// frames as needed for each to fit.
    pub(super) fn push_route_frames(&mut self, streams: &[StreamId], updates: Vec<RouteUpdate>) {
        let room = self.frame_room("routes").saturating_sub(2);
        let updates = self.split_large_updates(updates, room);
        for page in pages(updates, room) {
            let frame = StreamFrame::Routes(page);
            for stream in streams {
                self.push_frame(*stream, &frame);
            }
        }
    }

    /// Trims a heartbeat answer to one body. The member list, if it does
    /// not fit, is left out and sent another way: to a core as `/sync`
    /// pages (with its next coalesced sync), to a worker as
    /// `members` frames on its stream. Route versions are trimmed to what
    /// fits: a core that misses some of them sends snapshots of those
    /// members, which the receiver takes as duplicates, so the answer stays
    /// correct, only longer to act on.
    pub(super) fn fit_heartbeat_answer(
        &mut self,
        to: &NodeId,
        from_core: bool,
        answer: &mut HeartbeatResponse,
    ) {
        let envelope = json_len(&HeartbeatResponse {
            members_digest: answer.members_digest.clone(),
            members: Some(Vec::new()),
            member_changes: None,
            members_at: answer.members_at,
            routes_held: answer.routes_held,
            routes_wanted: answer.routes_wanted.clone(),
            retained_digest: answer.retained_digest.clone(),
            cores_differing: answer.cores_differing.clone(),
        });
        let room = self.body_room(envelope);
        let members = answer.members.as_deref().map_or(0, items_len)
            + answer.member_changes.as_deref().map_or(0, items_len);
        if members <= room {
            return;
        }
        if let Some(records) = answer.take_members() {
            // Not merged from this answer: the sender keeps its position,
            // and the records come the other way.
            answer.members_at = None;
            if from_core {
                // Through the outbox, so that it goes with the peer's next
                // coalesced sync, in pages, and never beside one in flight.
                self.sync_outbox.push_members(to, records);
            } else if let Some(stream) = self.core.stream_of(to) {
                self.push_member_frames(&[stream], records);
            }
        }
    }
}
