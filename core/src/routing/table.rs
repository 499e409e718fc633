//! The cluster routing table: which nodes hold which subscriptions, and who
//! must receive a publish.

use std::collections::BTreeMap;
use std::fmt;

use super::interner::Interner;
use super::members::{Members, RouteKey, PLAIN};
use super::shared::SharedGroup;
use super::topic::{ShareGroup, Subscription, TopicFilter, TopicName};
use super::topic_levels::{LazyLevels, LevelSpans};
use super::trie::Trie;
use crate::id::NodeId;

/// Maps each subscription to the nodes holding it, and each topic to the
/// nodes that must receive its messages.
///
/// A node holds a subscription at most once; holding it again changes
/// nothing. Matching follows MQTT 3.1.1/5: `+` matches one level, `#` its
/// parent level and everything below, and topics starting with `$` escape
/// filters that start with a wildcard. A shared subscription
/// `$share/{group}/{filter}` sends each message to one of the nodes holding
/// that same group and filter, in turn, in node-id order.
///
/// Everything is deterministic: the outcome of any sequence of calls
/// depends on nothing else. (The one randomly keyed hash map inside, which
/// interns level strings, is never iterated.)
///
/// Methods: getters [`len`](Self::len), [`is_empty`](Self::is_empty),
/// [`node_count`](Self::node_count), [`nodes`](Self::nodes),
/// [`contains`](Self::contains), [`routes_of`](Self::routes_of); mutators
/// [`insert`](Self::insert), [`remove`](Self::remove),
/// [`remove_node`](Self::remove_node); and [`matches`](Self::matches), which
/// takes `&mut self` because it advances the shared groups' turns.
///
/// ```
/// use mqtt_cluster_core::routing::{RouteTable, Subscription, TopicName};
/// use mqtt_cluster_core::NodeId;
///
/// let (a, b, c) = (NodeId::new("a").unwrap(), NodeId::new("b").unwrap(), NodeId::new("c").unwrap());
/// let mut table = RouteTable::new();
/// table.insert(&a, &Subscription::parse("site/+/temp").unwrap());
/// table.insert(&b, &Subscription::parse("$share/g/site/#").unwrap());
/// table.insert(&c, &Subscription::parse("$share/g/site/#").unwrap());
///
/// let topic = TopicName::new("site/1/temp").unwrap();
/// let mut out = Vec::new();
/// table.matches(&topic, &mut out);
/// assert_eq!(out, [a.clone(), b.clone()]); // the group's turn starts with b...
/// table.matches(&topic, &mut out);
/// assert_eq!(out, [a.clone(), c.clone()]); // ...and passes to c
///
/// assert_eq!(table.remove_node(&a), 1);
/// assert_eq!(table.len(), 2);
/// ```
pub struct RouteTable {
    trie: Trie,
    /// Level strings and share-group names.
    labels: Interner,
    members: Members,
    /// Keyed by (trie node, group label): the node's groups are one range.
    shared: BTreeMap<(u32, u32), SharedGroup>,
    routes: usize,
    scratch: MatchScratch,
}

/// Buffers `matches` reuses, so that a lookup allocates nothing once they
/// have grown to the table's needs.
#[derive(Default)]
struct MatchScratch {
    levels: LevelSpans,
    stack: Vec<(u32, usize)>,
    /// `seen[member] == generation` marks a member already in `hits` for
    /// the current lookup; bumping the generation clears all marks at once.
    seen: Vec<u32>,
    generation: u32,
    /// The receivers found so far, as ranks in node-id order.
    hits: Vec<u32>,
}

impl MatchScratch {
    /// Starts a lookup for members indexed below `bound`.
    fn begin(&mut self, bound: usize) {
        self.hits.clear();
        if self.seen.len() < bound {
            self.seen.resize(bound, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // After 2^32 lookups old marks could alias the new generation.
            self.seen.fill(0);
            self.generation = 1;
        }
    }
}

impl MatchScratch {
    /// Levels kept room for between lookups; a deeper topic (up to 65536
    /// levels) gets its buffers for the one lookup only.
    const KEPT_LEVELS: usize = 256;

