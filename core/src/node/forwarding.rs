//! Moving published messages across the cluster.
//!
//! The origin decides the targets from its copy of the routing table and
//! numbers its messages per destination. A worker hands everything to its
//! core; a core delivers to itself, pushes to its own workers over their
//! streams, and passes the rest to the cores the targets live on. A message
//! received from another core is never sent to a third one, so it crosses
//! at most two cores and never returns to its origin. Every hop goes through
//! a bounded [`Link`]; every receiver deduplicates QoS 1 and 2 by
//! (origin, incarnation, sequence).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use super::explain::{HopLink, LinkError, LinkFailure};
use super::status::millis;
use super::{DroppedCopy, Event, Node, Pending, Phase, TransportError};
use crate::forward::confirm::{Outstanding, PublishId};
use crate::forward::dedup::{Arrival, DeliveryLog};
use crate::forward::link::{BatchId, Carried, DropReason, Dropped, Link, LinkSettings, LinkStats};
use crate::id::{NodeId, RequestId, Role};
use crate::routing::{TopicError, TopicName};
use crate::time::{Instant, Now};
use crate::wire::messages::{
    AckRequest, ForwardRequest, ForwardResponse, ForwardedMessage, MessageBatch, Qos, Target,
    MESSAGES_EVENT,
};
use crate::wire::{batch_json, batch_size, decode_response, encode_json, sse, Endpoint};

/// How many origins a receiver remembers for deduplication.
const MAX_DEDUP_ORIGINS: usize = 65_536;

/// A message the host publishes.
///
/// # Size
///
/// A message travels base64-encoded inside a JSON body, and every body must
/// fit the receiver's `maxBodySize`. [`Node::publish`] refuses
/// ([`PublishError::TooLarge`]) a message that would not fit a body on its
/// own, and [`Node::max_message_len`] says how many bytes one may take. With
/// the default `maxBodySize` of 4 MiB, a payload of up to **3 000 000
/// bytes** always fits, with a topic of up to 1 KiB, properties of up to
/// 64 KiB and up to 100 target nodes with names of up to 64 bytes; the
/// exact ceiling is about three quarters of `maxBodySize` less the topic,
/// names and properties. MQTT allows payloads up to 256 MiB: a broker that
/// takes larger ones raises `maxBodySize` on **every** node of the cluster
/// to at least 4/3 of its largest payload plus 64 KiB (for example
/// `maxBodySize: 33554432`, 32 MiB, for payloads up to 24 MB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    pub payload: Bytes,
    /// Quality of service.
    pub qos: Qos,
    /// The MQTT retain flag.
    pub retain: bool,
    /// MQTT 5 properties, carried opaquely.
    pub properties: Option<Bytes>,
}

impl Message {
    /// A message on `topic` (validated) with QoS 0 and no retain flag.
    ///
    /// ```
    /// use mqtt_cluster_core::node::Message;
    /// use mqtt_cluster_core::wire::messages::Qos;
    /// let m = Message::new("sensors/1/temp", "21.5")?.with_qos(Qos::AtLeastOnce);
    /// assert_eq!(m.qos, Qos::AtLeastOnce);
    /// assert!(Message::new("sensors/+", "x").is_err());
    /// # Ok::<(), mqtt_cluster_core::routing::TopicError>(())
    /// ```
    pub fn new(topic: &str, payload: impl Into<Bytes>) -> Result<Message, TopicError> {
        Ok(Message {
            topic: TopicName::new(topic)?,
            payload: payload.into(),
            qos: Qos::AtMostOnce,
            retain: false,
            properties: None,
        })
    }

    /// The same message with another QoS.
    pub fn with_qos(self, qos: Qos) -> Message {
        Message { qos, ..self }
    }

    /// The same message with the retain flag set.
    pub fn retained(self) -> Message {
        Message {
            retain: true,
            ..self
        }
    }
}

/// Where a published message goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Routing {
    /// The host delivers it to its own local subscribers.
    pub local: bool,
    /// The other nodes it is forwarded to, sorted.
    pub remote: Vec<NodeId>,
    /// For QoS 1 and 2: the publish's number. Exactly one
    /// [`Event::Confirmed`] or [`Event::NotConfirmed`] names it later (at
    /// once when `remote` is empty).
    pub id: Option<PublishId>,
    /// The message waits at this node for its destinations to confirm
    /// earlier ones: hold the client's PUBACK (its in-flight window then
    /// slows it down) until the confirmation, and expect [`Event::Ready`]
    /// when messages flow again. Nothing was dropped.
    pub busy: bool,
    /// This node's routing table may lack members the cluster has: a
    /// partition just healed and this node adopted another's verdict that
    /// a member it still heard from is dead, or it took a new incarnation,
    /// registered again or failed over and has not converged yet (each for
    /// at most `deadTimeout + requestTimeout`). The message went where the
    /// table said; a host that answers its client on the confirmation may
    /// publish it again once its events show the members settled
    /// (ARCHITECTURE §6). Destinations that had it then get it twice.
    pub settling: bool,
}

