//! Who a node signs its requests as.

use http::HeaderValue;

use crate::id::{Incarnation, NodeId};

/// A sender's node id and incarnation, with their header values rendered
/// once.
///
/// A node sends many requests within one incarnation, and rendering and
/// checking the same two header values for each of them was a noticeable
/// part of signing. Keep one `Identity` and replace it when the incarnation
/// changes; [`Authenticator::sign_as`](super::Authenticator::sign_as) then
/// copies the values instead of building them.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use mqtt_cluster_core::auth::{Authenticator, Identity, Secret};
/// use mqtt_cluster_core::{Incarnation, NodeId, WallTime};
///
/// let mut auth = Authenticator::new(Some(Secret::new("s3cret-s3cret")), Duration::from_secs(30), 64);
/// let me = Identity::new(NodeId::new("worker-1").unwrap(), Incarnation(2));
/// let now = WallTime::from_unix_millis(1_700_000_000_000);
/// for counter in 1..=3 {
///     let mut request = http::Request::post("/heartbeat").body(Bytes::new()).unwrap();
///     auth.sign_as(&mut request, &me, counter, now);
///     assert_eq!(auth.verify(&request, now).unwrap().node, *me.node());
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Identity {
    node: NodeId,
    incarnation: Incarnation,
    /// `None` only for a name that is not a valid header value, which
    /// [`NodeId`] rules out; the receiver then refuses the request as
    /// missing its node rather than this side panicking.
    node_header: Option<HeaderValue>,
    incarnation_header: HeaderValue,
}

impl Identity {
    /// `node` in `incarnation`.
    pub fn new(node: NodeId, incarnation: Incarnation) -> Self {
        let node_header = HeaderValue::from_str(node.as_str()).ok();
        Identity {
            node,
            incarnation,
            node_header,
            incarnation_header: HeaderValue::from(incarnation.0),
        }
    }

    /// The node id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    pub(super) fn node_header(&self) -> Option<&HeaderValue> {
        self.node_header.as_ref()
    }

    pub(super) fn incarnation_header(&self) -> &HeaderValue {
        &self.incarnation_header
    }
}
