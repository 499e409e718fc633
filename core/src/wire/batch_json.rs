//! The JSON of message batches, written straight into a buffer.
//!
//! `POST /forward` bodies and `messages` stream frames carry every forwarded
//! message, so their encoding is the hot path of a busy cluster. Generic
//! serde output spends its time escaping field names and base64 text that
//! need no escaping, and allocates a `String` per payload for the base64;
//! this writer knows the shape and skips that work.
//!
//! The bytes are exactly those `serde_json` writes for [`ForwardRequest`]
//! and [`MessageBatch`] (the tests compare the two on arbitrary messages),
//! so the wire format is unchanged and either side may use either encoder.
//!
//! Decoding goes through serde as before, with one difference: the messages
//! of a batch share a cache of the last origin, topic and target
//! names seen, so that a batch of messages from one origin to one node on a
//! few topics does not allocate (and validate) the same names hundreds of
//! times. A cached name is only reused for identical text, which was
//! validated when it was first seen.
//!
//! [`ForwardRequest`]: super::messages::ForwardRequest
//! [`MessageBatch`]: super::messages::MessageBatch

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::messages::{ForwardedMessage, Qos, Target};
use super::Text;
use crate::id::{Incarnation, NodeId};
use crate::routing::TopicName;

/// The body of `POST /forward` for `messages`, in order.
pub fn forward_request<'a, I>(messages: I) -> Bytes
where
    I: Iterator<Item = &'a ForwardedMessage> + Clone,
{
    let mut out = Vec::with_capacity(expected_len(messages.clone()).saturating_add(16));
    out.extend_from_slice(b"{\"messages\":");
    write_messages(&mut out, messages);
    out.push(b'}');
    Bytes::from(out)
}

/// Appends the JSON of a `messages` stream frame's data (a
/// [`MessageBatch`](super::messages::MessageBatch)) to `out`.
pub fn write_message_batch<'a, I>(out: &mut Vec<u8>, batch: u64, messages: I)
where
    I: Iterator<Item = &'a ForwardedMessage> + Clone,
{
    out.reserve(expected_len(messages.clone()).saturating_add(32));
    out.extend_from_slice(b"{\"batch\":");
    write_u64(out, batch);
    out.extend_from_slice(b",\"messages\":");
    write_messages(out, messages);
    out.push(b'}');
}

/// Bytes the JSON of `messages` takes, or a little more.
fn expected_len<'a>(messages: impl Iterator<Item = &'a ForwardedMessage>) -> usize {
    messages.map(ForwardedMessage::json_len_hint).sum()
}

fn write_messages<'a>(out: &mut Vec<u8>, messages: impl Iterator<Item = &'a ForwardedMessage>) {
    out.push(b'[');
    for (i, message) in messages.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_message(out, message);
    }
    out.push(b']');
}

/// One message, fields in declaration order as serde derives them.
fn write_message(out: &mut Vec<u8>, m: &ForwardedMessage) {
    out.extend_from_slice(b"{\"origin\":");
    write_str(out, m.origin.as_str());
    out.extend_from_slice(b",\"incarnation\":");
    write_u64(out, m.incarnation.0);
    out.extend_from_slice(b",\"topic\":");
    write_str(out, m.topic.as_str());
    out.extend_from_slice(b",\"payload\":");
    write_base64(out, &m.payload);
    out.extend_from_slice(b",\"qos\":");
    write_u64(out, u64::from(m.qos.as_u8()));
    out.extend_from_slice(if m.retain {
        b",\"retain\":true"
    } else {
        b",\"retain\":false"
    });
    if let Some(properties) = &m.properties {
        out.extend_from_slice(b",\"properties\":");
        write_base64(out, properties);
    }
    out.extend_from_slice(b",\"targets\":[");
    for (i, target) in m.targets.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"node\":");
        write_str(out, target.node.as_str());
        out.extend_from_slice(b",\"seq\":");
        write_u64(out, target.seq);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// A JSON string of base64 text, encoded in place at the end of `out`. The
/// base64 alphabet needs no escaping.
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    out.push(b'"');
    let start = out.len();
    let len = bytes.len().div_ceil(3).saturating_mul(4);
    out.resize(start.saturating_add(len), 0);
    let written = out
        .get_mut(start..)
        .and_then(|tail| engine.encode_slice(bytes, tail).ok())
        .unwrap_or(0);
    out.truncate(start.saturating_add(written));
    out.push(b'"');
}

