//! The JSON bodies of protocol v1 (DESIGN §4).
//!
//! Every body is a plain serde type; field names are camelCase on the wire.
//! Unknown fields are refused so that a peer speaking a different dialect is
//! told at once instead of being half understood.

use serde::{Deserialize, Serialize};

use crate::id::{Incarnation, NodeId, Role};

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

/// Timing every member of the cluster should agree on, sent at registration
/// so that a worker's failover matches its core's failure detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSettings {
    /// Heartbeat period in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a member is suspect, in milliseconds.
    pub suspect_timeout_ms: u64,
    /// Silence after which a member is dead, in milliseconds.
    pub dead_timeout_ms: u64,
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
    /// The cluster's timing.
    pub settings: ClusterSettings,
    /// Every member the core knows, the new one included.
    pub members: Vec<MemberRecord>,
}

/// `POST /heartbeat`: I am alive, and this is the member list I hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Digest of the sender's member list ([`crate::membership::Membership::digest`]).
    pub members_digest: String,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatResponse {
    /// Digest of the receiver's member list.
    pub members_digest: String,
    /// The receiver's full member list, sent only when the digests differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberRecord>>,
}

/// `POST /sync`: member records from one core to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRequest {
    /// Changed records, or every record when `snapshot` is set.
    pub members: Vec<MemberRecord>,
    /// Whether `members` is the sender's whole list (a resync).
    #[serde(default)]
    pub snapshot: bool,
}

/// The answer to a sync: the receiver's digest after merging, so the sender
/// knows whether the two now agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncResponse {
    /// Digest of the receiver's member list after the merge.
    pub members_digest: String,
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
}

/// One frame of the push stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// First frame: the full picture.
    Hello(StreamHello),
    /// Member records that changed.
    Members(Vec<MemberRecord>),
}

impl StreamFrame {
    /// The SSE event name of this frame.
    pub fn event_name(&self) -> &'static str {
        match self {
            StreamFrame::Hello(_) => "hello",
            StreamFrame::Members(_) => "members",
        }
    }

    /// The frame's JSON data.
    pub fn to_json(&self) -> String {
        let encoded = match self {
            StreamFrame::Hello(hello) => serde_json::to_string(hello),
            StreamFrame::Members(members) => serde_json::to_string(members),
        };
        // Serialising these plain structs cannot fail; an empty object keeps
        // the stream well-formed should it ever do so.
        encoded.unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses a frame from its SSE event name and data.
    pub fn parse(event: &str, data: &str) -> Result<StreamFrame, super::WireError> {
        match event {
            "hello" => Ok(StreamFrame::Hello(super::decode_json(data.as_bytes())?)),
            "members" => Ok(StreamFrame::Members(super::decode_json(data.as_bytes())?)),
            other => Err(super::WireError::UnknownFrame {
                event: other.chars().take(64).collect(),
            }),
        }
    }
}