/// A message delivered from another node, for the host's local subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The node it was published on.
    pub origin: NodeId,
    /// The incarnation the origin's process started with (see
    /// [`ForwardedMessage::incarnation`]).
    pub incarnation: crate::Incarnation,
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    #[serde(skip)]
    pub payload: Bytes,
    /// Quality of service.
    pub qos: Qos,
    /// The MQTT retain flag.
    pub retain: bool,
    /// MQTT 5 properties.
    #[serde(skip)]
    pub properties: Option<Bytes>,
    /// Its number from its origin to this node.
    pub seq: u64,
}

/// Publishing failed; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The node has left or was rejected.
    #[error("the node is not running")]
    NotRunning,
    /// The message must go to other nodes but takes more bytes than one
    /// body can carry (`maxBodySize` less the batch's envelope), so no peer
    /// could ever take it. Nothing was sent or numbered; the node counts it
    /// (`Stats::publish_refused`) and reports [`Event::PublishRefused`].
    #[error("message of {size} bytes on the wire exceeds the {limit} bytes one body carries")]
    TooLarge {
        /// Bytes the message would take in a batch (base64 payload and
        /// properties, topic, names and targets as JSON).
        size: usize,
        /// The most bytes a message may take ([`Node::max_message_len`]).
        limit: usize,
    },
}

impl Carried for ForwardedMessage {
    fn qos(&self) -> u8 {
        self.qos.as_u8()
    }

    fn wire_len(&self) -> usize {
        batch_size::message_len(self)
    }
}

/// Per-peer links, sequence numbers and the deduplication log.
#[derive(Debug)]
pub(super) struct Forwarding {
    /// Last sequence number per destination.
    next_seq: BTreeMap<NodeId, u64>,
    /// The highest number given to a destination since forgotten. A
    /// destination numbered afresh starts above it: if a forgotten member
    /// comes back in the same process, its deduplication log still holds
    /// this node's old numbers, and restarting from 1 would make it take
    /// new messages for duplicates.
    seq_floor: u64,
    /// A worker's single link to whichever core it is registered with.
    pub(super) uplink: Link<ForwardedMessage>,
    /// A core's links: HTTP to other cores, streams to its workers.
    links: BTreeMap<NodeId, Link<ForwardedMessage>>,
    delivered: DeliveryLog,
    /// A worker's highest batch received and not yet acknowledged, with
    /// the stream it came on: an acknowledgement belongs to one stream,
    /// since a new stream (on the same core or another) sends again
    /// whatever the old one had not had acknowledged.
    ack_through: Option<(RequestId, u64)>,
    http_settings: LinkSettings,
    stream_settings: LinkSettings,
    /// Links of peers that went away, kept for their counters while the
    /// member list remembers the peer.
    closed: BTreeMap<NodeId, LinkStats>,
    /// The counters of closed links whose peers were forgotten, summed, so
    /// that members coming and going add no `/metrics` labels.
    forgotten: LinkStats,
    /// Only the simulator's own self-test turns deduplication off, to prove
    /// its checker notices.
    dedup_disabled: bool,
    /// Self-test breakage: first-time deliveries still to swallow unseen.
    swallow_deliveries: u64,
    /// Self-test breakage: deliver each stream batch back to front.
    reverse_stream_batches: bool,
    /// The origin settles each QoS 1/2 publish as soon as it sends it, as
    /// if a hop's acknowledgement were the destination's: checker self-test.
    pub(super) settle_on_send: bool,
    /// The origin never sends a message again: checker self-test.
    pub(super) never_resend: bool,
    /// The last failure of each link, by peer (a worker's uplink under its
    /// core's name), for [`Node::explain`].
    failures: BTreeMap<NodeId, LinkFailure>,
    /// Scratch space of [`Node::relay`], kept to spare an allocation per
    /// message.
    hop_buffer: Vec<(NodeId, Target)>,
    /// Scratch space of [`Node::serve_ack`].
    confirm_buffer: Vec<(NodeId, crate::Incarnation, u64)>,
}

