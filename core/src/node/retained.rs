//! Keeping the cluster's retained set the same on every node.
//!
//! A host's retained publish goes into its node's copy of the set at once
//! (see [`crate::retained`] for the conflict rule and the bound) and is then
//! passed on as routes are: a worker sends it to its core
//! (`POST /retained`); a core pushes what changed to its workers' streams
//! (frame `retained`) and, for writes it is the source of (its own and its
//! workers'), to the other cores. Nothing waits for acknowledgements:
//! heartbeats carry a digest of the set both ways, and a node that hears a
//! digest other than its own sends its whole set, in pages that each fit
//! `maxBodySize`, so a lost push is repaired within a heartbeat or two. A
//! worker's new stream starts with the core's whole set after its `hello`,
//! and a worker that registers sends its own, so a node that joins late or
//! fails over has every retained message without asking.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{Event, Node, Pending, TransportError};
use crate::auth::Sender;
use crate::id::{NodeId, Role, StreamId};
use crate::retained::{page_budget, Merged, Pager, RetainRefusal, RetainedEntry};
use crate::time::Now;
use crate::wire::messages::Accepted;
use crate::wire::retained::{RetainedRequest, RETAINED_EVENT};
use crate::wire::{decode_response, json_response, sse, Endpoint};

use super::{Message, RequestError};

/// What a node with `retainedLimit: 0` puts in its heartbeats instead of a
/// digest: it keeps no set, and nobody should send it one.
pub(super) const RETAINED_OFF: &str = "-";

/// What a core remembers of the retained pushes to its workers' streams.
#[derive(Debug, Default)]
pub(super) struct RetainedPushes {
    /// Per worker: the core's digest when its whole set last went to the
    /// worker's current stream. A stream delivers in order, so sending the
    /// same set again on it would only repeat it.
    streamed: BTreeMap<NodeId, String>,
}

