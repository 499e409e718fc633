//! Header names of the cluster protocol and its version.
//!
//! Every request except `GET /health` carries all of these (see
//! [`crate::auth::Authenticator::sign`]); the signature is left out only in an
//! open cluster, which has no secret to sign with.

use http::HeaderName;

/// The protocol version this node speaks. A peer sending any other value in
/// [`X_CLUSTER_VERSION`] is refused with `400`, because a changed version means
/// the bodies or the signature changed meaning.
pub const PROTOCOL_VERSION: u32 = 1;

/// The sender's protocol version, in decimal (see [`PROTOCOL_VERSION`]).
pub const X_CLUSTER_VERSION: HeaderName = HeaderName::from_static("x-cluster-version");

/// The sender's [`NodeId`](crate::NodeId).
pub const X_CLUSTER_NODE: HeaderName = HeaderName::from_static("x-cluster-node");

/// The sender's [`Incarnation`](crate::Incarnation), in decimal.
pub const X_CLUSTER_INCARNATION: HeaderName = HeaderName::from_static("x-cluster-incarnation");

/// The sender's request counter within its incarnation, in decimal, starting
/// at 1. The receiver refuses a counter it has already seen.
pub const X_CLUSTER_COUNTER: HeaderName = HeaderName::from_static("x-cluster-counter");

/// The sender's wall-clock time when it signed, in milliseconds since the
/// Unix epoch ([`WallTime`](crate::WallTime)), in decimal.
pub const X_CLUSTER_TIMESTAMP: HeaderName = HeaderName::from_static("x-cluster-timestamp");

/// HMAC-SHA256 of the request, as 64 lowercase hex digits.
pub const X_CLUSTER_SIGNATURE: HeaderName = HeaderName::from_static("x-cluster-signature");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_and_distinct() {
        let names = [
            &X_CLUSTER_VERSION,
            &X_CLUSTER_NODE,
            &X_CLUSTER_INCARNATION,
            &X_CLUSTER_COUNTER,
            &X_CLUSTER_TIMESTAMP,
            &X_CLUSTER_SIGNATURE,
        ];
        for (i, a) in names.iter().enumerate() {
            assert_eq!(a.as_str(), a.as_str().to_ascii_lowercase());
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