    fn trim(&mut self) {
        if self.levels.capacity() > Self::KEPT_LEVELS {
            self.levels = Vec::new();
        }
        if self.stack.capacity() > 2 * Self::KEPT_LEVELS {
            self.stack = Vec::new();
        }
    }
}

/// Adds `member`'s rank to `hits` unless this lookup already has it.
#[inline]
fn note_hit(
    seen: &mut [u32],
    generation: u32,
    hits: &mut Vec<u32>,
    members: &Members,
    member: u32,
) {
    let Some(mark) = usize::try_from(member).ok().and_then(|m| seen.get_mut(m)) else {
        return;
    };
    if *mark != generation {
        *mark = generation;
        if let Some(rank) = members.rank(member) {
            hits.push(rank);
        }
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes)
            .field("nodes", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable {
            trie: Trie::default(),
            labels: Interner::default(),
            members: Members::default(),
            shared: BTreeMap::new(),
            routes: 0,
            scratch: MatchScratch::default(),
        }
    }

    /// How many (node, subscription) routes the table holds.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// How many nodes hold at least one route.
    pub fn node_count(&self) -> usize {
        self.members.len()
    }

    /// The nodes holding at least one route, sorted.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.members.ids().cloned().collect()
    }

    /// Whether `node` holds `sub`.
    pub fn contains(&self, node: &NodeId, sub: &Subscription) -> bool {
        self.route_key(node, sub)
            .and_then(|(member, key)| self.members.get(member).map(|m| m.routes.contains(&key)))
            .unwrap_or(false)
    }

    /// The subscriptions `node` holds, sorted; empty for an unknown node.
    pub fn routes_of(&self, node: &NodeId) -> Vec<Subscription> {
        let Some(member) = self
            .members
            .index_of(node)
            .and_then(|i| self.members.get(i))
        else {
            return Vec::new();
        };
        let mut subs: Vec<Subscription> = member
            .routes
            .iter()
            .filter_map(|&key| self.subscription_of(key))
            .collect();
        subs.sort_unstable();
        subs
    }

    /// Records that `node` holds `sub`. True if it did not hold it yet.
    ///
    /// False also in the one case the table cannot grow: when more than
    /// about four billion distinct levels or trie nodes would be needed.
    pub fn insert(&mut self, node: &NodeId, sub: &Subscription) -> bool {
        let Some(member) = self.members.index_or_add(node) else {
            return false;
        };
        let added = self.attach(member, sub);
        if added {
            self.routes += 1;
        } else {
            self.members.forget_if_idle(member);
        }
        added
    }

    /// Forgets that `node` holds `sub`. True if it held it.
    pub fn remove(&mut self, node: &NodeId, sub: &Subscription) -> bool {
        let Some((member, key)) = self.route_key(node, sub) else {
            return false;
        };
        let held = self
            .members
            .get_mut(member)
            .is_some_and(|m| m.routes.remove(&key));
        if !held {
            return false;
        }
        self.detach(member, key);
        self.members.forget_if_idle(member);
        self.routes = self.routes.saturating_sub(1);
        self.after_removal();
        true
    }

    /// Forgets every route of `node` at once; returns how many there were.
    pub fn remove_node(&mut self, node: &NodeId) -> usize {
        let Some(member) = self.members.index_of(node) else {
            return 0;
        };
        let routes = self
            .members
            .get_mut(member)
            .map(|m| std::mem::take(&mut m.routes))
            .unwrap_or_default();
        for &key in &routes {
            self.detach(member, key);
        }
        self.members.forget_if_idle(member);
        self.routes = self.routes.saturating_sub(routes.len());
        self.after_removal();
        routes.len()
    }

    /// Puts into `out` (cleared first) every node that must receive a
    /// message published on `topic`, sorted, each once: the holders of each
    /// matching plain filter, and for each matching shared (group, filter)
    /// the one holder whose turn it is.
    ///
    /// Reuse `out` across calls: once the table's buffers have grown, a
    /// lookup allocates nothing.
    pub fn matches(&mut self, topic: &TopicName, out: &mut Vec<NodeId>) {
        out.clear();
        self.scratch.begin(self.members.index_bound());
        let MatchScratch {
            levels,
            stack,
            seen,
            generation,
            hits,
        } = &mut self.scratch;
        let generation = *generation;

        let mut levels = LazyLevels::split(topic.as_str(), levels, &self.labels);
        let shared = &mut self.shared;
        let members = &self.members;
        self.trie
            .walk_matches(&mut levels, topic.is_dollar(), stack, |index, node| {
                for &member in node.holders() {
                    note_hit(seen, generation, hits, members, member);
                }
                if node.shared_groups > 0 {
                    for (_, group) in shared.range_mut((index, 0)..=(index, u32::MAX)) {
                        if let Some(member) = group.take_turn() {
                            note_hit(seen, generation, hits, members, member);
                        }
                    }
                }
            });
        hits.sort_unstable();
        out.extend(
            hits.iter()
                .filter_map(|&rank| self.members.id_by_rank(rank).cloned()),
        );
        self.scratch.trim();
    }

