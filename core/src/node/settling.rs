//! Whether this node's routing table may still lack members the cluster
//! has, so that a publish routed now may miss subscribers.
//!
//! Three moments leave the table short (ARCHITECTURE §6): when a partition
//! heals, a core adopts the other side's verdict that a member it still
//! hears from is dead, and drops that member's routes until the member
//! answers with a new incarnation and its routes come back; a node that
//! took a new incarnation, registered again or failed over rebuilds its
//! standing until it converges; and a member back under a new incarnation
//! (after such a death, or seen straight under its new life, which
//! replaces the routes this node held of the former) has its routes of
//! this life still on their way.
//! Convergence alone cannot tell: dead members do not count in it, and it
//! says peers hold this node's routes, not that this node holds theirs.
//!
//! The node follows its own events, in the order the host gets them, and
//! answers at the moment of each publish ([`Routing::settling`]), so a host
//! can never route on a table its event loop has not caught up with.
//! A state lasts at most a bound (`deadTimeout + requestTimeout`): a member
//! that never comes back is gone, and its routes rightly with it.
//!
//! [`Routing::settling`]: super::Routing::settling

use std::collections::{BTreeMap, BTreeSet};

use super::Event;
use crate::id::{Incarnation, NodeId};
use std::time::Duration;

use crate::time::Instant;

/// What keeps this node's routes unsettled, from its own events.
/// Follows a node's events to tell whether its routing table may lack
/// members the cluster has. Every [`Node`](super::Node) keeps one over its
/// own events (what [`Routing::settling`](super::Routing::settling)
/// answers); a host that waits for the members to settle before it
/// publishes again keeps another over the events it receives, so both
/// follow the same rules.
///
/// ```
/// use std::time::Duration;
/// use mqtt_cluster_core::node::{Event, Settling};
/// use mqtt_cluster_core::{Incarnation, Instant, NodeId, Role};
///
/// let bound = Duration::from_secs(4); // deadTimeout + requestTimeout
/// let c1 = NodeId::new("c1").unwrap();
/// let mut settling = Settling::default();
/// // A death this node never suspected: heard from another node.
/// settling.observe(&Event::MemberDead { node: c1.clone() }, Instant::from_millis(0));
/// assert!(settling.is_settling(Instant::from_millis(10), bound));
/// let back = Event::MemberJoined { node: c1, role: Role::Core, incarnation: Incarnation(2) };
/// settling.observe(&back, Instant::from_millis(200));
/// settling.observe(&Event::Converged { after_ms: 3 }, Instant::from_millis(250));
/// // Its routes under incarnation 2 are not here yet.
/// assert!(settling.is_settling(Instant::from_millis(260), bound));
/// settling.routes_arrived(|_, incarnation| incarnation >= Incarnation(2));
/// assert!(!settling.is_settling(Instant::from_millis(270), bound));
/// ```
#[derive(Debug, Default, Clone)]
pub struct Settling {
    /// Members this node suspects itself.
    suspected: BTreeSet<NodeId>,
    /// Members declared dead elsewhere while this node still heard from
    /// them, awaited back, and since when.
    awaited: BTreeMap<NodeId, Instant>,
    /// Since when this node rebuilds its own standing, or waits for the
    /// routes of a member that came back.
    rejoining: Option<Instant>,
    /// Members back under a new incarnation whose former routes this node
    /// dropped (a death heard from elsewhere, or the new life replacing
    /// the old): that incarnation, and since when. Their routes follow
    /// them; convergence does not say this node holds them (it says peers
    /// hold this node's).
    back: BTreeMap<NodeId, (Incarnation, Instant)>,
}

impl Settling {
    /// Follows one event the node emitted at `at`.
    pub fn observe(&mut self, event: &Event, at: Instant) {
        match event {
            Event::MemberSuspect { node } => {
                self.suspected.insert(node.clone());
            }
            Event::MemberAlive { node } => {
                self.suspected.remove(node);
            }
            Event::MemberJoined {
                node, incarnation, ..
            } => {
                self.suspected.remove(node);
                // Back, but its routes follow it: wait until converged and
                // until they are here.
                if self.awaited.remove(node).is_some() {
                    self.rejoining.get_or_insert(at);
                    self.back.insert(node.clone(), (*incarnation, at));
                }
            }
            Event::MemberDead { node } => {
                // A member watched falling silent is rightly routed past.
                let watched = self.suspected.remove(node);
                if !watched {
                    self.awaited.insert(node.clone(), at);
                }
            }
            Event::MemberLeft { node } => {
                self.suspected.remove(node);
                self.awaited.remove(node);
                self.back.remove(node);
            }
            Event::Reincarnated { .. }
            | Event::Registered { .. }
            | Event::CoreUnreachable { .. } => {
                self.rejoining.get_or_insert(at);
            }
            Event::Converged { .. } | Event::Synced { .. } => self.rejoining = None,
            _ => {}
        }
    }