impl Forwarding {
    pub(super) fn new(config: &crate::Config) -> Self {
        let http_settings = LinkSettings {
            queue_length: config.queue_length,
            policy: config.queue_policy,
            max_in_flight: config.max_in_flight,
            batch_size: config.batch_size,
            max_batch_bytes: batch_size::forward_budget(config.max_body_size),
            retry_backoff: config.retry_backoff,
            retry_backoff_max: config.retry_backoff_max,
            expiry: config.message_expiry,
            max_batches_in_flight: 1,
        };
        let stream_settings = LinkSettings {
            max_batches_in_flight: config.max_in_flight,
            max_batch_bytes: batch_size::stream_budget(config.max_body_size),
            ..http_settings.clone()
        };
        Forwarding {
            next_seq: BTreeMap::new(),
            seq_floor: 0,
            uplink: Link::new(http_settings.clone()),
            links: BTreeMap::new(),
            delivered: DeliveryLog::new(MAX_DEDUP_ORIGINS),
            ack_through: None,
            http_settings,
            stream_settings,
            closed: BTreeMap::new(),
            forgotten: LinkStats::default(),
            dedup_disabled: false,
            swallow_deliveries: 0,
            reverse_stream_batches: false,
            settle_on_send: false,
            never_resend: false,
            failures: BTreeMap::new(),
            hop_buffer: Vec::new(),
            confirm_buffer: Vec::new(),
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.links
            .values()
            .chain(std::iter::once(&self.uplink))
            .filter_map(|l| l.next_deadline())
            .min()
    }

    /// Queue depth and in-flight count per peer.
    pub(super) fn depths(
        &self,
        uplink_name: Option<&NodeId>,
        now: crate::time::Instant,
    ) -> BTreeMap<String, super::QueueDepth> {
        let depth = |link: &Link<ForwardedMessage>| super::QueueDepth {
            queued: link.queued(),
            queued_at_most_once: link.queued_at_most_once(),
            in_flight: link.in_flight(),
            oldest_age_ms: link
                .oldest_pushed_at()
                .map(|at| u64::try_from(now.saturating_since(at).as_millis()).unwrap_or(u64::MAX)),
        };
        let mut depths: BTreeMap<String, super::QueueDepth> = self
            .links
            .iter()
            .map(|(peer, link)| (peer.to_string(), depth(link)))
            .collect();
        if !self.uplink.is_idle() || uplink_name.is_some() {
            let name = uplink_name.map_or_else(|| "core".to_owned(), |n| n.to_string());
            depths.insert(name, depth(&self.uplink));
        }
        depths
    }

    /// The state of the link to `peer` (the uplink, for a worker's core
    /// `uplink_to`), if there is one.
    pub(super) fn hop_link(
        &self,
        peer: &NodeId,
        uplink_to: Option<&NodeId>,
        now: crate::time::Instant,
    ) -> Option<HopLink> {
        let link = match self.links.get(peer) {
            Some(link) => link,
            None if uplink_to == Some(peer) => &self.uplink,
            None => return None,
        };
        Some(HopLink {
            queued: link.queued(),
            in_flight: link.in_flight(),
            busy: link.is_window_full(),
            retrying: link.waits_for_retry(now),
            oldest_age_ms: link
                .oldest_pushed_at()
                .map(|at| millis(now.saturating_since(at))),
            last_error: self.failures.get(peer).map(|f| LinkError {
                ago_ms: millis(now.saturating_since(f.at)),
                error: f.error.clone(),
            }),
        })
    }

    /// The largest queue and in-flight count over all links.
    pub(super) fn deepest(&self) -> (usize, usize) {
        self.links
            .values()
            .chain(std::iter::once(&self.uplink))
            .fold((0, 0), |(queued, in_flight), link| {
                (queued.max(link.queued()), in_flight.max(link.in_flight()))
            })
    }

    /// Counts a copy for `target` that no path reaches, with the target's
    /// link counters (`peer_gone`), so that `/metrics` shows it by peer.
    fn count_unroutable(&mut self, target: &NodeId) {
        let dropped = match self.links.get_mut(target) {
            Some(link) => {
                link.count_dropped(DropReason::PeerGone);
                return;
            }
            None => &mut self.closed.entry(target.clone()).or_default().dropped,
        };
        *dropped.entry(DropReason::PeerGone).or_default() += 1;
    }

    pub(super) fn link_stats(&self) -> BTreeMap<String, LinkStats> {
        let mut stats: BTreeMap<String, LinkStats> = self
            .closed
            .iter()
            .map(|(peer, s)| (peer.to_string(), s.clone()))
            .collect();
        for (peer, link) in &self.links {
            stats.insert(peer.to_string(), link.stats());
        }
        if self.forgotten != LinkStats::default() {
            stats.insert(FORGOTTEN_PEERS.to_owned(), self.forgotten.clone());
        }
        if self.uplink.stats() != LinkStats::default() {
            stats.insert("uplink".to_owned(), self.uplink.stats());
        }
        stats
    }
}

impl Forwarding {
    /// Forgets what is kept per destination for members the member list no
    /// longer holds: their sequence counters (remembering the highest
    /// number given) and their closed links' counters (summed into
    /// [`FORGOTTEN_PEERS`]).
    pub(super) fn forget_peers(&mut self, known: impl Fn(&NodeId) -> bool) {
        let mut floor = self.seq_floor;
        self.next_seq.retain(|peer, seq| {
            let keep = known(peer);
            if !keep {
                floor = floor.max(*seq);
            }
            keep
        });
        self.seq_floor = floor;
        self.failures.retain(|peer, _| known(peer));
        let gone: Vec<NodeId> = self.closed.keys().filter(|p| !known(p)).cloned().collect();
        for peer in gone {
            if let Some(stats) = self.closed.remove(&peer) {
                add_stats(&mut self.forgotten, &stats);
            }
        }
    }

    /// The sequence number of the latest message for `node`.
    pub(super) fn last_seq(&self, node: &NodeId) -> Option<u64> {
        self.next_seq.get(node).copied()
    }