    /// Every filter of the table that matches `topic`, with who holds it
    /// and, for a shared group, whose turn it is: what
    /// [`matches`](Self::matches) would decide, explained, and without
    /// passing any turn on. Sorted by subscription.
    ///
    /// ```
    /// use mqtt_cluster_core::routing::{RouteTable, Subscription, TopicName};
    /// use mqtt_cluster_core::NodeId;
    ///
    /// let (a, b) = (NodeId::new("a").unwrap(), NodeId::new("b").unwrap());
    /// let mut table = RouteTable::new();
    /// table.insert(&a, &Subscription::parse("$share/g/site/#").unwrap());
    /// table.insert(&b, &Subscription::parse("$share/g/site/#").unwrap());
    /// let topic = TopicName::new("site/1").unwrap();
    /// let explained = table.matching_filters(&topic);
    /// assert_eq!(explained[0].holders, [a.clone(), b.clone()]);
    /// assert_eq!(explained[0].next, Some(a.clone()));
    /// table.matches(&topic, &mut Vec::new());
    /// assert_eq!(table.matching_filters(&topic)[0].next, Some(b));
    /// ```
    pub fn matching_filters(&self, topic: &TopicName) -> Vec<FilterMatch> {
        let mut spans = LevelSpans::new();
        let mut stack = Vec::new();
        let mut levels = LazyLevels::split(topic.as_str(), &mut spans, &self.labels);
        let mut found = Vec::new();
        let ids = |members: &[u32]| -> Vec<NodeId> {
            members
                .iter()
                .filter_map(|&m| self.members.id(m).cloned())
                .collect()
        };
        self.trie
            .walk_matches(&mut levels, topic.is_dollar(), &mut stack, |index, node| {
                if !node.holders().is_empty() {
                    let key = RouteKey {
                        leaf: index,
                        group: PLAIN,
                    };
                    if let Some(subscription) = self.subscription_of(key) {
                        let mut holders = ids(node.holders());
                        holders.sort_unstable();
                        found.push(FilterMatch {
                            subscription,
                            holders,
                            next: None,
                        });
                    }
                }
                if node.shared_groups > 0 {
                    for (&(leaf, group), shared) in
                        self.shared.range((index, 0)..=(index, u32::MAX))
                    {
                        let key = RouteKey { leaf, group };
                        if let Some(subscription) = self.subscription_of(key) {
                            found.push(FilterMatch {
                                subscription,
                                holders: ids(shared.members()),
                                next: shared.peek().and_then(|m| self.members.id(m).cloned()),
                            });
                        }
                    }
                }
            });
        found.sort_by(|a, b| a.subscription.cmp(&b.subscription));
        found
    }

    /// The member index and route key of an existing (node, sub) pair's
    /// parts, or `None` if any part is unknown to the table.
    fn route_key(&self, node: &NodeId, sub: &Subscription) -> Option<(u32, RouteKey)> {
        let member = self.members.index_of(node)?;
        let leaf = self.trie.find(sub.filter(), &self.labels)?;
        let group = match sub.share_group() {
            None => PLAIN,
            Some(group) => self.labels.lookup(group)?,
        };
        Some((member, RouteKey { leaf, group }))
    }

    /// Makes `member` a holder of `sub`; false if it already was one or the
    /// table cannot grow. Leaves nothing behind when it returns false.
    fn attach(&mut self, member: u32, sub: &Subscription) -> bool {
        let Some(leaf) = self.trie.find_or_create(sub.filter(), &mut self.labels) else {
            return false;
        };
        let key = match sub {
            Subscription::Plain(_) => {
                let added = self
                    .trie
                    .node_mut(leaf)
                    .is_some_and(|node| node.add_holder(member));
                added.then_some(RouteKey { leaf, group: PLAIN })
            }
            Subscription::Shared { group, .. } => self.join_group(member, leaf, group),
        };
        match key {
            Some(key) => {
                if let Some(m) = self.members.get_mut(member) {
                    m.routes.insert(key);
                }
                true
            }
            None => {
                self.trie.prune(leaf, &mut self.labels);
                false
            }
        }
    }

