//! Whether this node's view of the cluster agrees with every core's, from
//! what the heartbeats already carry, and since when.
//!
//! A core agrees with a peer core when the member digest the peer last gave
//! equals its own, the peer holds every change of its route log (the
//! peer's `routesHeld`), and the peer's last heartbeat did not say this core
//! lacks part of the peer's log (`routesBehind`). A worker agrees with its core when the core's last
//! digest equals its own, its stream is open and read to the core's routing
//! table, and its own routes are acknowledged; with the other cores, when
//! its core's last heartbeat answer said the core agrees with them
//! (`coresDiffering` empty). Dead and departed cores do not count; a
//! suspect one does (nobody can vouch for its view).
//!
//! The judgement is only as fresh as the last answer from each core: a node
//! reports converged when, as of every core's last word, the views were
//! the same. A node whose own view changes stops being converged at once,
//! because what the others last said no longer matches it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use super::Node;
use crate::id::{NodeId, Role};
use crate::time::{Instant, Now};
use crate::wire::messages::MemberState;

/// Route changes waiting to be held by every core are remembered up to
/// this many (the oldest are then measured no more).
const MAX_PENDING_ROUTE_CHANGES: usize = 4096;

/// Upper bounds, in seconds, of the histograms' buckets.
pub(super) const BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A Prometheus histogram of durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`Histogram::bounds`].
    pub buckets: [u64; BUCKETS.len()],
    /// All observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// The buckets' upper bounds, in seconds.
    pub fn bounds() -> &'static [f64] {
        &BUCKETS
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Whether this node's view agrees with every core's, in
/// [`Status::convergence`](super::Status::convergence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConvergenceStatus {
    /// Every core's last word agrees with this node's view.
    pub converged: bool,
    /// When the node became converged, or stopped being so (node clock,
    /// milliseconds).
    pub since_ms: u64,
    /// The same moment on the node's wall clock (Unix milliseconds), for
    /// operators comparing nodes.
    pub since_unix_ms: u64,
    /// The cores whose view differs or is unknown: for a worker, its core,
    /// or when it agrees with its core, the cores its core differs from; a
    /// worker not registered with any core names itself.
    pub differing: Vec<NodeId>,
}

/// What a node keeps to judge convergence.
#[derive(Debug)]
pub(super) struct Convergence {
    /// The member digest each core last gave.
    digests: BTreeMap<NodeId, String>,
    /// How far each peer core said it holds this core's route log.
    routes_held: BTreeMap<NodeId, Option<u64>>,
    /// Peer cores whose last heartbeat said this core lacks part of their
    /// route log.
    behind: BTreeSet<NodeId>,
    converged: bool,
    since: Now,
    differing: Vec<NodeId>,
    /// Route log versions not yet held by every core, with when they were
    /// logged.
    pending_routes: VecDeque<(u64, Instant)>,
    logged_through: u64,
    /// What the last judgement was made from: the same inputs give the
    /// same judgement, so a publish or a forwarded batch skips it.
    judged: Option<Inputs>,
    /// Judge again even if the inputs look the same (a tick; a sync
    /// answered, which may complete a peer's routes).
    pub(super) due: bool,
    /// For a worker: which cores its core last said it differs from, and
    /// which core said so (a word from a former core does not count).
    core_differing: Option<(NodeId, Vec<NodeId>)>,
    /// Bumped whenever a core's word is heard.
    heard: u64,
    pub(super) divergence: Histogram,
    pub(super) propagation: Histogram,
}

impl Convergence {
    pub(super) fn new(now: Now) -> Self {
        Convergence {
            digests: BTreeMap::new(),
            routes_held: BTreeMap::new(),
            behind: BTreeSet::new(),
            converged: false,
            since: now,
            differing: Vec::new(),
            pending_routes: VecDeque::new(),
            logged_through: 0,
            judged: None,
            due: true,
            core_differing: None,
            heard: 0,
            divergence: Histogram::default(),
            propagation: Histogram::default(),
        }
    }

