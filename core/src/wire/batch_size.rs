//! How many bytes a batch of forwarded messages takes on the wire, exactly.
//!
//! A receiver refuses any body (and a worker any stream frame) larger than
//! its `maxBodySize`, and a payload grows by a third in base64. A sender
//! that cut batches by count alone would build bodies the receiver can never
//! take; these functions give the exact size of each message as
//! [`super::batch_json`] writes it, and the room a body or frame leaves for
//! messages, so that batches are cut by bytes.
//!
//! A batch of messages `m1 … mn` takes
//! `envelope + len(m1) + … + len(mn) + (n − 1)` bytes: the envelope of its
//! kind ([`FORWARD_ENVELOPE`] or [`STREAM_ENVELOPE`]), each message's
//! [`message_len`], and one comma between two messages.

use super::messages::ForwardedMessage;

/// Bytes of a `POST /forward` body around its messages:
/// `{"messages":[` and `]}`.
pub const FORWARD_ENVELOPE: usize = br#"{"messages":["#.len() + br#"]}"#.len();

/// Bytes a `messages` stream frame counts against the worker's limit beyond
/// its messages, at most: the `event: messages` line, `data: ` and the JSON
/// around the messages, `{"batch":N,"messages":[` and `]}`, with the largest
/// batch number (20 digits). Line ends are not counted, as the worker's
/// decoder does not count them.
pub const STREAM_ENVELOPE: usize = b"event: messages".len()
    + b"data: ".len()
    + br#"{"batch":"#.len()
    + MAX_DECIMAL_DIGITS
    + br#","messages":["#.len()
    + br#"]}"#.len();

/// Digits of `u64::MAX`.
const MAX_DECIMAL_DIGITS: usize = 20;

/// The room a body of `limit` bytes leaves for the messages of a
/// `POST /forward` batch, separators included.
pub fn forward_budget(limit: usize) -> usize {
    limit.saturating_sub(FORWARD_ENVELOPE)
}

/// The room a stream frame of `limit` bytes leaves for the messages of a
/// `messages` frame, separators included.
pub fn stream_budget(limit: usize) -> usize {
    limit.saturating_sub(STREAM_ENVELOPE)
}

/// The exact length of `message`'s JSON in a batch (without the comma that
/// separates it from the next).
pub fn message_len(m: &ForwardedMessage) -> usize {
    let targets: usize = m
        .targets
        .iter()
        .map(|t| {
            br#"{"node":"#.len() + name_len(&t.node) + br#","seq":"#.len() + decimal_len(t.seq) + 1
        })
        .fold(0usize, usize::saturating_add)
        .saturating_add(m.targets.len().saturating_sub(1));
    let properties = m.properties.as_ref().map_or(0, |p| {
        br#","properties":"#
            .len()
            .saturating_add(base64_string_len(p.len()))
    });
    let retain = if m.retain {
        br#","retain":true"#.len()
    } else {
        br#","retain":false"#.len()
    };
    [
        br#"{"origin":"#.len(),
        name_len(&m.origin),
        br#","incarnation":"#.len(),
        decimal_len(m.incarnation.0),
        br#","topic":"#.len(),
        string_len(m.topic.as_str()),
        br#","payload":"#.len(),
        base64_string_len(m.payload.len()),
        br#","qos":"#.len(),
        decimal_len(u64::from(m.qos.as_u8())),
        retain,
        properties,
        br#","targets":["#.len(),
        targets,
        br#"]}"#.len(),
    ]
    .into_iter()
    .fold(0, usize::saturating_add)
}

/// A node name as a JSON string: names hold only characters JSON never
/// escapes (see [`NodeId::new`](crate::NodeId::new)), so no scan is needed.
fn name_len(name: &crate::id::NodeId) -> usize {
    name.as_str().len().saturating_add(2)
}

/// A JSON string of `text` as `serde_json` escapes it: quotes, `"` and `\`
/// and the short escapes of five control characters take two bytes, the
/// other control characters six (`\u00XX`), everything else itself.
pub fn string_len(text: &str) -> usize {
    // A table instead of a match: no branch per byte, on the hot path of
    // every message pushed onto a link.
    let extra: usize = text
        .bytes()
        .map(|b| usize::from(ESCAPE_EXTRA.get(usize::from(b)).copied().unwrap_or(0)))
        .sum();
    text.len().saturating_add(extra).saturating_add(2)
}

/// Bytes an escape adds to a character of the JSON string, by byte.
const ESCAPE_EXTRA: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = 5;
        b += 1;
    }
    table[0x08] = 1;
    table[0x09] = 1;
    table[0x0a] = 1;
    table[0x0c] = 1;
    table[0x0d] = 1;
    table[b'"' as usize] = 1;
    table[b'\\' as usize] = 1;
    table
};

/// A JSON string of the padded base64 of `n` bytes.
pub fn base64_string_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4).saturating_add(2)
}