    fn join_group(&mut self, member: u32, leaf: u32, group: &ShareGroup) -> Option<RouteKey> {
        if let Some(label) = self.labels.lookup(group.as_str()) {
            if let Some(existing) = self.shared.get_mut(&(leaf, label)) {
                return existing
                    .add(member, &self.members)
                    .then_some(RouteKey { leaf, group: label });
            }
        }
        let label = self.labels.acquire(group.as_str())?;
        let mut fresh = SharedGroup::default();
        if !fresh.add(member, &self.members) {
            self.labels.release(label);
            return None;
        }
        self.shared.insert((leaf, label), fresh);
        if let Some(node) = self.trie.node_mut(leaf) {
            node.shared_groups += 1;
        }
        Some(RouteKey { leaf, group: label })
    }

    /// Undoes [`attach`](Self::attach) for a key already taken out of the
    /// member's route list, pruning what is left unused.
    fn detach(&mut self, member: u32, key: RouteKey) {
        if key.group == PLAIN {
            if let Some(node) = self.trie.node_mut(key.leaf) {
                node.remove_holder(member);
            }
        } else if let Some(group) = self.shared.get_mut(&(key.leaf, key.group)) {
            group.remove(member);
            if group.is_empty() {
                self.shared.remove(&(key.leaf, key.group));
                self.labels.release(key.group);
                if let Some(node) = self.trie.node_mut(key.leaf) {
                    node.shared_groups = node.shared_groups.saturating_sub(1);
                }
            }
        }
        self.trie.prune(key.leaf, &mut self.labels);
    }

    /// Returns memory once removals have left the table mostly empty.
    fn after_removal(&mut self) {
        if self.routes == 0 {
            *self = RouteTable::new();
            return;
        }
        if self.trie.wants_compaction() {
            let new_index = self.trie.compact();
            let follow = |old: u32| {
                usize::try_from(old)
                    .ok()
                    .and_then(|old| new_index.get(old))
                    .copied()
            };
            for member in self.members.iter_mut() {
                member.routes = std::mem::take(&mut member.routes)
                    .into_iter()
                    .filter_map(|key| {
                        Some(RouteKey {
                            leaf: follow(key.leaf)?,
                            group: key.group,
                        })
                    })
                    .collect();
            }
            self.shared = std::mem::take(&mut self.shared)
                .into_iter()
                .filter_map(|((leaf, group), members)| Some(((follow(leaf)?, group), members)))
                .collect();
        }
    }

    fn subscription_of(&self, key: RouteKey) -> Option<Subscription> {
        let text = self.trie.filter_text(key.leaf, &self.labels)?;
        let filter = TopicFilter::from_validated_levels(text).ok()?;
        if key.group == PLAIN {
            return Some(Subscription::Plain(filter));
        }
        let group = ShareGroup::new(self.labels.resolve(key.group)?).ok()?;
        Some(Subscription::Shared { group, filter })
    }

    /// The capacities of the lookup buffers, to check that warm lookups
    /// do not allocate.
    #[cfg(test)]
    pub(super) fn scratch_capacities(&self) -> [usize; 4] {
        let scratch = &self.scratch;
        [
            scratch.levels.capacity(),
            scratch.stack.capacity(),
            scratch.seen.capacity(),
            scratch.hits.capacity(),
        ]
    }

    /// Trie arena slots, vacant ones included.
    #[cfg(test)]
    pub(super) fn trie_slots(&self) -> usize {
        self.trie.slot_count()
    }

    /// Sizes of the internal structures, to check that removals free what
    /// they should.
    #[cfg(test)]
    pub(super) fn footprint(&self) -> Footprint {
        Footprint {
            trie_nodes: self.trie.live_nodes(),
            labels: self.labels.len(),
            members: self.members.len(),
            shared_groups: self.shared.len(),
        }
    }

    /// Each shared group's members, in turn order, by node id.
    #[cfg(test)]
    pub(super) fn shared_members(&self) -> Vec<Vec<NodeId>> {
        self.shared
            .values()
            .map(|g| {
                g.members()
                    .iter()
                    .filter_map(|&m| self.members.id(m).cloned())
                    .collect()
            })
            .collect()
    }
}

/// One filter that matches a topic, from
/// [`RouteTable::matching_filters`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterMatch {
    /// The filter, plain or `$share/{group}/{filter}`.
    pub subscription: Subscription,
    /// The nodes holding it, by id (for a shared group, its turn order).
    pub holders: Vec<NodeId>,
    /// For a shared group, the holder the next matching message goes to;
    /// `None` for a plain filter, whose holders all receive it.
    pub next: Option<NodeId>,
}

/// See [`RouteTable::footprint`].
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Footprint {
    pub(super) trie_nodes: usize,
    pub(super) labels: usize,
    pub(super) members: usize,
    pub(super) shared_groups: usize,
}
