//! MQTT 5 publish properties as the opaque bytes a cluster message carries.
//!
//! The node carries `Message::properties` without looking inside, so the
//! broker picks the format. It is the MQTT 5 property encoding itself
//! (identifier byte, then the value as the specification encodes it), one
//! property after another in a fixed order, without the leading length:
//! stable across versions of this broker and readable by anyone who knows
//! MQTT.
//!
//! Only properties that describe the message cross: payload format
//! indicator, message expiry interval, content type, response topic,
//! correlation data and user properties. Topic alias and subscription
//! identifiers belong to one connection and are set again by the broker
//! that delivers.
//!
//! The message expiry interval crosses as the time that is *left*: the
//! origin subtracts how long the message has already waited, so a message
//! does not live longer because it crossed a cluster.

use std::num::NonZeroU32;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use rmqtt::codec::v5::PublishProperties;

const PAYLOAD_FORMAT: u8 = 0x01;
const MESSAGE_EXPIRY: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const USER_PROPERTY: u8 = 0x26;

/// Why bytes from the cluster are not valid properties.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    /// The bytes end in the middle of a property.
    #[error("properties end in the middle of property 0x{0:02x}")]
    Truncated(u8),
    /// A property this format does not carry.
    #[error("unknown property identifier 0x{0:02x}")]
    Unknown(u8),
    /// A string is not UTF-8.
    #[error("property 0x{0:02x} is not UTF-8")]
    NotUtf8(u8),
    /// A payload format indicator other than 0 or 1.
    #[error("payload format indicator {0} is neither 0 nor 1")]
    BadPayloadFormat(u8),
}

/// The properties to carry, with the expiry already reduced to what is left.
///
/// `remaining_expiry` replaces the publish's own interval: `None` when the
/// message never expires.
pub fn encode(properties: &PublishProperties, remaining_expiry: Option<NonZeroU32>) -> Bytes {
    let mut out = BytesMut::new();
    if properties.is_utf8_payload {
        out.put_u8(PAYLOAD_FORMAT);
        out.put_u8(1);
    }
    if let Some(expiry) = remaining_expiry {
        out.put_u8(MESSAGE_EXPIRY);
        out.put_u32(expiry.get());
    }
    if let Some(content_type) = &properties.content_type {
        out.put_u8(CONTENT_TYPE);
        put_str(&mut out, content_type);
    }
    if let Some(topic) = &properties.response_topic {
        out.put_u8(RESPONSE_TOPIC);
        put_str(&mut out, topic);
    }
    if let Some(data) = &properties.correlation_data {
        out.put_u8(CORRELATION_DATA);
        put_bytes(&mut out, data);
    }
    for (key, value) in &properties.user_properties {
        out.put_u8(USER_PROPERTY);
        put_str(&mut out, key);
        put_str(&mut out, value);
    }
    out.freeze()
}

/// Reads what [`encode`] wrote. Refuses anything else with an error and
/// never panics.
pub fn decode(mut bytes: Bytes) -> Result<PublishProperties, PropertiesError> {
    let mut properties = PublishProperties::default();
    while bytes.has_remaining() {
        let id = bytes.get_u8();
        match id {
            PAYLOAD_FORMAT => {
                let value = take_u8(&mut bytes, id)?;
                properties.is_utf8_payload = match value {
                    0 => false,
                    1 => true,
                    other => return Err(PropertiesError::BadPayloadFormat(other)),
                };
            }
            MESSAGE_EXPIRY => {
                if bytes.remaining() < 4 {
                    return Err(PropertiesError::Truncated(id));
                }
                properties.message_expiry_interval = NonZeroU32::new(bytes.get_u32());
            }
            CONTENT_TYPE => properties.content_type = Some(take_str(&mut bytes, id)?),
            RESPONSE_TOPIC => properties.response_topic = Some(take_str(&mut bytes, id)?),
            CORRELATION_DATA => properties.correlation_data = Some(take_bytes(&mut bytes, id)?),
            USER_PROPERTY => {
                let key = take_str(&mut bytes, id)?;
                let value = take_str(&mut bytes, id)?;
                properties.user_properties.push((key, value));
            }
            other => return Err(PropertiesError::Unknown(other)),
        }
    }
    Ok(properties)
}