    /// Whether the routes may lack members at `now`; each cause counts for
    /// at most `bound` after it began (a node uses `deadTimeout +
    /// requestTimeout`).
    pub fn is_settling(&self, now: Instant, bound: Duration) -> bool {
        let fresh = |since: &Instant| now < *since + bound;
        self.awaited.values().any(fresh)
            || self.rejoining.as_ref().is_some_and(fresh)
            || self.back.values().any(|(_, since)| fresh(since))
    }

    /// This node dropped the routes it held of `node`'s former life, which
    /// it now sees under `incarnation` without having seen it die: its
    /// routes of this life are on their way.
    pub(super) fn routes_replaced(&mut self, node: &NodeId, incarnation: Incarnation, at: Instant) {
        self.back.insert(node.clone(), (incarnation, at));
    }

    /// Members that came back stop counting once `holds(member,
    /// incarnation)` says this node holds their routes under the
    /// incarnation they came back with. A node asks its routing table; a
    /// host that cannot see it answers `true` (the node's own
    /// `Routing::settling` still tells).
    pub fn routes_arrived(&mut self, holds: impl Fn(&NodeId, Incarnation) -> bool) {
        self.back
            .retain(|node, (incarnation, _)| !holds(node, *incarnation));
    }

    /// Forgets members no longer known.
    pub(super) fn retain(&mut self, known: impl Fn(&NodeId) -> bool) {
        self.suspected.retain(|n| known(n));
        self.awaited.retain(|n, _| known(n));
        self.back.retain(|n, _| known(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Incarnation, Role};

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    const BOUND: Duration = Duration::from_millis(4_000);

    #[test]
    fn a_member_whose_former_life_was_replaced_counts_until_its_routes_are_here() {
        let mut s = Settling::default();
        // A first join replaces nothing: nothing is awaited.
        let joined = Event::MemberJoined {
            node: node("c3"),
            role: Role::Core,
            incarnation: Incarnation(7),
        };
        s.observe(&joined, at(0));
        assert!(!s.is_settling(at(10), BOUND));
        // No death seen, but the routes of its former life were dropped.
        s.routes_replaced(&node("c3"), Incarnation(8), at(20));
        assert!(s.is_settling(at(30), BOUND));
        s.routes_arrived(|_, incarnation| incarnation <= Incarnation(7));
        assert!(s.is_settling(at(40), BOUND), "only its former life's");
        s.routes_arrived(|_, incarnation| incarnation <= Incarnation(8));
        assert!(!s.is_settling(at(50), BOUND));
        // Routes that never come count only within the bound.
        s.routes_replaced(&node("c3"), Incarnation(9), at(100));
        assert!(!s.is_settling(at(100) + BOUND, BOUND));
    }

    #[test]
    fn a_death_heard_from_elsewhere_settles_once_the_member_is_back_with_its_routes() {
        let mut s = Settling::default();
        s.observe(&Event::MemberDead { node: node("c1") }, at(0));
        assert!(s.is_settling(at(10), BOUND));
        let joined = Event::MemberJoined {
            node: node("c1"),
            role: Role::Core,
            incarnation: Incarnation(2),
        };
        s.observe(&joined, at(100));
        assert!(s.is_settling(at(110), BOUND), "its routes follow it");
        s.observe(&Event::Converged { after_ms: 5 }, at(150));
        // Converged says peers hold this node's routes, not that its
        // routes of c1's new life are here.
        assert!(s.is_settling(at(160), BOUND));
        s.routes_arrived(|_, incarnation| incarnation < Incarnation(2));
        assert!(s.is_settling(at(170), BOUND), "only its old life's routes");
        s.routes_arrived(|_, incarnation| incarnation <= Incarnation(2));
        assert!(!s.is_settling(at(180), BOUND));
    }

    #[test]
    fn a_member_watched_falling_silent_settles_nothing_and_every_cause_expires() {
        let mut s = Settling::default();
        s.observe(&Event::MemberSuspect { node: node("w1") }, at(0));
        s.observe(&Event::MemberDead { node: node("w1") }, at(2_000));
        assert!(!s.is_settling(at(2_001), BOUND));
        s.observe(&Event::MemberDead { node: node("w2") }, at(3_000));
        s.observe(
            &Event::Reincarnated {
                incarnation: Incarnation(9),
            },
            at(3_500),
        );
        assert!(s.is_settling(at(6_999), BOUND));
        assert!(s.is_settling(at(7_000), BOUND), "rejoining still counts");
        assert!(!s.is_settling(at(7_500), BOUND), "both causes expired");
    }
}
