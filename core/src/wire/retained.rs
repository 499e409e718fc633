//! The bodies that carry the cluster's retained set (DESIGN §4, added with
//! cluster-wide retained messages).
//!
//! - `POST /retained` (worker → its core, core → core) carries a
//!   [`RetainedRequest`]: entries to merge, answered with
//!   [`Accepted`](super::messages::Accepted). A refused body changes nothing.
//! - The push stream carries the same body as the SSE frame `retained`
//!   (core → worker).
//! - `POST /heartbeat` carries `retainedDigest` both ways
//!   ([`HeartbeatRequest`](super::messages::HeartbeatRequest),
//!   [`HeartbeatResponse`](super::messages::HeartbeatResponse)): a node that
//!   sees another digest than its own sends its whole set, in pages.
//!
//! Each body holds whole entries and is never larger than the sender's
//! `maxBodySize`: an entry that cannot fit a page alone is refused where it
//! is published, so every page fits.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::messages::Qos;
use crate::id::NodeId;
use crate::routing::TopicName;

/// Orders writes to one topic: a Lamport clock, then the node that wrote.
/// The highest stamp wins everywhere, whatever order writes arrive in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetainStamp {
    /// Lamport time of the write; never 0 (clocks start at an incarnation).
    pub clock: u64,
    /// The node the retained message was published on.
    pub origin: NodeId,
}

/// One topic's retained message, or its clearing (an empty payload), as it
/// travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetainedEntry {
    /// The topic.
    pub topic: TopicName,
    /// Which write this is.
    pub stamp: RetainStamp,
    /// The payload, base64 on the wire; empty clears the topic.
    #[serde(with = "base64_bytes")]
    pub payload: Bytes,
    /// The QoS it was published with.
    #[serde(default)]
    pub qos: Qos,
    /// MQTT 5 properties, carried opaquely (base64 on the wire).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "base64_opt_bytes"
    )]
    pub properties: Option<Bytes>,
}

impl RetainedEntry {
    /// Whether this entry clears its topic.
    pub fn is_clear(&self) -> bool {
        self.payload.is_empty()
    }
}

/// `POST /retained`, and the data of the stream frame `retained`: entries
/// of the sender's retained set, to merge (last writer wins per topic).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetainedRequest {
    /// The entries, in any order.
    pub entries: Vec<RetainedEntry>,
}

/// A `POST /retained` body that is well-formed JSON but not a valid set of
/// entries. Nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetainedError {
    /// A stamp with clock 0, which no node ever gives.
    #[error("retained entry for {topic} has clock 0")]
    ZeroClock {
        /// The entry's topic (cut to a printable length).
        topic: String,
    },
}

impl RetainedRequest {
    /// Checks every entry; the whole body is refused if one is invalid.
    pub fn check(&self) -> Result<(), RetainedError> {
        match self.entries.iter().find(|e| e.stamp.clock == 0) {
            Some(entry) => Err(RetainedError::ZeroClock {
                topic: entry.topic.as_str().chars().take(128).collect(),
            }),
            None => Ok(()),
        }
    }
}

/// The SSE event name of the stream frame that carries retained entries.
pub const RETAINED_EVENT: &str = "retained";

mod base64_bytes {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = super::super::Text::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.0.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

mod base64_opt_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::base64_bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::base64_bytes")] Bytes);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(topic: &str, clock: u64, payload: &'static [u8]) -> RetainedEntry {
        RetainedEntry {
            topic: TopicName::new(topic).unwrap(),
            stamp: RetainStamp {
                clock,
                origin: NodeId::new("w1").unwrap(),
            },
            payload: Bytes::from_static(payload),
            qos: Qos::AtLeastOnce,
            properties: Some(Bytes::from_static(b"\x01\x02")),
        }
    }

    #[test]
    fn entries_round_trip_through_json() {
        let request = RetainedRequest {
            entries: vec![entry("a/b", 7, b"hello"), entry("c", 9, b"")],
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"entries":[{"topic":"a/b","stamp":{"clock":7,"origin":"w1"},"payload":"aGVsbG8=","qos":1,"properties":"AQI="},{"topic":"c","stamp":{"clock":9,"origin":"w1"},"payload":"","qos":1,"properties":"AQI="}]}"#
        );
        let back: RetainedRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, request);
        assert!(back.entries[1].is_clear());
    }

    #[test]
    fn bad_entries_are_refused() {
        let bad = [
            r#"{"entries":[{"topic":"a/+","stamp":{"clock":1,"origin":"w1"},"payload":""}]}"#,
            r#"{"entries":[{"topic":"a","stamp":{"clock":1,"origin":"w1"},"payload":"!!"}]}"#,
            r#"{"entries":[{"topic":"a","stamp":{"clock":1,"origin":""},"payload":""}]}"#,
            r#"{"entries":[{"topic":"a","stamp":{"clock":1,"origin":"w1"},"payload":"","x":1}]}"#,
            r#"{"entries":[{"topic":"a","stamp":{"clock":1,"origin":"w1"},"payload":"","qos":3}]}"#,
            r#"{"entries":[{"topic":"a","stamp":{"clock":-1,"origin":"w1"},"payload":""}]}"#,
        ];
        for text in bad {
            assert!(
                serde_json::from_str::<RetainedRequest>(text).is_err(),
                "{text}"
            );
        }
        let zero: RetainedRequest = serde_json::from_str(
            r#"{"entries":[{"topic":"a","stamp":{"clock":0,"origin":"w1"},"payload":""}]}"#,
        )
        .unwrap();
        assert_eq!(
            zero.check(),
            Err(RetainedError::ZeroClock { topic: "a".into() })
        );
    }
}
