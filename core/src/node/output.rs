//! What a node asks of its runtime and tells its host.

use crate::forward::confirm::{ConfirmFailure, PublishId};
use bytes::Bytes;
use serde::Serialize;

use super::Delivery;
use crate::forward::link::DropReason;
use crate::id::{Incarnation, NodeId, RequestId, Role, StreamId};
use crate::retained::RetainRefusal;
use crate::routing::TopicName;

/// A request the runtime must send. Report its fate with
/// [`Node::handle_response`](crate::Node::handle_response) exactly once,
/// under the same [`RequestId`].
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Names this request in `handle_response`.
    pub id: RequestId,
    /// The peer's base URL, `http(s)://host:port`.
    pub to: String,
    /// The peer's node id, when the node knows it.
    pub peer: Option<NodeId>,
    /// The request, signed, with an absolute URI.
    pub request: http::Request<Bytes>,
    /// `true` for `GET /stream`: report the response head with
    /// `handle_response` as soon as it arrives, then feed the body with
    /// [`Node::handle_stream_data`](crate::Node::handle_stream_data) as it
    /// comes, and its end with
    /// [`Node::handle_stream_end`](crate::Node::handle_stream_end).
    pub streaming: bool,
}

/// Why a request got no HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No response within `requestTimeout`.
    #[error("timed out")]
    Timeout,
    /// The connection broke, or the response was not HTTP.
    #[error("transport failed: {0}")]
    Io(String),
    /// The runtime is shutting down and dropped the request.
    #[error("cancelled")]
    Cancelled,
    /// Not sent: the runtime has TLS configured and the peer's address is
    /// plain `http://`, where the signed request (and its body) would
    /// cross the network in the clear.
    #[error("refused to send in the clear to {url}: TLS is configured, the peer is not https")]
    Insecure {
        /// The peer's address.
        url: String,
    },
}

/// Bytes for a stream a core is serving (see
/// [`Node::poll_stream`](crate::Node::poll_stream)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// Write these bytes to the stream's response body.
    Data {
        /// The stream.
        stream: StreamId,
        /// SSE-framed bytes.
        bytes: Bytes,
    },
    /// End the stream's response body.
    Close {
        /// The stream.
        stream: StreamId,
    },
}

/// One copy of a message a node gave up on: the message `seq` that
/// `origin` (in `incarnation`) published for `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedCopy {
    /// The node the message was published on.
    pub origin: NodeId,
    /// The origin's incarnation when it published.
    pub incarnation: Incarnation,
    /// The destination the copy was for.
    pub to: NodeId,
    /// Its sequence number from `origin` to `to`.
    pub seq: u64,
    /// Its quality of service.
    pub qos: crate::wire::messages::Qos,
}

impl DroppedCopy {
    /// The copies `message` still carries: one per target.
    pub(crate) fn of(message: &crate::wire::messages::ForwardedMessage) -> Vec<DroppedCopy> {
        message
            .targets
            .iter()
            .map(|target| DroppedCopy {
                origin: message.origin.clone(),
                incarnation: message.incarnation,
                to: target.node.clone(),
                seq: target.seq,
                qos: message.qos,
            })
            .collect()
    }
}

