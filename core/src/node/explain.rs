//! Why a message on a topic reaches each member, or why not: what
//! `GET /explain` answers, computed from the state the node already holds
//! and changing none of it.
//!
//! The answer is this node's view. A publisher decides the receivers from
//! its own copy of the routing table; while the cluster is converged that
//! copy equals this node's. A shared group's turns are kept by each
//! publisher, so only the node asked knows whose turn is next for its own
//! publishes.

use serde::{Deserialize, Serialize};

use super::status::{millis, DestinationState};
use super::Node;
use crate::id::{NodeId, Role};
use crate::routing::{FilterMatch, Subscription, TopicName};
use crate::time::Instant;
use crate::wire::explain::{ExplainQuery, ExplainQueryError};
use crate::wire::messages::{MemberRecord, MemberState};

/// What `GET /explain?topic=T` answers: for every member, whether a message
/// published on T reaches it and why.
///
/// ```
/// use mqtt_cluster_core::wire::explain::ExplainQuery;
/// use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
///
/// let config = Config::from_yaml_str("core: true\nnodeName: c1\nsecret: s3cret-s3cret\n").unwrap();
/// let now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1));
/// let mut node = Node::new(config, now, 1).unwrap();
/// node.subscribe(now, "site/+/temp")?;
///
/// let query = ExplainQuery::parse(Some("topic=site%2F1%2Ftemp"))?;
/// let explained = node.explain(&query)?;
/// let me = &explained.members[0];
/// assert!(me.reached);
/// assert_eq!(me.filters[0].to_string(), "site/+/temp");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Explanation {
    /// The node that explains: every state below is as it sees it.
    pub node: NodeId,
    /// The topic.
    pub topic: TopicName,
    /// The member assumed to publish (the node asked, unless the query
    /// named another).
    pub from: NodeId,
    /// Every filter in this node's routing table that matches the topic.
    pub filters: Vec<MatchedFilter>,
    /// Every member this node knows of, tombstones included, by id.
    pub members: Vec<MemberVerdict>,
}

impl Explanation {
    /// The verdict on the member called `id`.
    pub fn member(&self, id: &str) -> Option<&MemberVerdict> {
        self.members.iter().find(|m| m.id.as_str() == id)
    }
}

/// One filter matching the topic, with who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchedFilter {
    /// The filter, plain or `$share/{group}/{filter}`.
    pub filter: Subscription,
    /// The members holding it, by id.
    pub holders: Vec<NodeId>,
    /// For a shared group, the holder the publisher's next message goes
    /// to, when the publisher is the node asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NodeId>,
    /// For a shared group: how the holder is picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Whether the message reaches one member, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberVerdict {
    /// The member.
    pub id: NodeId,
    /// Core or worker.
    pub role: Role,
    /// Its state in this node's member list.
    pub state: MemberState,
    /// The core it is registered with (a core is its own).
    pub home: NodeId,
    /// Whether a message published now reaches it.
    pub reached: bool,
    /// The matching filters it holds.
    pub filters: Vec<Subscription>,
    /// Why it is not reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Unreached>,
    /// The hops the message takes, from the publisher to this member;
    /// empty when it publishes to itself (delivered locally) or when
    /// nothing would be sent to it.
    pub path: Vec<Hop>,
    /// How long ago this node last heard from it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard_ms: Option<u64>,
    /// How far this node's copy of its routes lags the updates it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_lag: Option<RoutesLag>,
    /// When the node asked publishes: what it waits on this member to
    /// confirm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationState>,
}

/// Why a member is not reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Unreached {
    /// It holds no filter matching the topic (as far as this node knows).
    NoMatchingFilter,
    /// It holds the topic only through shared groups, and the publisher's
    /// next message goes to another holder.
    NotItsTurn {
        /// The group's subscription.
        filter: Subscription,
        /// The holder whose turn it is.
        next: NodeId,
    },
    /// It holds the topic only through shared groups whose turns another
    /// node (the publisher) keeps: it may or may not be picked.
    PublisherPicks {
        /// The group's subscription.
        filter: Subscription,
        /// The node that keeps the turns.
        publisher: NodeId,
    },
    /// Declared dead: its routes were dropped.
    Dead,
    /// It left the cluster.
    Left,
    /// It missed its heartbeats for longer than `suspectTimeout`: copies
    /// wait in queues and are delivered if it is heard from again before
    /// they expire (`messageExpiry`).
    Suspect {
        /// Since when it is silent, as far as this node knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silent_ms: Option<u64>,
    },
    /// A core on the path is cut off from this node: silent for longer
    /// than `suspectTimeout`, or declared dead here.
    Partitioned {
        /// The core.
        core: NodeId,
        /// Its state in this node's member list.
        state: MemberState,
        /// How long this node has not heard from it.
        silent_ms: u64,
    },
    /// This node has not received all of its routes: an update left a gap
    /// (or a snapshot is still arriving in parts), and the member's
    /// current filters may match.
    RoutesLag,
}