/// Digits of `n` in decimal.
pub fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// At least [`message_len`] of a message with these parts, in constant
/// time: every character of the topic and origin as if escaped to six
/// bytes, every target with the longest name and number. A message under
/// this bound needs no exact measure to be known to fit.
pub fn message_len_bound(
    topic: usize,
    origin: usize,
    payload: usize,
    properties: Option<usize>,
    targets: usize,
) -> usize {
    let target = 6usize
        .saturating_mul(crate::id::MAX_NODE_NAME)
        .saturating_add(MAX_DECIMAL_DIGITS)
        .saturating_add(br#",{"node":"","seq":}"#.len());
    [
        topic.saturating_add(origin).saturating_mul(6),
        base64_string_len(payload),
        properties.map_or(0, |p| base64_string_len(p).saturating_add(16)),
        targets.saturating_mul(target),
        // Field names, quotes, incarnation and QoS.
        200,
    ]
    .into_iter()
    .fold(0, usize::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Incarnation, NodeId};
    use crate::routing::TopicName;
    use crate::wire::batch_json;
    use crate::wire::messages::{Qos, Target};
    use crate::wire::sse::SseDecoder;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn arbitrary_message() -> impl Strategy<Value = ForwardedMessage> {
        (
            "[a-z0-9/ \"\\\\\u{0}-\u{1f}\u{7f}é😀+#$]{1,40}",
            prop::collection::vec(any::<u8>(), 0..300),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            0u8..3,
            any::<bool>(),
            any::<u64>(),
            prop::collection::vec(("[a-z0-9._:-]{1,12}", any::<u64>()), 0..5),
        )
            .prop_filter_map(
                "a topic name",
                |(topic, payload, properties, qos, retain, incarnation, targets)| {
                    Some(ForwardedMessage {
                        origin: NodeId::new("origin-1").ok()?,
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

    proptest! {
        #[test]
        fn the_constant_time_bound_is_never_below_the_exact_length(
            message in arbitrary_message(),
        ) {
            let bound = message_len_bound(
                message.topic.as_str().len(),
                message.origin.as_str().len(),
                message.payload.len(),
                message.properties.as_ref().map(|p| p.len()),
                message.targets.len(),
            );
            prop_assert!(bound >= message_len(&message));
        }
    }

    fn batch_len(messages: &[ForwardedMessage]) -> usize {
        messages.iter().map(message_len).sum::<usize>() + messages.len().saturating_sub(1)
    }

    #[test]
    fn decimal_lengths_match_formatting() {
        for n in [0, 9, 10, 99, 100, 1_000_000, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len());
        }
        assert_eq!(decimal_len(u64::MAX), MAX_DECIMAL_DIGITS);
    }

    /// The largest payload the README and `Message` promise a default node
    /// carries, with the worst topic, properties and targets they allow.
    #[test]
    fn a_default_node_carries_three_million_byte_payloads() {
        let default_limit = crate::Config::default().max_body_size;
        assert_eq!(default_limit, 4 * 1024 * 1024);
        let name = |i: usize| NodeId::new(&format!("{i:0>64}")).unwrap();
        // Every byte of the topic escaped to six (a control character).
        let topic: String = std::iter::repeat_n('\u{1}', 1024).collect();
        let worst = ForwardedMessage {
            origin: name(0),
            incarnation: Incarnation(u64::MAX),
            topic: TopicName::new(&topic).unwrap(),
            payload: Bytes::from(vec![0u8; 3_000_000]),
            qos: Qos::ExactlyOnce,
            retain: false,
            properties: Some(Bytes::from(vec![0u8; 64 * 1024])),
            targets: (1..=100)
                .map(|i| Target {
                    node: name(i),
                    seq: u64::MAX,
                })
                .collect(),
        };
        assert!(message_len(&worst) <= stream_budget(default_limit));
        // 3.1 MiB never fits, however short its topic and names.
        let tiny = ForwardedMessage {
            origin: NodeId::new("a").unwrap(),
            incarnation: Incarnation(0),
            topic: TopicName::new("t").unwrap(),
            payload: Bytes::from(vec![0u8; 3_250_586]),
            qos: Qos::AtMostOnce,
            retain: false,
            properties: None,
            targets: vec![Target {
                node: NodeId::new("b").unwrap(),
                seq: 1,
            }],
        };
        assert!(message_len(&tiny) > forward_budget(default_limit));
    }

    proptest! {
        #[test]
        fn forward_bodies_take_exactly_what_the_sizes_say(
            messages in prop::collection::vec(arbitrary_message(), 0..6),
        ) {
            let body = batch_json::forward_request(messages.iter());
            prop_assert_eq!(body.len(), FORWARD_ENVELOPE + batch_len(&messages));
        }

        #[test]
        fn stream_frames_count_at_most_what_the_sizes_say(
            messages in prop::collection::vec(arbitrary_message(), 1..6),
            batch in any::<u64>(),
        ) {
            let frame = crate::wire::sse::encode_json_with("messages", 0, |out| {
                batch_json::write_message_batch(out, batch, messages.iter());
            });
            let needed = STREAM_ENVELOPE - MAX_DECIMAL_DIGITS + decimal_len(batch) + batch_len(&messages);
            // The worker's decoder takes the frame at exactly that limit and
            // refuses it one byte below.
            let mut exact = SseDecoder::new(needed);
            exact.push(&frame).unwrap();
            prop_assert!(matches!(exact.next_frame(), Some(Ok(_))));
            let mut short = SseDecoder::new(needed - 1);
            short.push(&frame).unwrap();
            prop_assert!(matches!(short.next_frame(), Some(Err(_))));
            prop_assert!(needed <= STREAM_ENVELOPE + batch_len(&messages));
        }
    }
}