/// A JSON string: text without anything to escape (the usual case: node
/// names cannot hold any, topics rarely do) is copied as it is, the rest
/// goes through `serde_json`'s own escaping, so both encoders agree on every
/// character.
fn write_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing a string into a `Vec` cannot fail; keep the JSON valid
        // should it ever do so.
        out.extend_from_slice(b"\"\"");
    }
}

/// A decimal number.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at = at.saturating_sub(1);
        if let Some(d) = digits.get_mut(at) {
            // `n % 10` is below 10: the cast keeps its value.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// The names the previous messages of a batch used.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    origin: Option<NodeId>,
    topic: Option<TopicName>,
    target: Option<NodeId>,
}

impl Recent {
    fn origin(&mut self, text: &str) -> Result<NodeId, String> {
        cached(&mut self.origin, text, NodeId::as_str, |t| {
            NodeId::new(t).map_err(|e| e.to_string())
        })
    }

    fn target(&mut self, text: &str) -> Result<NodeId, String> {
        cached(&mut self.target, text, NodeId::as_str, |t| {
            NodeId::new(t).map_err(|e| e.to_string())
        })
    }

    fn topic(&mut self, text: &str) -> Result<TopicName, String> {
        cached(&mut self.topic, text, TopicName::as_str, |t| {
            TopicName::new(t).map_err(|e| e.to_string())
        })
    }
}

/// The cached value if it spells `text`, else a new one (which is cached).
fn cached<T: Clone>(
    slot: &mut Option<T>,
    text: &str,
    as_str: impl Fn(&T) -> &str,
    make: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, String> {
    if let Some(value) = slot.as_ref().filter(|v| as_str(v) == text) {
        return Ok(value.clone());
    }
    let value = make(text)?;
    *slot = Some(value.clone());
    Ok(value)
}

/// Deserialises a sequence of messages sharing one [`Recent`] cache.
pub(crate) struct MessagesSeed;

impl<'de> DeserializeSeed<'de> for MessagesSeed {
    type Value = Vec<ForwardedMessage>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct Messages;
        impl<'de> Visitor<'de> for Messages {
            type Value = Vec<ForwardedMessage>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of forwarded messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The hint is the peer's claim: cap what it can make us reserve.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                let mut recent = Recent::default();
                while let Some(message) = seq.next_element_seed(MessageSeed(&mut recent))? {
                    out.push(message);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Messages)
    }
}

/// Deserialises one message, reusing names from a [`Recent`] cache.
pub(crate) struct MessageSeed<'c>(pub(crate) &'c mut Recent);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum MessageField {
    Origin,
    Incarnation,
    Topic,
    Payload,
    Qos,
    Retain,
    Properties,
    Targets,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum TargetField {
    Node,
    Seq,
}

/// Base64 text, decoded.
struct Base64(Bytes);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(|bytes| Base64(Bytes::from(bytes)))
            .map_err(de::Error::custom)
    }
}

/// Stores a field's value, refusing a second one as serde's derive does.
fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = ForwardedMessage;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("ForwardedMessage", MESSAGE_FIELDS, self)
    }
}

const MESSAGE_FIELDS: &[&str] = &[
    "origin",
    "incarnation",
    "topic",
    "payload",
    "qos",
    "retain",
    "properties",
    "targets",
];

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = ForwardedMessage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct ForwardedMessage")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let recent = self.0;
        let mut origin = None;
        let mut incarnation = None;
        let mut topic = None;
        let mut payload = None;
        let mut qos = None;
        let mut retain = None;
        let mut properties: Option<Option<Bytes>> = None;
        let mut targets = None;
        while let Some(field) = map.next_key::<MessageField>()? {
            match field {
                MessageField::Origin => {
                    let Text(text) = map.next_value()?;
                    let id = recent.origin(&text).map_err(de::Error::custom)?;
                    set_once(&mut origin, id, "origin")?;
                }
                MessageField::Incarnation => set_once(
                    &mut incarnation,
                    map.next_value::<Incarnation>()?,
                    "incarnation",
                )?,
                MessageField::Topic => {
                    let Text(text) = map.next_value()?;
                    let name = recent.topic(&text).map_err(de::Error::custom)?;
                    set_once(&mut topic, name, "topic")?;
                }
                MessageField::Payload => {
                    let Base64(bytes) = map.next_value()?;
                    set_once(&mut payload, bytes, "payload")?;
                }
                MessageField::Qos => set_once(&mut qos, map.next_value::<Qos>()?, "qos")?,
                MessageField::Retain => set_once(&mut retain, map.next_value::<bool>()?, "retain")?,
                MessageField::Properties => {
                    let value = map.next_value::<Option<Base64>>()?.map(|Base64(b)| b);
                    set_once(&mut properties, value, "properties")?;
                }
                MessageField::Targets => {
                    let value = map.next_value_seed(TargetsSeed(recent))?;
                    set_once(&mut targets, value, "targets")?;
                }
            }
        }
        Ok(ForwardedMessage {
            origin: origin.ok_or_else(|| de::Error::missing_field("origin"))?,
            incarnation: incarnation.ok_or_else(|| de::Error::missing_field("incarnation"))?,
            topic: topic.ok_or_else(|| de::Error::missing_field("topic"))?,
            payload: payload.ok_or_else(|| de::Error::missing_field("payload"))?,
            qos: qos.ok_or_else(|| de::Error::missing_field("qos"))?,
            retain: retain.unwrap_or(false),
            properties: properties.flatten(),
            targets: targets.ok_or_else(|| de::Error::missing_field("targets"))?,
        })
    }
}