    /// A core's member digest, from its heartbeat or its answer to ours.
    pub(super) fn heard_digest(&mut self, core: &NodeId, digest: &str) {
        self.heard += 1;
        match self.digests.get_mut(core) {
            Some(known) if known == digest => {}
            Some(known) => digest.clone_into(known),
            None => {
                self.digests.insert(core.clone(), digest.to_owned());
            }
        }
    }

    /// A worker's core said which cores its view differs from.
    pub(super) fn heard_core_differing(&mut self, core: &NodeId, differing: Vec<NodeId>) {
        self.heard += 1;
        self.core_differing = Some((core.clone(), differing));
    }

    /// How far a peer core holds this core's route log.
    pub(super) fn heard_routes_held(&mut self, core: &NodeId, held: Option<u64>) {
        self.heard += 1;
        self.routes_held.insert(core.clone(), held);
    }

    /// A peer core's heartbeat said whether this core lacks part of its
    /// route log.
    pub(super) fn heard_routes_behind(&mut self, core: &NodeId, behind: bool) {
        self.heard += 1;
        if behind {
            self.behind.insert(core.clone());
        } else {
            self.behind.remove(core);
        }
    }

    /// Forgets what members no longer in the list said.
    pub(super) fn retain(&mut self, known: impl Fn(&NodeId) -> bool) {
        self.digests.retain(|n, _| known(n));
        self.behind.retain(|n| known(n));
        self.routes_held.retain(|n, _| known(n));
    }

    pub(super) fn status(&self) -> ConvergenceStatus {
        ConvergenceStatus {
            converged: self.converged,
            since_ms: self.since.instant.as_millis(),
            since_unix_ms: self.since.wall.as_unix_millis(),
            differing: self.differing.clone(),
        }
    }
}

/// Everything a judgement depends on, cheaply compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inputs {
    members_version: u64,
    route_end: u64,
    heard: u64,
    running: bool,
    /// A worker's: registered, synced, stream open, routes acknowledged.
    worker: (bool, bool, bool, bool),
}

/// What changed when the judgement was made again.
pub(super) enum Turn {
    Converged { after_ms: u64 },
    Diverged { differing: Vec<NodeId> },
}

impl Node {
    /// Judges convergence again; emits an event when it turned.
    pub(super) fn update_convergence(&mut self, at: Now) {
        let now = at.instant;
        let route_end = self.route_log_version();
        let inputs = Inputs {
            members_version: self.membership.version(),
            route_end,
            heard: self.convergence.heard,
            running: self.phase == super::Phase::Running,
            worker: match self.role {
                Role::Core => (false, false, false, false),
                Role::Worker => (
                    self.worker.registered_core().is_some(),
                    self.worker.synced(),
                    self.worker.stream_request().is_some(),
                    self.own_routes_in_step(),
                ),
            },
        };
        if !self.convergence.due && self.convergence.judged == Some(inputs) {
            return;
        }
        self.convergence.judged = Some(inputs);
        self.convergence.due = false;
        let differing = self.differing_views();
        let held_by_all = self.route_log_held_by_every_core();
        let running = self.phase == super::Phase::Running;
        let c = &mut self.convergence;
        if route_end > c.logged_through {
            c.logged_through = route_end;
            c.pending_routes.push_back((route_end, now));
            if c.pending_routes.len() > MAX_PENDING_ROUTE_CHANGES {
                c.pending_routes.pop_front();
            }
        }
        if let Some(held) = held_by_all {
            while c.pending_routes.front().is_some_and(|(v, _)| *v <= held) {
                if let Some((_, at)) = c.pending_routes.pop_front() {
                    c.propagation
                        .observe(now.saturating_since(at).as_secs_f64());
                }
            }
        }
        let converged = running && differing.is_empty();
        let turn = if converged && !c.converged {
            let after = now.saturating_since(c.since.instant);
            c.divergence.observe(after.as_secs_f64());
            Some(Turn::Converged {
                after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            })
        } else if !converged && c.converged {
            Some(Turn::Diverged {
                differing: differing.clone(),
            })
        } else {
            None
        };
        if turn.is_some() {
            c.converged = converged;
            c.since = at;
        }
        c.differing = differing;
        match turn {
            Some(Turn::Converged { after_ms }) => {
                self.events.push_back(super::Event::Converged { after_ms })
            }
            Some(Turn::Diverged { differing }) => {
                self.events.push_back(super::Event::Diverged { differing })
            }
            None => {}
        }
    }