    /// Destinations with a sequence counter, and closed links kept by peer.
    pub(super) fn tracked(&self) -> (usize, usize) {
        (self.next_seq.len(), self.closed.len())
    }
}

/// The `links` key under which the counters of forgotten peers' links are
/// summed (no node id can be spelt with parentheses).
pub const FORGOTTEN_PEERS: &str = "(forgotten)";

fn add_stats(total: &mut LinkStats, more: &LinkStats) {
    total.sent += more.sent;
    total.acked += more.acked;
    total.retries += more.retries;
    for (reason, n) in &more.dropped {
        *total.dropped.entry(*reason).or_default() += n;
    }
}

/// The `POST /forward` body of a batch in flight on `link`, written from
/// the link's own copies of the messages.
fn forward_body(link: &Link<ForwardedMessage>, batch: BatchId) -> Bytes {
    batch_json::forward_request(link.batch_items(batch).into_iter().flatten())
}

/// The `messages` stream frame of a batch in flight on a stream link.
fn stream_frame(link: &Link<ForwardedMessage>, batch: BatchId) -> Bytes {
    let messages = link.batch_items(batch).into_iter().flatten();
    let expected = messages.clone().map(ForwardedMessage::json_len_hint).sum();
    sse::encode_json_with(MESSAGES_EVENT, expected, |out| {
        batch_json::write_message_batch(out, batch.0, messages);
    })
}

impl Node {
    /// A local client published `message`. Returns where it goes: whether
    /// the host delivers it locally, and which nodes it is forwarded to.
    ///
    /// A message for other nodes that takes more than
    /// [`max_message_len`](Self::max_message_len) bytes on the wire is
    /// refused with [`PublishError::TooLarge`] (see [`Message`] for the
    /// largest payload a default node carries); a message only for local
    /// subscribers is never refused for its size.
    ///
    /// ```
    /// # use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
    /// use mqtt_cluster_core::node::Message;
    /// # let config = Config::from_yaml_str("core: true\nnodeName: c1\nsecret: s3cret-s3cret\n").unwrap();
    /// # let now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1));
    /// # let mut node = Node::new(config, now, 1).unwrap();
    /// node.subscribe(now, "sensors/#")?;
    /// let routing = node.publish(now, Message::new("sensors/1", "21.5")?)?;
    /// assert!(routing.local && routing.remote.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish(&mut self, now: Now, message: Message) -> Result<Routing, PublishError> {
        let now = self.advance(now);
        if self.phase.is_finished() {
            return Err(PublishError::NotRunning);
        }
        self.retain_published(now, &message);
        let mut nodes = std::mem::take(&mut self.match_buffer);
        self.routes.matches(&message.topic, &mut nodes);
        let local = nodes.contains(&self.id);
        nodes.retain(|n| *n != self.id);
        let id = Outstanding::tracks(message.qos).then(|| self.outstanding.next_id());
        if !nodes.is_empty() {
            // Numbers are taken only once the message is known to fit.
            let targets = nodes
                .iter()
                .map(|node| Target {
                    node: node.clone(),
                    // A peer whose counter was pruned starts above every
                    // number handed out before, so its dedup never sees one
                    // again.
                    seq: self
                        .forwarding
                        .next_seq
                        .get(node)
                        .copied()
                        .unwrap_or(self.forwarding.seq_floor)
                        .saturating_add(1),
                })
                .collect();
            let forwarded = ForwardedMessage {
                origin: self.id.clone(),
                incarnation: self.first_incarnation,
                topic: message.topic,
                payload: message.payload,
                qos: message.qos,
                retain: message.retain,
                properties: message.properties,
                targets,
            };
            let limit = self.max_message_len();
            // The exact measure walks the names; the bound does not, and
            // settles the usual case of a message far below the limit.
            let bound = batch_size::message_len_bound(
                forwarded.topic.as_str().len(),
                forwarded.origin.as_str().len(),
                forwarded.payload.len(),
                forwarded.properties.as_ref().map(|p| p.len()),
                forwarded.targets.len(),
            );
            let size = if bound > limit {
                batch_size::message_len(&forwarded)
            } else {
                0
            };
            if size > limit {
                self.match_buffer = nodes;
                self.stats.publish_refused += 1;
                self.events.push_back(Event::PublishRefused {
                    topic: forwarded.topic,
                    size,
                    limit,
                });
                return Err(PublishError::TooLarge { size, limit });
            }
            for target in &forwarded.targets {
                self.forwarding
                    .next_seq
                    .insert(target.node.clone(), target.seq);
            }
            self.stats.published += 1;
            self.admit_published(now, id, forwarded);
        }
        if nodes.is_empty() {
            self.stats.published += 1;
            if let Some(id) = id {
                self.stats.confirmed += 1;
                self.events.push_back(Event::Confirmed {
                    id,
                    nodes: Vec::new(),
                });
            }
        }
        if self.role == Role::Worker && !self.worker.synced() {
            self.stats.published_unsynced += 1;
        }
        let routing = Routing {
            local,
            remote: nodes.clone(),
            id,
            busy: self.outstanding.is_busy(),
            settling: self.is_settling(),
        };
        self.match_buffer = nodes;
        self.flush(now);
        Ok(routing)
    }

    /// The most bytes a published message may take on the wire: its JSON in
    /// a batch (payload and properties in base64, topic, origin and target
    /// names, numbers), which must fit one body or stream frame of
    /// `maxBodySize` together with the batch's envelope. [`Node::publish`]
    /// refuses a larger message for other nodes.
    ///
    /// ```
    /// # use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
    /// # let config = Config::from_yaml_str("core: true\nnodeName: c1\nsecret: s3cret-s3cret\n").unwrap();
    /// # let now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1));
    /// let node = Node::new(config, now, 1).unwrap();
    /// // The default maxBodySize of 4 MiB less the largest stream frame envelope.
    /// assert_eq!(node.max_message_len(), 4 * 1024 * 1024 - 65);
    /// ```
    pub fn max_message_len(&self) -> usize {
        batch_size::stream_budget(self.config.max_body_size)
    }

