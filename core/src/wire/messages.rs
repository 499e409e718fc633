//! The JSON bodies of protocol v1 (DESIGN §4).
//!
//! Every body is a plain serde type; field names are camelCase on the wire.
//! Unknown fields are refused so that a peer speaking a different dialect is
//! told at once instead of being half understood.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{Incarnation, NodeId, Role};
use crate::routing::{Subscription, TopicName};

/// A member's place in the failure detector's life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heard from recently.
    Alive,
    /// Missed heartbeats for longer than `suspectTimeout`.
    Suspect,
    /// Missed heartbeats for longer than `deadTimeout`; its routes are gone.
    Dead,
    /// Departed gracefully; its routes are gone.
    Left,
}

impl MemberState {
    /// Dead or left: the member no longer takes part in this incarnation.
    pub fn is_gone(self) -> bool {
        matches!(self, MemberState::Dead | MemberState::Left)
    }
}

/// Orders concurrent changes to one member's record: a Lamport clock and the
/// core that made the change, so that every core picks the same winner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// Lamport time of the change.
    pub clock: u64,
    /// The core that made it.
    pub by: NodeId,
}

/// One member as the cluster agrees on it. Cores exchange these records and
/// keep, per node, the one with the highest `(incarnation, stamp)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberRecord {
    /// The member.
    pub id: NodeId,
    /// Core or worker.
    pub role: Role,
    /// The member's incarnation this record speaks of.
    pub incarnation: Incarnation,
    /// Its state in that incarnation.
    pub state: MemberState,
    /// The core responsible for detecting its failure (a core is its own).
    pub home: NodeId,
    /// Where a core can be reached (`http://host:port`); workers have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Which change this is.
    pub stamp: Stamp,
}

impl MemberRecord {
    /// Whether `self` supersedes `other` (records of the same member).
    pub fn supersedes(&self, other: &MemberRecord) -> bool {
        (self.incarnation, &self.stamp) > (other.incarnation, &other.stamp)
    }
}

/// A place in one node's log of member-list changes: that node's
/// incarnation and the number of changes it had installed
/// ([`crate::membership::Membership::version`]). A peer that holds every
/// change up to a position quotes it to be sent only what came after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPosition {
    /// The incarnation of the node whose log this is: a position from
    /// another life of that node means nothing to it.
    pub incarnation: Incarnation,
    /// Changes installed up to here.
    pub version: u64,
}