    /// The other cores whose view counts: alive or suspect.
    fn counted_cores(&self) -> impl Iterator<Item = &crate::wire::messages::MemberRecord> {
        self.membership.records().filter(|r| {
            r.role == Role::Core
                && r.id != self.id
                && matches!(r.state, MemberState::Alive | MemberState::Suspect)
        })
    }

    /// The cores whose last word differs from this node's view.
    fn differing_views(&self) -> Vec<NodeId> {
        let digest = self.membership.digest();
        let c = &self.convergence;
        match self.role {
            Role::Core => {
                let end = self.route_log_version();
                self.counted_cores()
                    .filter(|r| {
                        r.state == MemberState::Suspect
                            || c.digests.get(&r.id) != Some(&digest)
                            || !self.peer_holds_route_log(&r.id, r.incarnation, end)
                            || c.behind.contains(&r.id)
                    })
                    .map(|r| r.id.clone())
                    .collect()
            }
            Role::Worker => match self.worker.registered_core() {
                Some(core) => {
                    let agrees = c.digests.get(core) == Some(&digest)
                        && self.worker.synced()
                        && self.worker.stream_request().is_some()
                        && self.own_routes_in_step();
                    // Past its core, a worker agrees with the cores its
                    // core agrees with, as of the core's last answer.
                    match &c.core_differing {
                        Some((said_by, others)) if agrees && said_by == core => others.clone(),
                        _ => vec![core.clone()],
                    }
                }
                // Registering: no core to agree with yet.
                None => vec![self.id.clone()],
            },
        }
    }

    /// Whether `peer` holds every change of this core's route log up to
    /// `end`: it said so (`routesHeld`), or every sync carrying them was
    /// answered (a peer that took the changes in several pages cannot say
    /// how far it holds the log), or there is nothing to hold.
    fn peer_holds_route_log(
        &self,
        peer: &NodeId,
        incarnation: crate::id::Incarnation,
        end: u64,
    ) -> bool {
        end == 0
            || self.convergence.routes_held.get(peer).copied().flatten() == Some(end)
            || self.sync_outbox.delivered_through(peer, incarnation, end)
    }

    /// Whether the live peer core `peer` holds every change of this
    /// core's route log (what its heartbeats are told in `routesBehind`).
    pub(super) fn peer_holds_own_route_log(&self, peer: &NodeId) -> bool {
        self.membership.get(peer).is_none_or(|r| {
            self.peer_holds_route_log(peer, r.incarnation, self.route_log_version())
        })
    }

    fn route_log_version(&self) -> u64 {
        self.route_log.version()
    }

    /// The lowest position of this core's route log every other live core
    /// holds (from what it said, or from every sync to it answered); `None`
    /// while one holds none of it.
    fn route_log_held_by_every_core(&self) -> Option<u64> {
        let mut lowest = self.route_log_version();
        for record in self.counted_cores() {
            if self.peer_holds_route_log(&record.id, record.incarnation, lowest) {
                continue;
            }
            let held = self
                .convergence
                .routes_held
                .get(&record.id)
                .copied()
                .flatten()?;
            lowest = lowest.min(held);
        }
        Some(lowest)
    }
}