impl Node {
    /// Every retained message of the cluster, as this node holds it, sorted
    /// by topic. Empty when `retainedLimit` is 0.
    ///
    /// ```
    /// # use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
    /// use mqtt_cluster_core::node::Message;
    /// # let config = Config::from_yaml_str("core: true\nnodeName: c1\nsecret: s3cret-s3cret\n").unwrap();
    /// # let now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1));
    /// # let mut node = Node::new(config, now, 1).unwrap();
    /// node.publish(now, Message::new("lights/hall", "on")?.retained())?;
    /// let held: Vec<_> = node.retained().map(|m| m.topic.as_str()).collect();
    /// assert_eq!(held, ["lights/hall"]);
    /// // An empty retained payload clears the topic, here and everywhere.
    /// node.publish(now, Message::new("lights/hall", "")?.retained())?;
    /// assert_eq!(node.retained().count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retained(&self) -> impl Iterator<Item = &Message> {
        self.retained.retained()
    }

    /// This node's copy of the retained set, with the stamps that order
    /// its writes.
    pub fn retained_set(&self) -> &crate::retained::RetainedSet {
        &self.retained
    }

    /// The largest entry a page may carry.
    fn retained_budget(&self) -> usize {
        page_budget(self.config.max_body_size)
    }

    /// The digest this node puts in its heartbeats.
    pub(super) fn retained_digest_for_peers(&self) -> String {
        if self.retained.is_enabled() {
            self.retained.digest()
        } else {
            RETAINED_OFF.to_owned()
        }
    }

    /// Whether a peer's digest says it lacks something, or holds something
    /// this node lacks.
    fn retained_differs(&self, theirs: &str) -> bool {
        self.retained.is_enabled() && theirs != RETAINED_OFF && theirs != self.retained.digest()
    }

    /// The host published `message` with the retain flag: it goes into this
    /// node's copy at once (no event: the host stored it itself) and on to
    /// the cluster.
    pub(super) fn retain_published(&mut self, now: Now, message: &Message) {
        if !message.retain || !self.retained.is_enabled() {
            return;
        }
        let budget = self.retained_budget();
        match self.retained.publish(message, budget, now.instant) {
            Ok(entry) => self.pass_on_retained(now, vec![entry], None),
            Err(reason) => self.count_retain_refusal(message.topic.clone(), reason),
        }
    }

    fn count_retain_refusal(&mut self, topic: crate::routing::TopicName, reason: RetainRefusal) {
        self.stats.retained_refused += 1;
        *self.stats.retained_refusals.entry(reason).or_default() += 1;
        self.events
            .push_back(Event::RetainRefused { topic, reason });
    }

    /// Merges entries from a peer; returns those that were news.
    pub(super) fn merge_retained(
        &mut self,
        now: Now,
        entries: Vec<RetainedEntry>,
    ) -> Vec<RetainedEntry> {
        if !self.retained.is_enabled() {
            return Vec::new();
        }
        let budget = self.retained_budget();
        let mut news = Vec::new();
        for entry in entries {
            match self.retained.merge(entry.clone(), budget, now.instant) {
                Merged::Unchanged => {}
                Merged::Tombstone => news.push(entry),
                Merged::Set(message) => {
                    self.events.push_back(Event::RetainSet(message));
                    news.push(entry);
                }
                Merged::Cleared(topic) => {
                    self.events.push_back(Event::RetainCleared { topic });
                    news.push(entry);
                }
                Merged::SetEvicting(message, victim) => {
                    self.events.push_back(Event::RetainSet(message));
                    self.events.push_back(Event::RetainCleared {
                        topic: victim.clone(),
                    });
                    self.count_retain_refusal(victim, RetainRefusal::Limit);
                    news.push(entry);
                }
                Merged::Refused(topic, reason) => self.count_retain_refusal(topic, reason),
            }
        }
        news
    }

    /// Passes news on: a worker to its core; a core to its workers' streams
    /// (but the one it came from) and, unless it came from another core, to
    /// the other cores.
    fn pass_on_retained(&mut self, now: Now, news: Vec<RetainedEntry>, from: Option<&NodeId>) {
        if news.is_empty() {
            return;
        }
        let pages = Pager::pages(news, self.retained_budget());
        match self.role {
            Role::Worker => {
                if self.worker.registered_core().is_none() {
                    // Sent with the whole set once registered.
                    return;
                }
                for page in pages {
                    self.send_to_core(
                        now,
                        Endpoint::Retained,
                        page,
                        Pending::Retained { peer: None },
                    );
                }
            }
            Role::Core => {
                let skip = from.and_then(|n| self.core.stream_of(n));
                let streams: Vec<StreamId> =
                    self.core.streams().filter(|s| Some(*s) != skip).collect();
                for stream in streams {
                    for page in &pages {
                        self.push_retained_frame(stream, page);
                    }
                }
                let from_core = from
                    .is_some_and(|n| self.membership.get(n).is_some_and(|r| r.role == Role::Core));
                if !from_core {
                    let peers: Vec<NodeId> =
                        self.membership.peer_cores().map(|r| r.id.clone()).collect();
                    for peer in peers {
                        self.send_retained_pages(now, &peer, &pages);
                    }
                }
            }
        }
    }

    fn push_retained_frame(&mut self, stream: StreamId, page: &Bytes) {
        // A page is JSON text, so always UTF-8.
        let text = std::str::from_utf8(page).unwrap_or("{}");
        self.push_frame_bytes(stream, sse::encode(RETAINED_EVENT, text));
    }

    fn send_retained_pages(&mut self, now: Now, peer: &NodeId, pages: &[Bytes]) {
        let Some(url) = self.peer_address(peer) else {
            return;
        };
        for page in pages {
            self.send(
                now,
                &url,
                Some(peer.clone()),
                Endpoint::Retained,
                page.clone(),
                Pending::Retained {
                    peer: Some(peer.clone()),
                },
            );
        }
    }

    /// The whole set, in pages.
    fn retained_pages(&self) -> Vec<Bytes> {
        Pager::pages(self.retained.entries(), self.retained_budget())
    }

    /// Sends the whole set to a core or (`None`) a worker's core, unless a
    /// push to it is still on its way.
    fn push_whole_set(&mut self, now: Now, peer: Option<&NodeId>) {
        let target = peer.cloned();
        if self.is_pending(|p| matches!(p, Pending::Retained { peer } if *peer == target)) {
            return;
        }
        let pages = self.retained_pages();
        match peer {
            Some(peer) => self.send_retained_pages(now, peer, &pages),
            None if self.worker.registered_core().is_some() => {
                for page in pages {
                    self.send_to_core(
                        now,
                        Endpoint::Retained,
                        page,
                        Pending::Retained { peer: None },
                    );
                }
            }
            None => {}
        }
    }

    /// A heartbeat answer carried the peer's digest (`None`: a worker's
    /// core): if it differs, the peer gets this node's whole set. Its own
    /// heartbeat (or, for a worker, its core's answer to the worker's)
    /// brings the other half.
    pub(super) fn retained_after_heartbeat(
        &mut self,
        now: Now,
        peer: Option<&NodeId>,
        theirs: &str,
    ) {
        if self.retained_differs(theirs) && self.retained.entries().next().is_some() {
            self.push_whole_set(now, peer);
        }
    }

    /// A core heard a worker's heartbeat with `theirs` as digest: if it
    /// differs and the worker's stream has not had this set yet, the whole
    /// set goes to the stream.
    pub(super) fn retained_heard_worker(&mut self, worker: &NodeId, theirs: &str) {
        if !self.retained_differs(theirs) {
            return;
        }
        let Some(stream) = self.core.stream_of(worker) else {
            return;
        };
        let digest = self.retained.digest();
        if self.retained_pushes.streamed.get(worker) == Some(&digest) {
            return;
        }
        self.stream_whole_set(worker, stream);
    }

    /// A worker's new stream: after its `hello`, the whole set.
    pub(super) fn retained_after_hello(&mut self, worker: &NodeId, stream: StreamId) {
        self.retained_pushes.streamed.remove(worker);
        if self.retained.is_enabled() && self.retained.entries().next().is_some() {
            self.stream_whole_set(worker, stream);
        }
    }

    fn stream_whole_set(&mut self, worker: &NodeId, stream: StreamId) {
        for page in self.retained_pages() {
            self.push_retained_frame(stream, &page);
        }
        self.retained_pushes
            .streamed
            .insert(worker.clone(), self.retained.digest());
    }

    /// A worker registered (again): its core gets the worker's whole set,
    /// which holds what the worker published while it had no core.
    pub(super) fn retained_after_registration(&mut self, now: Now) {
        if self.retained.is_enabled() && self.retained.entries().next().is_some() {
            self.push_whole_set(now, None);
        }
    }

    /// A worker takes a `retained` frame from its stream.
    pub(super) fn take_retained_frame(&mut self, now: Now, page: RetainedRequest) {
        if page.check().is_err() {
            self.stats.stream_errors += 1;
            return;
        }
        self.merge_retained(now, page.entries);
    }

    /// `POST /retained` on a core. Everything is checked before anything
    /// is merged.
    pub(super) fn serve_retained(
        &mut self,
        now: Now,
        sender: &Sender,
        body: RetainedRequest,
    ) -> Result<http::Response<Bytes>, RequestError> {
        body.check()?;
        self.registered(sender)?;
        self.membership.heard(&sender.node, now.instant);
        let news = self.merge_retained(now, body.entries);
        self.pass_on_retained(now, news, Some(&sender.node));
        Ok(json_response(&Accepted { ok: true }))
    }

    /// The answer to a `POST /retained`: nothing to do but notice a core
    /// that forgot this node. A lost push is repaired by the digests.
    pub(super) fn on_retained_answered(
        &mut self,
        now: Now,
        peer: Option<NodeId>,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        let Ok(response) = result else { return };
        if response.status() == StatusCode::CONFLICT {
            match peer {
                None => self.worker_reregister(now),
                Some(peer) => self.reregister_with(now, &peer),
            }
            return;
        }
        if let Err(error) = decode_response::<Accepted>(&response, self.config.max_body_size) {
            self.count_bad_response(error.kind());
        }
    }

    /// Forgets old clearings (once per heartbeat interval).
    pub(super) fn retained_tick(&mut self, now: Now) {
        let keep = self.config.dead_timeout.saturating_mul(10);
        self.retained.forget_tombstones(now.instant, keep);
    }
}

/// A message as the host sees it, for event logs: the topic, the payload
/// and properties in base64, QoS and retain flag.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let b64 = |b: &Bytes| base64::engine::general_purpose::STANDARD.encode(b);
        let mut m = s.serialize_struct("Message", 5)?;
        m.serialize_field("topic", &self.topic)?;
        m.serialize_field("payload", &b64(&self.payload))?;
        m.serialize_field("qos", &self.qos)?;
        m.serialize_field("retain", &self.retain)?;
        match &self.properties {
            Some(p) => m.serialize_field("properties", &b64(p))?,
            None => m.skip_field("properties")?,
        }
        m.end()
    }
}