/// `POST /register`: a node asks a core to be let in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// The node's id (its name).
    pub node: NodeId,
    /// The role it runs.
    pub role: Role,
    /// Its current incarnation.
    pub incarnation: Incarnation,
    /// For a core: the URL other cores reach it at, if it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The answer to a successful registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterResponse {
    /// The id the node is known by from now on.
    pub node_id: NodeId,
    /// The core that answered (a core that reaches itself learns so here).
    pub core: NodeId,
    /// That core's incarnation.
    pub core_incarnation: Incarnation,
    /// Every member the core knows, the new one included, the core's and
    /// the new member's records first; only as many as one body carries
    /// when `partial` is set.
    pub members: Vec<MemberRecord>,
    /// `members` is not the whole list: the rest did not fit one body, and
    /// follows on a worker's stream hello or in a core's next syncs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
    /// The core's log position `members` brings the node to (with
    /// `coreIncarnation`); absent when `partial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_at: Option<u64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// `POST /heartbeat`: I am alive, and this is the member list I hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Digest of the sender's member list ([`crate::membership::Membership::digest`]).
    pub members_digest: String,
    /// Digest of the sender's retained set
    /// ([`crate::retained::RetainedSet::digest`]; `-` if it keeps none).
    /// Omitted while the set is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retained_digest: String,
    /// How far the sender holds the receiver's log of member changes (the
    /// `membersAt` of the receiver's last answer it merged, or a worker's
    /// stream position): the receiver answers with the changes after it
    /// instead of its whole list. Sent only when it moved since the
    /// receiver last answered a heartbeat that carried it; the receiver
    /// keeps the last one it heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_seen: Option<LogPosition>,
    /// For a core's heartbeat to a core: the receiver does not yet hold
    /// every change of the sender's route log, as far as the sender knows
    /// (the receiver's `routesHeld`, or the syncs it answered). Sent only
    /// when true: the receiver is then not converged with the sender.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub routes_behind: bool,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatResponse {
    /// Digest of the receiver's member list.
    pub members_digest: String,
    /// The receiver's full member list, sent only when the digests differ
    /// and the sender quoted no position the receiver can answer from (it is
    /// new, fell too far behind, or the receiver restarted): a resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberRecord>>,
    /// The records changed since the sender's `membersSeen`, sent instead of
    /// `members` when the digests differ and the position is one the
    /// receiver can answer from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_changes: Option<Vec<MemberRecord>>,
    /// The receiver's log position once the sender merged `members` or
    /// `memberChanges` (or at once, when the digests agree): what the
    /// sender quotes as `membersSeen` next time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_at: Option<LogPosition>,
    /// For a core's heartbeat: how far the receiver holds the sender's log
    /// of its own route changes (the `routesAt` of the last sync it took
    /// whole; absent if it holds none of this incarnation's). The sender
    /// pushes the changes after it, or all its routes if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_held: Option<u64>,
    /// For a core's heartbeat: members whose home is the sender and whose
    /// routes the receiver dropped when they died, then saw come back in
    /// the same incarnation; the sender pushes their snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes_wanted: Vec<NodeId>,
    /// Digest of the receiver's retained set, as in
    /// [`HeartbeatRequest::retained_digest`]: a sender that holds another
    /// sends its whole set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retained_digest: String,
    /// For a worker's heartbeat: the cores whose view the receiver's own
    /// differs from, or has not heard (its `convergence.differing`); absent
    /// when it agrees with every core. A worker agrees with the cores its
    /// core agrees with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cores_differing: Vec<NodeId>,
}

impl HeartbeatResponse {
    /// The member records the answer brings, whole list or changes, taken
    /// out of it (an answer carries one or the other).
    pub fn take_members(&mut self) -> Option<Vec<MemberRecord>> {
        self.members.take().or_else(|| self.member_changes.take())
    }
}

/// `POST /sync`: member records from one core to another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRequest {
    /// Changed records (every record, when the receiver's digest differed
    /// from the sender's): merged record by record either way.
    pub members: Vec<MemberRecord>,
    /// Route updates of members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteUpdate>,
    /// The position in the sender's log of its own route changes (its
    /// routes and its workers') that the receiver holds once it took this
    /// sync without a gap: every earlier change was in this sync or in one
    /// taken before. Only on a sync sent in one body with nothing else
    /// waiting behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_at: Option<u64>,
    /// The receiver's incarnation `routesAt` was counted for: a receiver
    /// that restarted since took none of the earlier changes, and ignores
    /// `routesAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_for: Option<Incarnation>,
}

/// The answer to a sync: the receiver's digest after merging, so the sender
/// knows whether the two now agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncResponse {
    /// Digest of the receiver's member list after the merge.
    pub members_digest: String,
    /// Members whose route updates did not follow on from what the receiver
    /// holds: the sender should send their snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resync: Vec<NodeId>,
}

/// `POST /leave`: the sender departs for good (this incarnation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaveRequest {}

/// The body of a `200` that carries nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// Always true.
    pub ok: bool,
}

/// What a core pushes to a worker over `GET /stream`, one SSE frame each.
/// The SSE event name is the variant's name ([`StreamFrame::event_name`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamHello {
    /// The core feeding the stream.
    pub core: NodeId,
    /// Every member the core knows.
    pub members: Vec<MemberRecord>,
    /// A snapshot of every member's routes.
    #[serde(default)]
    pub routes: Vec<RouteUpdate>,
    /// More hello frames follow, each with more of the members and routes:
    /// the whole picture did not fit one frame. The picture is complete
    /// with the first hello frame without `more`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
}