/// Something the host should know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A worker was accepted by a core (again after a failover or a restart).
    Registered {
        /// The id the cluster knows this node by.
        node_id: NodeId,
        /// The core it registered with.
        core: NodeId,
        /// This node's incarnation.
        incarnation: Incarnation,
    },
    /// A worker holds the member list and routing table of the core it
    /// registered with, whole: from now on its publishes reach every node
    /// with a matching subscription. It follows every [`Event::Registered`]
    /// (a failover included) once that core's push stream has delivered
    /// its tables. A publish made between the two routes only to what the
    /// worker knew before (nothing, for a worker that just started) and is
    /// counted in [`Stats::published_unsynced`](crate::Stats::published_unsynced).
    /// Cores never emit it: their routing table fills as peer cores sync.
    Synced {
        /// The core whose tables the worker holds.
        core: NodeId,
    },
    /// A core refused this node's credentials (`403`). Fatal: the node does
    /// nothing more and the host should stop it.
    RegistrationRejected {
        /// The core's URL.
        core: String,
        /// What the core said.
        reason: String,
    },
    /// The core this worker was registered with stopped answering; the worker
    /// fails over to the next core in `clusters`.
    CoreUnreachable {
        /// The silent core.
        core: NodeId,
    },
    /// The cluster had declared this incarnation dead; the node came back
    /// with a higher one.
    Reincarnated {
        /// The new incarnation.
        incarnation: Incarnation,
    },
    /// A member appeared, or came back with a new incarnation.
    MemberJoined {
        /// The member.
        node: NodeId,
        /// Its role.
        role: Role,
        /// Its incarnation.
        incarnation: Incarnation,
    },
    /// A member missed its heartbeats for longer than `suspectTimeout`.
    MemberSuspect {
        /// The member.
        node: NodeId,
    },
    /// A suspect member was heard from again.
    MemberAlive {
        /// The member.
        node: NodeId,
    },
    /// A member departed gracefully.
    MemberLeft {
        /// The member.
        node: NodeId,
    },
    /// A member missed its heartbeats for longer than `deadTimeout`.
    MemberDead {
        /// The member.
        node: NodeId,
    },
    /// This node has left the cluster; it does nothing more.
    Left,
    /// A message from another node for the host's local subscribers.
    Deliver(Delivery),
    /// The host published a message for other nodes that takes more bytes
    /// than one body carries; [`Node::publish`](crate::Node::publish)
    /// refused it with
    /// [`PublishError::TooLarge`](crate::node::PublishError::TooLarge) and
    /// nothing was sent.
    PublishRefused {
        /// Its topic.
        topic: crate::routing::TopicName,
        /// Bytes it would take on the wire.
        size: usize,
        /// The most a message may take
        /// ([`Node::max_message_len`](crate::Node::max_message_len)).
        limit: usize,
    },
    /// Messages were dropped: on their way to `peer` (by queue policy,
    /// expiry, loss of a QoS 0 batch, the peer going away, a message too
    /// large for the peer's body limit, or this node stopping with them
    /// aboard), or on arrival from `peer` (a stream message not addressed
    /// to this worker, a copy too late to tell from a duplicate). Every
    /// drop is also counted in [`Stats::dropped`](crate::Stats::dropped).
    Dropped {
        /// The peer they were queued for (or the target that could not be
        /// reached); for drops on arrival, the core whose stream carried
        /// them ([`DropReason::Misaddressed`]) or their origin
        /// ([`DropReason::TooLate`]).
        peer: NodeId,
        /// How many messages.
        count: u64,
        /// Why.
        reason: DropReason,
        /// Each copy given up on, by origin and sequence number: one per
        /// destination the messages still had from here. A host can log
        /// them; the simulator matches each missing QoS 1 copy to one.
        copies: Vec<DroppedCopy>,
    },
    /// A peer's write changed the cluster's retained set: keep `message`
    /// as the retained message of `message.topic` (replacing any other).
    RetainSet(super::Message),
    /// A peer cleared the retained message of `topic` (or the set's bound
    /// made room for a write with a lower stamp): forget it.
    RetainCleared {
        /// The topic.
        topic: TopicName,
    },
    /// A retained message for `topic` was not taken into the cluster's
    /// set (by this node's own publish, or as it arrived from a peer).
    /// Counted in [`Stats::retained_refused`](crate::Stats::retained_refused).
    RetainRefused {
        /// The topic.
        topic: TopicName,
        /// Why.
        reason: RetainRefusal,
    },
    /// Every destination of QoS 1 or 2 publish `id` took it for local
    /// delivery (for a publish only for local subscribers, or for nobody,
    /// at once, with no nodes). A broker that answers PUBACK or PUBREC now
    /// promises what the cluster can keep: see the crate docs.
    Confirmed {
        /// The publish ([`Routing::id`](crate::node::Routing::id)).
        id: PublishId,
        /// The destinations, in the order they confirmed.
        nodes: Vec<NodeId>,
    },
    /// Some destinations of QoS 1 or 2 publish `id` will never confirm it;
    /// the others did. Whether the copies reached the failed ones is
    /// unknown.
    NotConfirmed {
        /// The publish.
        id: PublishId,
        /// The first reason met.
        reason: ConfirmFailure,
        /// The destinations that will not confirm.
        failed: Vec<NodeId>,
        /// The destinations that did.
        confirmed: Vec<NodeId>,
    },
    /// The messages [`Node::publish`](crate::Node::publish) held back
    /// ([`Routing::busy`](crate::node::Routing::busy)) are on their way:
    /// there is room again.
    Ready,
    /// This node's view now agrees with every core's (member digests equal,
    /// route changes held), as of each core's last word; see
    /// [`Status::convergence`](crate::Status::convergence).
    Converged {
        /// How long the views differed, in milliseconds (since start for
        /// the first one).
        after_ms: u64,
    },
    /// This node's view stopped agreeing with some core's: a change not
    /// yet everywhere, or a core silent or cut off.
    Diverged {
        /// The cores whose view differs or is unknown.
        differing: Vec<NodeId>,
    },
}