    /// The sequence number of the latest message this node published to
    /// `node`: a checker pairs each copy that arrives with the publish it
    /// came from by it. Numbers run from 1 per destination, and start above
    /// every number given before for a destination the node forgot and
    /// meets again.
    pub fn last_sequence_to(&self, node: &NodeId) -> Option<u64> {
        self.forwarding.last_seq(node)
    }

    /// A core sends a message on towards each of its targets.
    /// `may_cross_cores` is false for messages that came from another core.
    pub(super) fn relay(&mut self, now: Now, message: ForwardedMessage, may_cross_cores: bool) {
        // (hop, target) for every target sent on from here, in target order.
        let mut hops = std::mem::take(&mut self.forwarding.hop_buffer);
        hops.clear();
        let mut unroutable = Vec::new();
        for target in &message.targets {
            if target.node == self.id {
                self.deliver(&message, target.seq);
                continue;
            }
            let Some(record) = self
                .membership
                .get(&target.node)
                .filter(|r| !r.state.is_gone())
            else {
                unroutable.push(target.clone());
                continue;
            };
            let hop = match record.role {
                Role::Worker if record.home == self.id => Some(&record.id),
                Role::Worker if may_cross_cores => Some(&record.home),
                Role::Core if may_cross_cores => Some(&record.id),
                _ => None,
            };
            match hop.filter(|h| self.membership.get(h).is_some_and(|r| !r.state.is_gone())) {
                Some(hop) => hops.push((hop.clone(), target.clone())),
                None => unroutable.push(target.clone()),
            }
        }
        for target in unroutable {
            self.stats.unroutable += 1;
            self.forwarding.count_unroutable(&target.node);
            self.events.push_back(Event::Dropped {
                peer: target.node.clone(),
                count: 1,
                reason: DropReason::PeerGone,
                copies: vec![DroppedCopy {
                    origin: message.origin.clone(),
                    incarnation: message.incarnation,
                    to: target.node,
                    seq: target.seq,
                    qos: message.qos,
                }],
            });
        }
        // The usual case: every target goes through one hop, and the message
        // travels on as it is, without a copy.
        let one_hop = hops.len() == message.targets.len()
            && hops.windows(2).all(|w| matches!(w, [a, b] if a.0 == b.0));
        if one_hop {
            if let Some((hop, _)) = hops.first() {
                let hop = hop.clone();
                self.push_to_link(now, &hop, message);
            }
        } else {
            // One copy per hop, hops in order (as the links are), each with
            // its own targets in their original order.
            hops.sort_by(|a, b| a.0.cmp(&b.0));
            let mut rest = hops.as_slice();
            while let Some((hop, _)) = rest.first() {
                let n = rest.iter().take_while(|(h, _)| h == hop).count();
                let (group, tail) = rest.split_at(n);
                let copy = ForwardedMessage {
                    targets: group.iter().map(|(_, t)| t.clone()).collect(),
                    ..message.clone()
                };
                self.push_to_link(now, hop, copy);
                rest = tail;
            }
        }
        hops.clear();
        self.forwarding.hop_buffer = hops;
    }

    /// Queues a message on the link to `hop`, opening the link if needed.
    fn push_to_link(&mut self, now: Now, hop: &NodeId, message: ForwardedMessage) {
        let link = match self.forwarding.links.get_mut(hop) {
            Some(link) => link,
            None => {
                let stream_link = self
                    .membership
                    .get(hop)
                    .is_some_and(|r| r.role == Role::Worker);
                let settings = if stream_link {
                    self.forwarding.stream_settings.clone()
                } else {
                    self.forwarding.http_settings.clone()
                };
                self.forwarding
                    .links
                    .entry(hop.clone())
                    .or_insert_with(|| Link::new(settings))
            }
        };
        if let Some(dropped) = link.push(now.instant, message) {
            self.report_drops(Some(hop), vec![dropped]);
        }
    }

    /// Hands a message to the host, once.
    fn deliver(&mut self, message: &ForwardedMessage, seq: u64) {
        let arrival = self
            .forwarding
            .delivered
            .arrive(&message.origin, message.incarnation, seq);
        match arrival {
            _ if self.forwarding.dedup_disabled => {}
            Arrival::New if self.forwarding.swallow_deliveries > 0 => {
                self.forwarding.swallow_deliveries -= 1;
                return;
            }
            Arrival::New => {}
            Arrival::Duplicate => {
                self.stats.duplicates += 1;
                // Confirmed again: the first confirmation may have been
                // lost, which is why the origin sent it again.
                if self.role == Role::Core && message.qos != Qos::AtMostOnce {
                    self.confirm_copy(&message.origin, message.incarnation, &self.id.clone(), seq);
                }
                return;
            }
            Arrival::TooLate => {
                let copy = DroppedCopy {
                    origin: message.origin.clone(),
                    incarnation: message.incarnation,
                    to: self.id.clone(),
                    seq,
                    qos: message.qos,
                };
                self.count_drops(&message.origin, DropReason::TooLate, 1, vec![copy]);
                return;
            }
        }
        self.stats.delivered += 1;
        // A worker's core confirms once the worker acknowledges the batch.
        if self.role == Role::Core && message.qos != Qos::AtMostOnce {
            self.confirm_copy(&message.origin, message.incarnation, &self.id.clone(), seq);
        }
        self.events.push_back(Event::Deliver(Delivery {
            origin: message.origin.clone(),
            incarnation: message.incarnation,
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            qos: message.qos,
            retain: message.retain,
            properties: message.properties.clone(),
            seq,
        }));
    }