/// Seconds left of an expiry interval of `interval_secs` for a message
/// created at `created_ms` (milliseconds since the epoch), at `now_ms`.
/// `None` once nothing is left: the message has expired.
pub fn remaining_expiry(
    interval_secs: NonZeroU32,
    created_ms: i64,
    now_ms: i64,
) -> Option<NonZeroU32> {
    let waited_ms = (now_ms - created_ms).max(0);
    let left_ms = i64::from(interval_secs.get()) * 1000 - waited_ms;
    if left_ms <= 0 {
        return None;
    }
    // A part of a second left still counts as a second: rounding down would
    // expire a message that has time left.
    let left_secs = (left_ms + 999) / 1000;
    NonZeroU32::new(u32::try_from(left_secs).unwrap_or(u32::MAX))
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    // MQTT strings and binary data are at most 65535 bytes: a publish the
    // broker accepted never holds a longer one.
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(&bytes[..usize::from(len)]);
}

fn take_u8(bytes: &mut Bytes, id: u8) -> Result<u8, PropertiesError> {
    if !bytes.has_remaining() {
        return Err(PropertiesError::Truncated(id));
    }
    Ok(bytes.get_u8())
}

fn take_bytes(bytes: &mut Bytes, id: u8) -> Result<Bytes, PropertiesError> {
    if bytes.remaining() < 2 {
        return Err(PropertiesError::Truncated(id));
    }
    let len = usize::from(bytes.get_u16());
    if bytes.remaining() < len {
        return Err(PropertiesError::Truncated(id));
    }
    Ok(bytes.split_to(len))
}

fn take_str(bytes: &mut Bytes, id: u8) -> Result<ByteString, PropertiesError> {
    let raw = take_bytes(bytes, id)?;
    ByteString::try_from(raw).map_err(|_| PropertiesError::NotUtf8(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> PublishProperties {
        PublishProperties {
            is_utf8_payload: true,
            content_type: Some("application/json".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
            user_properties: vec![
                ("a".into(), "1".into()),
                ("a".into(), "2".into()),
                ("b".into(), "".into()),
            ],
            ..PublishProperties::default()
        }
    }

    #[test]
    fn every_carried_property_survives_the_round_trip_in_order() {
        let expiry = NonZeroU32::new(42);
        let decoded = decode(encode(&full(), expiry)).unwrap();
        let expected = PublishProperties {
            message_expiry_interval: expiry,
            ..full()
        };
        assert_eq!(decoded, expected);
    }

    #[test]
    fn connection_bound_properties_do_not_cross() {
        let with_alias = PublishProperties {
            topic_alias: std::num::NonZeroU16::new(3),
            subscription_ids: vec![NonZeroU32::new(9).unwrap()],
            ..full()
        };
        let decoded = decode(encode(&with_alias, None)).unwrap();
        assert_eq!(decoded, full());
    }

    #[test]
    fn the_encoding_is_the_mqtt_property_encoding() {
        let props = PublishProperties {
            content_type: Some("t".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..PublishProperties::default()
        };
        let bytes = encode(&props, NonZeroU32::new(5));
        assert_eq!(
            &bytes[..],
            b"\x02\x00\x00\x00\x05\x03\x00\x01t\x26\x00\x01k\x00\x01v"
        );
    }

    #[test]
    fn truncated_or_unknown_bytes_are_refused_without_panic() {
        let bytes = encode(&full(), NonZeroU32::new(7));
        for cut in 1..bytes.len() {
            // Every prefix either decodes (it ends between properties) or is
            // refused; none panics.
            let _ = decode(bytes.slice(..cut));
        }
        assert_eq!(
            decode(Bytes::from_static(b"\x02\x00")),
            Err(PropertiesError::Truncated(2))
        );
        assert_eq!(
            decode(Bytes::from_static(b"\x23\x00\x01")),
            Err(PropertiesError::Unknown(0x23))
        );
        assert_eq!(
            decode(Bytes::from_static(b"\x03\x00\x01\xff")),
            Err(PropertiesError::NotUtf8(3))
        );
        assert_eq!(
            decode(Bytes::from_static(b"\x01\x07")),
            Err(PropertiesError::BadPayloadFormat(7))
        );
    }

    #[test]
    fn expiry_crosses_as_the_time_left() {
        let ten = NonZeroU32::new(10).unwrap();
        assert_eq!(remaining_expiry(ten, 1_000, 1_000), NonZeroU32::new(10));
        assert_eq!(remaining_expiry(ten, 1_000, 4_000), NonZeroU32::new(7));
        assert_eq!(remaining_expiry(ten, 1_000, 4_500), NonZeroU32::new(7));
        assert_eq!(remaining_expiry(ten, 1_000, 10_999), NonZeroU32::new(1));
        assert_eq!(remaining_expiry(ten, 1_000, 11_000), None);
        // A clock that went backwards does not lengthen a message's life.
        assert_eq!(remaining_expiry(ten, 5_000, 1_000), NonZeroU32::new(10));
    }
}