/// The SSE event name of [`StreamFrame::Messages`].
pub const MESSAGES_EVENT: &str = "messages";

/// One frame of the push stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// First frame: the full picture.
    Hello(StreamHello),
    /// Member records that changed.
    Members(Vec<MemberRecord>),
    /// Route updates.
    Routes(Vec<RouteUpdate>),
    /// Messages for the worker; acknowledge with `POST /ack`.
    Messages(MessageBatch),
    /// Entries of the core's retained set, to merge.
    Retained(super::retained::RetainedRequest),
    /// Confirmations of messages this worker published.
    Confirms(ConfirmRequest),
}

impl StreamFrame {
    /// The SSE event name of this frame.
    pub fn event_name(&self) -> &'static str {
        match self {
            StreamFrame::Hello(_) => "hello",
            StreamFrame::Members(_) => "members",
            StreamFrame::Routes(_) => "routes",
            StreamFrame::Messages(_) => MESSAGES_EVENT,
            StreamFrame::Retained(_) => super::retained::RETAINED_EVENT,
            StreamFrame::Confirms(_) => CONFIRMS_EVENT,
        }
    }

    /// The frame's JSON data.
    pub fn to_json(&self) -> String {
        let encoded = match self {
            StreamFrame::Hello(hello) => serde_json::to_string(hello),
            StreamFrame::Members(members) => serde_json::to_string(members),
            StreamFrame::Routes(routes) => serde_json::to_string(routes),
            StreamFrame::Messages(batch) => serde_json::to_string(batch),
            StreamFrame::Retained(page) => serde_json::to_string(page),
            StreamFrame::Confirms(confirms) => serde_json::to_string(confirms),
        };
        // Serialising these plain structs cannot fail; an empty object keeps
        // the stream well-formed should it ever do so.
        encoded.unwrap_or_else(|_| String::from("{}"))
    }

    /// The whole SSE frame: [`event_name`](Self::event_name) and the JSON
    /// of [`to_json`](Self::to_json), serialised straight into the frame.
    pub fn to_sse(&self) -> Bytes {
        let event = self.event_name();
        match self {
            StreamFrame::Hello(hello) => super::sse::encode_json(event, hello),
            StreamFrame::Members(members) => super::sse::encode_json(event, members),
            StreamFrame::Routes(routes) => super::sse::encode_json(event, routes),
            StreamFrame::Retained(page) => super::sse::encode_json(event, page),
            StreamFrame::Confirms(confirms) => super::sse::encode_json(event, confirms),
            StreamFrame::Messages(batch) => {
                let expected = batch
                    .messages
                    .iter()
                    .map(ForwardedMessage::json_len_hint)
                    .sum();
                super::sse::encode_json_with(event, expected, |out| {
                    super::batch_json::write_message_batch(out, batch.batch, batch.messages.iter());
                })
            }
        }
    }

    /// Parses a frame from its SSE event name and data.
    pub fn parse(event: &str, data: &str) -> Result<StreamFrame, super::WireError> {
        match event {
            "hello" => Ok(StreamFrame::Hello(super::decode_json_str(data)?)),
            "members" => Ok(StreamFrame::Members(super::decode_json_str(data)?)),
            "routes" => Ok(StreamFrame::Routes(super::decode_json_str(data)?)),
            MESSAGES_EVENT => Ok(StreamFrame::Messages(super::decode_json_str(data)?)),
            super::retained::RETAINED_EVENT => {
                Ok(StreamFrame::Retained(super::decode_json_str(data)?))
            }
            CONFIRMS_EVENT => Ok(StreamFrame::Confirms(super::decode_json_str(data)?)),
            other => Err(super::WireError::UnknownFrame {
                event: other.chars().take(64).collect(),
            }),
        }
    }
}