/// The targets of one message.
struct TargetsSeed<'c>(&'c mut Recent);

impl<'de> DeserializeSeed<'de> for TargetsSeed<'_> {
    type Value = Vec<Target>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TargetsSeed<'_> {
    type Value = Vec<Target>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of targets")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).clamp(1, 64));
        while let Some(target) = seq.next_element_seed(TargetSeed(&mut *self.0))? {
            out.push(target);
        }
        Ok(out)
    }
}

/// One target.
struct TargetSeed<'c>(&'c mut Recent);

impl<'de> DeserializeSeed<'de> for TargetSeed<'_> {
    type Value = Target;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("Target", &["node", "seq"], self)
    }
}

impl<'de> Visitor<'de> for TargetSeed<'_> {
    type Value = Target;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Target")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut node = None;
        let mut seq = None;
        while let Some(field) = map.next_key::<TargetField>()? {
            match field {
                TargetField::Node => {
                    let Text(text) = map.next_value()?;
                    let id = self.0.target(&text).map_err(de::Error::custom)?;
                    set_once(&mut node, id, "node")?;
                }
                TargetField::Seq => set_once(&mut seq, map.next_value::<u64>()?, "seq")?,
            }
        }
        Ok(Target {
            node: node.ok_or_else(|| de::Error::missing_field("node"))?,
            seq: seq.ok_or_else(|| de::Error::missing_field("seq"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Incarnation, NodeId};
    use crate::routing::TopicName;
    use crate::wire::messages::{ForwardRequest, MessageBatch, Qos, Target};
    use proptest::prelude::*;

    fn message(topic: &str, payload: Vec<u8>, properties: Option<Vec<u8>>) -> ForwardedMessage {
        ForwardedMessage {
            origin: NodeId::new("w-1.a:b_c").unwrap(),
            incarnation: Incarnation(1_700_000_000_123),
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from(payload),
            qos: Qos::AtLeastOnce,
            retain: true,
            properties: properties.map(Bytes::from),
            targets: vec![
                Target {
                    node: NodeId::new("w2").unwrap(),
                    seq: 0,
                },
                Target {
                    node: NodeId::new("c1").unwrap(),
                    seq: u64::MAX,
                },
            ],
        }
    }

    #[test]
    fn batch_json_matches_serde_on_awkward_text() {
        let messages = vec![
            message(
                "a/\"quoted\"/\\/\u{1}\u{1f}\u{7f}/é/😀",
                vec![0, 255, 10, 13],
                None,
            ),
            message("x", Vec::new(), Some(vec![1, 2])),
        ];
        let ours = forward_request(messages.iter());
        let theirs = serde_json::to_vec(&ForwardRequest { messages }).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn empty_batches_match_serde() {
        let ours = forward_request([].iter());
        let theirs = serde_json::to_vec(&ForwardRequest { messages: vec![] }).unwrap();
        assert_eq!(ours, theirs);
        let mut ours = Vec::new();
        write_message_batch(&mut ours, 0, [].iter());
        let theirs = serde_json::to_vec(&MessageBatch {
            batch: 0,
            messages: vec![],
        })
        .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn numbers_are_plain_decimals() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    fn arbitrary_message() -> impl Strategy<Value = ForwardedMessage> {
        (
            "[a-z0-9/ \"\\\\\u{0}-\u{1f}é😀+#$]{1,40}",
            prop::collection::vec(any::<u8>(), 0..300),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            0u8..3,
            any::<bool>(),
            any::<u64>(),
            prop::collection::vec(("[a-z0-9]{1,8}", any::<u64>()), 0..4),
        )
            .prop_filter_map(
                "a topic name",
                |(topic, payload, properties, qos, retain, incarnation, targets)| {
                    Some(ForwardedMessage {
                        origin: NodeId::new("origin").ok()?,
                        incarnation: Incarnation(incarnation),
                        topic: TopicName::new(&topic).ok()?,
                        payload: Bytes::from(payload),
                        qos: Qos::from_u8(qos)?,
                        retain,
                        properties: properties.map(Bytes::from),
                        targets: targets
                            .into_iter()
                            .map(|(node, seq)| {
                                Some(Target {
                                    node: NodeId::new(&node).ok()?,
                                    seq,
                                })
                            })
                            .collect::<Option<_>>()?,
                    })
                },
            )
    }

    fn decode(json: &str) -> Result<ForwardRequest, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"{"origin":"w1","incarnation":1,"topic":"a/b","payload":"eHk=","qos":1,"targets":[{"node":"w2","seq":3}]}"#;

    #[test]
    fn decoding_takes_optional_fields_as_serde_defaults() {
        let request = decode(&format!(r#"{{"messages":[{GOOD}]}}"#)).unwrap();
        let m = &request.messages[0];
        assert_eq!((m.retain, m.properties.clone()), (false, None));
        assert_eq!(&m.payload[..], b"xy");
        let with_null = GOOD.replace(r#""qos":1"#, r#""qos":1,"properties":null"#);
        let request = decode(&format!(r#"{{"messages":[{with_null}]}}"#)).unwrap();
        assert_eq!(request.messages[0].properties, None);
    }

    #[test]
    fn decoding_refuses_unknown_repeated_missing_and_invalid_fields() {
        let cases = [
            (
                GOOD.replace(r#""qos":1"#, r#""qos":1,"extra":0"#),
                "unknown field",
            ),
            (
                GOOD.replace(r#""qos":1"#, r#""qos":1,"qos":1"#),
                "duplicate field",
            ),
            (GOOD.replace(r#""qos":1,"#, ""), "missing field `qos`"),
            (
                GOOD.replace(r#""seq":3"#, r#""seq":3,"node":"w2""#),
                "duplicate field",
            ),
            (GOOD.replace(r#","seq":3"#, ""), "missing field `seq`"),
            (GOOD.replace(r#""qos":1"#, r#""qos":3"#), "qos 3"),
            (GOOD.replace("eHk=", "!!"), "Invalid"),
            (GOOD.replace("a/b", "a/+"), "wildcard"),
            (GOOD.replace(r#""w1""#, r#""w 1""#), "invalid node name"),
            (GOOD.replace(r#""w2""#, "7"), "invalid type"),
        ];
        for (json, expected) in cases {
            let error = decode(&format!(r#"{{"messages":[{json}]}}"#)).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
            let error = serde_json::from_str::<ForwardedMessage>(&json).unwrap_err();
            assert!(error.to_string().contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn cached_names_are_only_reused_for_the_same_text() {
        let second = GOOD.replace("a/b", "a/c").replace(r#""w2""#, r#""w3""#);
        let third = GOOD.replace(r#""w1""#, r#""w\u0031""#);
        let request = decode(&format!(r#"{{"messages":[{GOOD},{second},{third}]}}"#)).unwrap();
        let topics: Vec<_> = request.messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["a/b", "a/c", "a/b"]);
        let nodes: Vec<_> = request
            .messages
            .iter()
            .map(|m| m.targets[0].node.as_str())
            .collect();
        assert_eq!(nodes, ["w2", "w3", "w2"]);
        assert!(request.messages.iter().all(|m| m.origin.as_str() == "w1"));
    }

    proptest! {
        #[test]
        fn batches_decode_to_what_was_encoded(
            messages in prop::collection::vec(arbitrary_message(), 0..8),
            batch in any::<u64>(),
        ) {
            let body = forward_request(messages.iter());
            let back: ForwardRequest = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(&back.messages, &messages);
            let mut frame = Vec::new();
            write_message_batch(&mut frame, batch, messages.iter());
            let back: MessageBatch = serde_json::from_slice(&frame).unwrap();
            prop_assert_eq!(back, MessageBatch { batch, messages });
        }

        #[test]
        fn batch_json_is_byte_for_byte_what_serde_writes(
            messages in prop::collection::vec(arbitrary_message(), 0..8),
            batch in any::<u64>(),
        ) {
            let ours = forward_request(messages.iter());
            let request = ForwardRequest { messages };
            prop_assert_eq!(&ours[..], &serde_json::to_vec(&request).unwrap()[..]);

            let mut ours = Vec::new();
            write_message_batch(&mut ours, batch, request.messages.iter());
            let theirs = serde_json::to_vec(&MessageBatch { batch, messages: request.messages }).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }
}