    pub(super) fn report_drops(
        &mut self,
        peer: Option<&NodeId>,
        dropped: Vec<Dropped<ForwardedMessage>>,
    ) {
        if dropped.is_empty() {
            return;
        }
        // This node's own QoS 1/2 messages a hop refused as too large will
        // never be confirmed: their publishes settle now, not at expiry.
        let refused: Vec<(NodeId, u64)> = dropped
            .iter()
            .filter(|d| {
                d.reason == DropReason::TooLarge
                    && d.item.origin == self.id
                    && d.item.qos != Qos::AtMostOnce
            })
            .flat_map(|d| d.item.targets.iter().map(|t| (t.node.clone(), t.seq)))
            .collect();
        if !refused.is_empty() {
            let settled = self
                .outstanding
                .fail_copies(&refused, crate::forward::confirm::ConfirmFailure::Refused);
            self.report_settled(settled);
        }
        let mut by_reason: BTreeMap<DropReason, (u64, Vec<DroppedCopy>)> = BTreeMap::new();
        for drop in &dropped {
            let (count, copies) = by_reason.entry(drop.reason).or_default();
            *count += 1;
            copies.extend(DroppedCopy::of(&drop.item));
        }
        let peer = peer.cloned().unwrap_or_else(|| self.id.clone());
        for (reason, (count, copies)) in by_reason {
            self.count_drops(&peer, reason, count, copies);
        }
    }

    /// Counts `count` messages dropped for `reason` (the messages were for
    /// `peer`, or came from it for drops on arrival) and tells the host
    /// which copies they were.
    pub(super) fn count_drops(
        &mut self,
        peer: &NodeId,
        reason: DropReason,
        count: u64,
        copies: Vec<DroppedCopy>,
    ) {
        *self.stats.dropped.entry(reason).or_default() += count;
        self.events.push_back(Event::Dropped {
            peer: peer.clone(),
            count,
            reason,
            copies,
        });
    }

    /// Gives up on everything still in this node's links when it stops
    /// (left, or refused by the cluster): each message counted and reported
    /// as [`DropReason::Abandoned`], for the peer it was queued for.
    pub(super) fn abandon_links(&mut self) {
        self.abandon_unconfirmed();
        let uplink = self.forwarding.uplink.close_for(DropReason::Abandoned);
        let core = self.worker.registered_core().cloned();
        self.report_drops(core.as_ref(), uplink);
        let peers: Vec<NodeId> = self.forwarding.links.keys().cloned().collect();
        for peer in peers {
            let dropped = self
                .forwarding
                .links
                .get_mut(&peer)
                .map(|link| link.close_for(DropReason::Abandoned))
                .unwrap_or_default();
            self.report_drops(Some(&peer), dropped);
        }
    }

    /// Sends whatever the links may send now.
    pub(super) fn flush_links(&mut self, now: Now) {
        if self.phase.is_finished() {
            return;
        }
        match self.role {
            Role::Worker => self.flush_uplink(now),
            Role::Core => {
                // A core calls this after every input, and most of its links
                // are idle most of the time: only links with messages
                // waiting can send or expire anything.
                let peers: Vec<NodeId> = self
                    .forwarding
                    .links
                    .iter()
                    .filter(|(_, link)| link.has_waiting())
                    .map(|(peer, _)| peer.clone())
                    .collect();
                for peer in peers {
                    self.flush_link(now, &peer);
                }
            }
        }
    }

    fn flush_uplink(&mut self, now: Now) {
        if self.worker.registered_core().is_none() {
            return;
        }
        let expired = self.forwarding.uplink.expire(now.instant);
        let core = self.worker.registered_core().cloned();
        self.report_drops(core.as_ref(), expired);
        while let Some(batch) = self.forwarding.uplink.next_batch_in_place(now.instant) {
            let body = forward_body(&self.forwarding.uplink, batch);
            if self
                .send_to_core(
                    now,
                    Endpoint::Forward,
                    body,
                    Pending::Forward { peer: None, batch },
                )
                .is_none()
            {
                let dropped = self.forwarding.uplink.failed(now.instant, batch);
                self.report_drops(core.as_ref(), dropped);
                break;
            }
        }
    }