/// Which routes of one member a node holds: the member's incarnation and the
/// sequence number of its last route update.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteVersion {
    /// The member.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// Its last route update.
    pub seq: u64,
}

/// What a route update changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RouteChange {
    /// Filters added and removed since update `prev`.
    Delta {
        /// The update this one follows.
        prev: u64,
        /// Subscriptions the member gained.
        #[serde(default)]
        add: Vec<Subscription>,
        /// Subscriptions the member lost.
        #[serde(default)]
        remove: Vec<Subscription>,
    },
    /// Every subscription the member holds.
    Snapshot {
        /// The subscriptions.
        routes: Vec<Subscription>,
    },
    /// One part of a snapshot too large for one body. Parts `0, 1, …` of
    /// one version follow each other in order, the last with `last` set;
    /// the receiver gathers them and applies the whole snapshot when the
    /// last is in. A part out of turn is a gap.
    SnapshotPart {
        /// The part's number, from 0.
        part: u32,
        /// Whether this part ends the snapshot.
        last: bool,
        /// The subscriptions of this part.
        routes: Vec<Subscription>,
    },
}

/// A change to one member's routes, numbered per member and incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteUpdate {
    /// The member whose routes these are.
    pub node: NodeId,
    /// Its incarnation.
    pub incarnation: Incarnation,
    /// The update's number: the member's route version after it.
    pub seq: u64,
    /// The change.
    pub change: RouteChange,
}

/// `POST /routes`: a member's own route update, to its core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutesRequest {
    /// The update.
    pub update: RouteUpdate,
}

/// The answer to `POST /routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutesResponse {
    /// The route version the core now holds for the sender.
    pub seq: u64,
    /// The update did not follow on from what the core holds: send a
    /// snapshot.
    #[serde(default)]
    pub resync: bool,
}

/// MQTT quality of service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    /// 0: at most once; sent once, never retried.
    #[default]
    AtMostOnce,
    /// 1: at least once; retried until acknowledged.
    AtLeastOnce,
    /// 2: exactly once; retried and deduplicated like QoS 1.
    ExactlyOnce,
}

impl Qos {
    /// The QoS for an MQTT number.
    pub fn from_u8(level: u8) -> Option<Qos> {
        match level {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }

    /// The MQTT number.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl Serialize for Qos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let level = u8::deserialize(d)?;
        Qos::from_u8(level)
            .ok_or_else(|| serde::de::Error::custom(format!("qos {level} is not 0, 1 or 2")))
    }
}

/// Where one copy of a forwarded message goes, and its number in the
/// sequence of messages from its origin to that node (for deduplication
/// and ordering at the receiver).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The destination node.
    pub node: NodeId,
    /// Sequence number from the origin to this destination, from 1.
    pub seq: u64,
}

/// A published message on its way across the cluster.
///
/// Deserialised by hand ([`super::batch_json`]), with the same rules as a
/// derived `deny_unknown_fields` struct: every field but `retain` and
/// `properties` required, none repeated, none unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedMessage {
    /// The node it was published on.
    pub origin: NodeId,
    /// The incarnation the origin's process started with: the sequence
    /// numbers of its targets run for the life of that process.
    pub incarnation: Incarnation,
    /// The topic.
    pub topic: TopicName,
    /// The payload, base64 on the wire.
    #[serde(serialize_with = "base64_bytes::serialize")]
    pub payload: Bytes,
    /// Quality of service.
    pub qos: Qos,
    /// The MQTT retain flag, kept across the hop.
    #[serde(default)]
    pub retain: bool,
    /// MQTT 5 properties, carried opaquely (base64 on the wire).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "base64_opt_bytes::serialize"
    )]
    pub properties: Option<Bytes>,
    /// The nodes it goes to from here.
    pub targets: Vec<Target>,
}