/// How far this node's copy of a member's routes lags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutesLag {
    /// The member's incarnation whose routes are held, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_incarnation: Option<u64>,
    /// The number of its last route update held (0 when none).
    pub held: u64,
    /// The incarnation of the newest update heard of.
    pub heard_incarnation: u64,
    /// The number of the newest update heard of.
    pub heard: u64,
    /// Updates missing in between; absent when they are of different
    /// incarnations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<u64>,
}

/// One hop of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hop {
    /// The node sending.
    pub from: NodeId,
    /// The node receiving.
    pub to: NodeId,
    /// The link's state, when the sending node is the node asked (no other
    /// link's state is known here). `None` also before the first message
    /// on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<HopLink>,
}

/// The state of one of the node's own links.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HopLink {
    /// Messages waiting in its queue.
    pub queued: usize,
    /// Messages sent and not yet acknowledged, or awaiting a retry.
    pub in_flight: usize,
    /// Its window is full: nothing more is sent until an acknowledgement.
    pub busy: bool,
    /// A failed batch waits out its backoff before it goes again.
    pub retrying: bool,
    /// How long the oldest message on it has waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
    /// The last batch that failed on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LinkError>,
}

/// A batch that failed on a link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkError {
    /// How long ago.
    pub ago_ms: u64,
    /// What went wrong: the transport error, or the peer's answer.
    pub error: String,
}

/// The last failure of a link, as the node keeps it.
#[derive(Clone, Debug)]
pub(super) struct LinkFailure {
    pub(super) at: Instant,
    pub(super) error: String,
}

/// A `GET /explain` the node cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// The query is malformed: `400 bad_query`.
    #[error(transparent)]
    Query(#[from] ExplainQueryError),
    /// `from` names no member this node knows: `422 unknown_publisher`.
    #[error("{from} is not a member this node knows")]
    UnknownPublisher {
        /// The member named.
        from: NodeId,
    },
    /// `from` names a member that is dead or left: `422 publisher_gone`.
    #[error("{from} is {state:?}: it publishes nothing")]
    PublisherGone {
        /// The member named.
        from: NodeId,
        /// Dead or left.
        state: MemberState,
    },
}

impl ExplainError {
    /// `400` or `422`.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ExplainError::Query(e) => e.status(),
            ExplainError::UnknownPublisher { .. } | ExplainError::PublisherGone { .. } => {
                http::StatusCode::UNPROCESSABLE_ENTITY
            }
        }
    }

    /// Short snake_case name, the `error` of the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            ExplainError::Query(_) => "bad_query",
            ExplainError::UnknownPublisher { .. } => "unknown_publisher",
            ExplainError::PublisherGone { .. } => "publisher_gone",
        }
    }
}

impl Node {
    /// Explains, for every member, whether a message published on
    /// `query.topic` by `query.from` (this node by default) reaches it: the
    /// filters that match, a shared group's pick, the path and the state of
    /// this node's links on it, and for a member not reached, the reason.
    /// Changes nothing, not even a shared group's turn.
    pub fn explain(&self, query: &ExplainQuery) -> Result<Explanation, ExplainError> {
        let from = query.from.as_ref().unwrap_or(&self.id);
        let publisher = self
            .membership
            .get(from)
            .ok_or_else(|| ExplainError::UnknownPublisher { from: from.clone() })?;
        if publisher.state.is_gone() {
            return Err(ExplainError::PublisherGone {
                from: from.clone(),
                state: publisher.state,
            });
        }
        let own_turns = *from == self.id;
        let matched = self.routes.matching_filters(&query.topic);
        let filters = matched
            .iter()
            .map(|m| MatchedFilter {
                filter: m.subscription.clone(),
                holders: m.holders.clone(),
                next: m.next.clone().filter(|_| own_turns),
                why: m.subscription.share_group().map(|_| {
                    if own_turns {
                        "one holder per message, in turn by node id".to_owned()
                    } else {
                        format!("one holder per message, in turns {from} keeps")
                    }
                }),
            })
            .collect();
        // What this node waits on each destination for, when it publishes.
        let destinations = own_turns.then(|| self.destinations());
        let members = self
            .membership
            .records()
            .map(|target| {
                let mut verdict = self.verdict(publisher, target, &matched, own_turns);
                verdict.destination = destinations
                    .as_ref()
                    .and_then(|d| d.get(&target.id).copied());
                verdict
            })
            .collect();
        Ok(Explanation {
            node: self.id.clone(),
            topic: query.topic.clone(),
            from: from.clone(),
            filters,
            members,
        })
    }