    fn flush_link(&mut self, now: Now, peer: &NodeId) {
        let Some(link) = self.forwarding.links.get_mut(peer) else {
            return;
        };
        let expired = link.expire(now.instant);
        self.report_drops(Some(peer), expired);
        let is_worker = self
            .membership
            .get(peer)
            .is_some_and(|r| r.role == Role::Worker);
        if is_worker {
            let Some(stream) = self.core.stream_of(peer) else {
                return;
            };
            while let Some(link) = self.forwarding.links.get_mut(peer) {
                let Some(batch) = link.next_batch_in_place(now.instant) else {
                    break;
                };
                let bytes = stream_frame(link, batch);
                self.push_frame_bytes(stream, bytes);
            }
            return;
        }
        let Some(url) = self.peer_address(peer) else {
            return;
        };
        while let Some(link) = self.forwarding.links.get_mut(peer) {
            let Some(batch) = link.next_batch_in_place(now.instant) else {
                break;
            };
            let body = forward_body(link, batch);
            self.send(
                now,
                &url,
                Some(peer.clone()),
                Endpoint::Forward,
                body,
                Pending::Forward {
                    peer: Some(peer.clone()),
                    batch,
                },
            );
        }
    }

    pub(super) fn on_forward_answered(
        &mut self,
        now: Now,
        peer: Option<NodeId>,
        batch: BatchId,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let answer = result
            .as_ref()
            .ok()
            .and_then(|r| decode_response::<ForwardResponse>(r, self.config.max_body_size).ok());
        let conflict = result
            .as_ref()
            .is_ok_and(|r| r.status() == StatusCode::CONFLICT);
        let too_large = result
            .as_ref()
            .is_ok_and(|r| r.status() == StatusCode::PAYLOAD_TOO_LARGE);
        let link = match &peer {
            Some(peer) => self.forwarding.links.get_mut(peer),
            None => Some(&mut self.forwarding.uplink),
        };
        let Some(link) = link else { return };
        // An answer that took another number of messages than the batch
        // held acknowledges nothing: the batch goes again, and the receiver
        // deduplicates what it did take.
        let sent = link.batch_items(batch).map(|items| items.len());
        let miscounted = answer
            .as_ref()
            .is_some_and(|a| sent.is_some_and(|n| n != a.accepted));
        if answer.is_some() && !miscounted {
            link.ack_through(batch);
            return;
        }
        // A peer with a smaller body limit than this node's: smaller
        // batches go at once, and only a message too large on its own is
        // dropped, so nothing waits behind it.
        let dropped = if too_large {
            link.too_large(now.instant, batch)
        } else {
            link.failed(now.instant, batch)
        };
        let name = peer
            .clone()
            .or_else(|| self.worker.registered_core().cloned());
        if let Some(name) = &name {
            let error = match &result {
                Err(e) => e.to_string(),
                Ok(_) if miscounted => format!(
                    "the answer counted {} messages of {}",
                    answer.as_ref().map_or(0, |a| a.accepted),
                    sent.unwrap_or(0)
                ),
                Ok(response) => crate::wire::status_error(response).to_string(),
            };
            // A peer's error message is its to choose: keep a line of it.
            let failure = LinkFailure {
                at: now.instant,
                error: error.chars().take(240).collect(),
            };
            self.forwarding.failures.insert(name.clone(), failure);
        }
        self.report_drops(name.as_ref(), dropped);
        if miscounted {
            self.count_bad_response("forward_miscounted");
        }
        if conflict {
            match peer {
                None => self.worker_reregister(now),
                Some(peer) => self.reregister_with(now, &peer),
            }
        }
    }

