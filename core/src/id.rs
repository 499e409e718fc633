//! Names of things: nodes, their incarnations, requests and streams.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest node name accepted, in bytes.
pub const MAX_NODE_NAME: usize = 64;

/// A node's identity in the cluster: its name.
///
/// Names are chosen by the node (the `nodeName` key, or one derived from the
/// node's seed) and are unique cluster-wide, so any core can confirm an id at
/// registration without asking the others; two cores registering two nodes at
/// the same moment can never hand out the same id. A restarted node keeps its
/// id and comes back with a higher [`Incarnation`].
///
/// A name is 1 to 64 characters of `A-Z a-z 0-9 . _ - :`.
///
/// ```
/// use mqtt_cluster_core::NodeId;
/// let id = NodeId::new("worker-1").unwrap();
/// assert_eq!(id.as_str(), "worker-1");
/// assert!(NodeId::new("no spaces").is_err());
/// ```
#[derive(Clone, Eq)]
pub struct NodeId(Arc<str>);

// Ids are the keys of most of the node's maps, so they are compared all
// the time, nearly always with short names. Two clones of one id compare
// equal without reading the text, and otherwise the text is compared in
// place rather than through a `memcmp` call, with the same result as
// comparing the strings.
impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

// Hashes the name, as a derived impl would: equal ids, equal hashes.
impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

// Maps keyed by id can be searched with a name's text, which spares
// building an id (and allocating) to look up one already known. The text
// compares and hashes as the id does, as `Borrow` requires.
impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Ord for NodeId {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        compare_text(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Lexicographic byte order, as `<[u8]>::cmp`. Names are short and
/// usually differ within their first bytes, where a plain loop is done
/// before a `memcmp` call would have started.
#[inline]
fn compare_text(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// A node name that breaks the rules of [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid node name {name:?}: expected 1 to {MAX_NODE_NAME} characters of A-Z a-z 0-9 . _ - :"
)]
pub struct InvalidNodeId {
    /// The refused name (cut to a printable length).
    pub name: String,
}

impl NodeId {
    /// Checks `name` and makes it an id.
    pub fn new(name: &str) -> Result<Self, InvalidNodeId> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NODE_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if valid {
            Ok(NodeId(Arc::from(name)))
        } else {
            Err(InvalidNodeId {
                name: name.chars().take(80).collect(),
            })
        }
    }

    /// A name for a node whose configuration gives none: `node-` and 16 hex
    /// digits spread from `seed`, so nearby seeds give unrelated names.
    ///
    /// ```
    /// use mqtt_cluster_core::NodeId;
    /// assert_ne!(NodeId::from_seed(1), NodeId::from_seed(2));
    /// assert!(NodeId::from_seed(1).as_str().starts_with("node-"));
    /// ```
    pub fn from_seed(seed: u64) -> NodeId {
        // SplitMix64's finaliser.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        NodeId(Arc::from(format!("node-{z:016x}").as_str()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let crate::wire::Text(s) = crate::wire::Text::deserialize(d)?;
        NodeId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// How many times a node has started (or refuted its own death).
///
/// A node picks its incarnation at start from the wall clock, so a restart
/// comes back higher; it bumps it when it learns the cluster declared its
/// current incarnation dead. Anything a node sent under an older incarnation
/// is stale and refused with `409`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether a node serves the cluster API (core) or only connects to one (worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the HTTP API, holds the authoritative member list, relays messages.
    Core,
    /// Registers with a core and receives everything over its stream.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Core => "core",
            Role::Worker => "worker",
        })
    }
}

/// Names one request the node asked the runtime to send ([`crate::Transmit`]).
/// The runtime reports its fate exactly once with this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Names one open `GET /stream` response a core is feeding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ids_order_and_compare_as_their_names(
            a in "[A-Za-z0-9._:-]{1,20}",
            b in "[A-Za-z0-9._:-]{1,20}",
        ) {
            let (x, y) = (NodeId::new(&a).unwrap(), NodeId::new(&b).unwrap());
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.clone().cmp(&x), std::cmp::Ordering::Equal);
        }

        #[test]
        fn text_comparison_is_byte_order(a in any::<Vec<u8>>(), b in any::<Vec<u8>>()) {
            prop_assert_eq!(compare_text(&a, &b), a.cmp(&b));
            let prefix = &a[..a.len() / 2];
            prop_assert_eq!(compare_text(prefix, &a), prefix.cmp(&a[..]));
        }
    }
}