    fn verdict(
        &self,
        publisher: &MemberRecord,
        target: &MemberRecord,
        matched: &[FilterMatch],
        own_turns: bool,
    ) -> MemberVerdict {
        let now = self.latest.instant;
        let held: Vec<&FilterMatch> = matched
            .iter()
            .filter(|m| m.holders.contains(&target.id))
            .collect();
        let receives = held.iter().any(|m| match m.subscription.share_group() {
            None => true,
            Some(_) => own_turns && m.next.as_ref() == Some(&target.id),
        });
        let routes_lag = self.routes.lag_of(&target.id).map(|lag| RoutesLag {
            held_incarnation: lag.held.map(|(incarnation, _)| incarnation.0),
            held: lag.held.map_or(0, |(_, seq)| seq),
            heard_incarnation: lag.heard.0 .0,
            heard: lag.heard.1,
            gap: lag.gap(),
        });
        let reason = match target.state {
            MemberState::Dead => Some(Unreached::Dead),
            MemberState::Left => Some(Unreached::Left),
            _ if !receives && routes_lag.is_some() => Some(Unreached::RoutesLag),
            _ if !receives => Some(match held.first() {
                None => Unreached::NoMatchingFilter,
                Some(group) if own_turns => Unreached::NotItsTurn {
                    filter: group.subscription.clone(),
                    next: group.next.clone().unwrap_or_else(|| target.id.clone()),
                },
                Some(group) => Unreached::PublisherPicks {
                    filter: group.subscription.clone(),
                    publisher: publisher.id.clone(),
                },
            }),
            _ => None,
        };
        // Where a copy is sent: its path, and whether a hop on it is cut off.
        let path = (receives && !target.state.is_gone()).then(|| self.path(publisher, target));
        let reason = reason.or_else(|| {
            path.as_deref()
                .and_then(|path| self.cut_off(path, target, now))
        });
        MemberVerdict {
            id: target.id.clone(),
            role: target.role,
            state: target.state,
            home: target.home.clone(),
            reached: reason.is_none(),
            filters: held.iter().map(|m| m.subscription.clone()).collect(),
            path: path.map_or_else(Vec::new, |path| self.hops(&path, now)),
            reason,
            last_heard_ms: self
                .membership
                .last_heard(&target.id)
                .filter(|_| target.id != self.id)
                .map(|at| millis(now.saturating_since(at))),
            routes_lag,
            destination: None,
        }
    }

    /// The nodes a message from `publisher` to `target` passes: a worker
    /// sends to its core, a core to the target's core, that core to its
    /// worker.
    fn path(&self, publisher: &MemberRecord, target: &MemberRecord) -> Vec<NodeId> {
        let core_of = |r: &MemberRecord| match r.role {
            Role::Core => r.id.clone(),
            Role::Worker => r.home.clone(),
        };
        if publisher.id == target.id {
            return vec![target.id.clone()];
        }
        let mut path = vec![publisher.id.clone(), core_of(publisher), core_of(target)];
        path.push(target.id.clone());
        path.dedup();
        path
    }

    /// Why a message on `path` does not get through from here, if it does
    /// not: a core on it is cut off from this node, or the target is
    /// suspect.
    fn cut_off(&self, path: &[NodeId], target: &MemberRecord, now: Instant) -> Option<Unreached> {
        let suspect_after = self.config.suspect_timeout;
        for id in path.iter().filter(|id| **id != self.id) {
            let Some(record) = self.membership.get(id) else {
                continue;
            };
            if record.role != Role::Core {
                continue;
            }
            let silence = self.membership.silence(id, now);
            // Only a core hears other cores directly; a worker judges them
            // by the verdicts it is told.
            let silent = self.role == Role::Core && silence > suspect_after;
            if record.state != MemberState::Alive || silent {
                return Some(Unreached::Partitioned {
                    core: id.clone(),
                    state: record.state,
                    silent_ms: millis(silence),
                });
            }
        }
        (target.state == MemberState::Suspect).then(|| Unreached::Suspect {
            silent_ms: self
                .membership
                .last_heard(&target.id)
                .map(|at| millis(now.saturating_since(at))),
        })
    }

    /// Each hop of `path`, with this node's link state where it sends.
    fn hops(&self, path: &[NodeId], now: Instant) -> Vec<Hop> {
        path.windows(2)
            .filter_map(|pair| match pair {
                [from, to] => Some(Hop {
                    from: from.clone(),
                    to: to.clone(),
                    link: (*from == self.id)
                        .then(|| {
                            self.forwarding
                                .hop_link(to, self.worker.registered_core(), now)
                        })
                        .flatten(),
                }),
                _ => None,
            })
            .collect()
    }
}