impl ForwardedMessage {
    /// Roughly how many bytes of JSON this message takes (a little more
    /// rather than less), to size buffers before serialising batches.
    pub fn json_len_hint(&self) -> usize {
        let base64 = |n: usize| n.div_ceil(3).saturating_mul(4);
        let targets: usize = self
            .targets
            .iter()
            .map(|t| t.node.as_str().len().saturating_add(40))
            .sum();
        base64(self.payload.len())
            .saturating_add(self.properties.as_ref().map_or(0, |p| base64(p.len()) + 16))
            .saturating_add(self.topic.as_str().len())
            .saturating_add(self.origin.as_str().len())
            .saturating_add(targets)
            .saturating_add(120)
    }
}

impl<'de> Deserialize<'de> for ForwardedMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut recent = super::batch_json::Recent::default();
        serde::de::DeserializeSeed::deserialize(super::batch_json::MessageSeed(&mut recent), d)
    }
}

/// `POST /forward`: messages from a node to a core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardRequest {
    /// The messages, in order.
    #[serde(deserialize_with = "batch_messages")]
    pub messages: Vec<ForwardedMessage>,
}

/// The messages of a batch, decoded with one shared name cache.
fn batch_messages<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ForwardedMessage>, D::Error> {
    serde::de::DeserializeSeed::deserialize(super::batch_json::MessagesSeed, d)
}

/// The answer to `POST /forward`: the whole batch was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardResponse {
    /// How many messages were taken.
    pub accepted: usize,
}

/// Messages pushed over a worker's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageBatch {
    /// The batch's number on this stream's link; acknowledging it
    /// acknowledges every batch before it too.
    pub batch: u64,
    /// The messages, in order.
    #[serde(deserialize_with = "batch_messages")]
    pub messages: Vec<ForwardedMessage>,
}

/// `POST /ack`: a worker acknowledges what arrived over its stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AckRequest {
    /// Every batch up to this number arrived.
    pub through: u64,
}

/// A destination took messages from one origin for local delivery: the
/// copies numbered `from..=through` for `to`, sent by `origin` in its
/// incarnation `incarnation`. The core that saw the destination take them
/// (the destination itself, or the core feeding its stream once the stream
/// batches were acknowledged) sends it back towards the origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Confirmation {
    /// The node the messages were published on.
    pub origin: NodeId,
    /// The origin's incarnation the messages carry.
    pub incarnation: Incarnation,
    /// The destination that took them.
    pub to: NodeId,
    /// The first sequence number taken.
    pub from: u64,
    /// The last sequence number taken (at least `from`).
    pub through: u64,
}

impl Confirmation {
    /// Extends this confirmation by copy `seq`, if it continues it; returns
    /// whether it did.
    pub fn absorb(
        &mut self,
        origin: &NodeId,
        incarnation: Incarnation,
        to: &NodeId,
        seq: u64,
    ) -> bool {
        let continues = self.through.checked_add(1) == Some(seq)
            && self.incarnation == incarnation
            && self.to == *to
            && self.origin == *origin;
        if continues {
            self.through = seq;
        }
        continues
    }

    /// Extends this confirmation by `next`, if `next` continues it.
    pub fn absorb_range(&mut self, next: &Confirmation) -> bool {
        let continues = self.through.checked_add(1) == Some(next.from)
            && self.incarnation == next.incarnation
            && self.to == next.to
            && self.origin == next.origin;
        if continues {
            self.through = next.through;
        }
        continues
    }
}

/// `POST /confirm` (core to core) and the `confirms` stream frame (core to
/// worker): confirmations on their way to the messages' origins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The confirmations, in the order they were made.
    pub confirms: Vec<Confirmation>,
}

/// The SSE event name of [`StreamFrame::Confirms`].
pub const CONFIRMS_EVENT: &str = "confirms";

/// Base64 on the wire; decoding is in [`super::batch_json`].
mod base64_bytes {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

mod base64_opt_bytes {
    use bytes::Bytes;
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(bytes: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::base64_bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }
}