    /// Turns off deduplication of deliveries. Exists only so that the
    /// simulator's checker can be shown to catch duplicates; never use it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn disable_dedup_for_checker_self_test(&mut self) {
        self.forwarding.dedup_disabled = true;
    }

    /// Makes the node swallow its next `count` first-time deliveries: no
    /// event, no count, no drop. Exists only so that the simulator's
    /// checker can be shown to catch a silent loss; never use it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn swallow_deliveries_for_checker_self_test(&mut self, count: u64) {
        self.forwarding.swallow_deliveries = count;
    }

    /// Makes the node deliver the messages of each stream batch back to
    /// front. Exists only so that the simulator's checker can be shown to
    /// catch reordering; never use it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn reverse_stream_batches_for_checker_self_test(&mut self) {
        self.forwarding.reverse_stream_batches = true;
    }

    /// Makes the node settle its QoS 1 and 2 publishes as confirmed as soon
    /// as it hands them to the first hop, and never send them again: the
    /// per-hop promise that end-to-end confirmation replaced. Exists only
    /// so that the simulator's checker can be shown to catch the losses
    /// that promise allows; never use it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn settle_on_first_hop_for_checker_self_test(&mut self) {
        self.forwarding.settle_on_send = true;
    }

    /// Makes the node never send a QoS 1 or 2 message again, whatever
    /// happens to the path it took: confirmations still settle what
    /// arrives. Exists only so that the simulator's checker can be shown to
    /// catch a copy lost with a crashed core; never use it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn never_resend_for_checker_self_test(&mut self) {
        self.forwarding.never_resend = true;
    }

    /// A core takes a batch of messages.
    pub(super) fn serve_forward(
        &mut self,
        now: Now,
        from_role: Role,
        request: ForwardRequest,
    ) -> ForwardResponse {
        let accepted = request.messages.len();
        for message in request.messages {
            self.relay(now, message, from_role == Role::Worker);
        }
        ForwardResponse { accepted }
    }

    /// A worker takes messages from its stream and acknowledges them.
    pub(super) fn take_stream_messages(
        &mut self,
        now: Now,
        stream: RequestId,
        batch: MessageBatch,
    ) {
        let mut misaddressed = 0;
        let mut copies = Vec::new();
        let total = batch.messages.len();
        if let Some(core) = self.worker.registered_core() {
            *self
                .stats
                .received_from
                .entry(core.to_string())
                .or_default() += total as u64;
        }
        for position in 0..total {
            let index = if self.forwarding.reverse_stream_batches {
                total - 1 - position
            } else {
                position
            };
            let Some(message) = batch.messages.get(index) else {
                continue;
            };
            match message.targets.iter().find(|t| t.node == self.id) {
                Some(target) => self.deliver(message, target.seq),
                None => {
                    misaddressed += 1;
                    copies.extend(DroppedCopy::of(message));
                }
            }
        }
        if misaddressed > 0 {
            // Acknowledged below with the rest: the core would only send
            // them here again.
            let core = self
                .worker
                .registered_core()
                .cloned()
                .unwrap_or_else(|| self.id.clone());
            self.count_drops(&core, DropReason::Misaddressed, misaddressed, copies);
        }
        let through = match self.forwarding.ack_through {
            Some((on, through)) if on == stream => through.max(batch.batch),
            _ => batch.batch,
        };
        self.forwarding.ack_through = Some((stream, through));
        self.send_ack(now);
    }

    /// The stream this worker reads now, if any.
    fn current_stream(&self) -> Option<RequestId> {
        self.worker.stream_request()
    }

    fn send_ack(&mut self, now: Now) {
        if self.is_pending(|p| matches!(p, Pending::WorkerAck { .. })) {
            return;
        }
        let Some((stream, through)) = self.forwarding.ack_through.take() else {
            return;
        };
        // An acknowledgement of a stream this worker no longer reads would
        // tell its core (perhaps another core, counting its own batches)
        // that batches arrived which never did.
        if self.current_stream() != Some(stream) {
            return;
        }
        let body = encode_json(&AckRequest { through });
        self.send_to_core(
            now,
            Endpoint::Ack,
            body,
            Pending::WorkerAck { stream, through },
        );
    }

    pub(super) fn on_ack_answered(
        &mut self,
        now: Now,
        stream: RequestId,
        through: u64,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let failed = !result.is_ok_and(|r| r.status() == StatusCode::OK);
        // A failed ack goes again with the next one, unless the stream it
        // belongs to was replaced meanwhile: the new one sends again
        // whatever the old one had not had acknowledged.
        if failed && self.current_stream() == Some(stream) {
            let next = match self.forwarding.ack_through {
                Some((on, pending)) if on == stream => pending.max(through),
                _ => through,
            };
            self.forwarding.ack_through = Some((stream, next));
        }
        if self.phase == Phase::Running {
            self.send_ack(now);
        }
    }

    /// A core takes a worker's acknowledgement of stream batches.
    /// The acknowledged messages are the worker's confirmations: it took
    /// them for local delivery.
    pub(super) fn serve_ack(&mut self, worker: &NodeId, request: &AckRequest) {
        let mut taken = std::mem::take(&mut self.forwarding.confirm_buffer);
        if let Some(link) = self.forwarding.links.get_mut(worker) {
            link.ack_through_each(BatchId(request.through), |message| {
                if message.qos == Qos::AtMostOnce {
                    return;
                }
                for target in message.targets.iter().filter(|t| t.node == *worker) {
                    taken.push((message.origin.clone(), message.incarnation, target.seq));
                }
            });
        }
        for (origin, incarnation, seq) in taken.drain(..) {
            self.confirm_copy(&origin, incarnation, worker, seq);
        }
        self.forwarding.confirm_buffer = taken;
    }

    /// A stream to `worker` broke or was replaced: unacknowledged batches go
    /// out again on the next one.
    pub(super) fn rewind_stream_link(&mut self, now: Now, worker: &NodeId) {
        if let Some(link) = self.forwarding.links.get_mut(worker) {
            let dropped = link.rewind(now.instant);
            self.report_drops(Some(worker), dropped);
        }
    }

    /// A worker's new stream starts numbering acknowledgements afresh.
    pub(super) fn reset_stream_acks(&mut self) {
        self.forwarding.ack_through = None;
    }

    /// Links of members that died or left, and stream links of workers that
    /// moved to another core, are closed. What they held is routed again
    /// from here: a worker that failed over is reached through its new
    /// core, and only targets that are really gone count as dropped.
    /// Sequence numbers towards them keep counting: a member that refutes
    /// its death keeps its deduplication log.
    pub(super) fn close_stale_links(
        &mut self,
        now: Now,
        records: &[crate::wire::messages::MemberRecord],
    ) {
        for record in records {
            let moved_away = record.role == Role::Worker && record.home != self.id;
            if !(record.state.is_gone() || moved_away) {
                continue;
            }
            let Some(mut link) = self.forwarding.links.remove(&record.id) else {
                continue;
            };
            // Handed over, not dropped: the link's counters must not say
            // otherwise. Whatever no path reaches any more is counted by
            // `relay` as it finds out.
            let held = link.hand_over();
            add_stats(
                self.forwarding.closed.entry(record.id.clone()).or_default(),
                &link.stats(),
            );
            for item in held {
                self.relay(now, item, true);
            }
        }
    }
}
