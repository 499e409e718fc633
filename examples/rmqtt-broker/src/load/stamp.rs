//! What every benchmark payload starts with: who sent it, its number, and
//! when, so that the receiving side can tell lost, duplicated and reordered
//! messages apart and measure latency without any other channel.

/// Bytes the stamp takes at the front of a payload.
pub const STAMP_LEN: usize = 24;

/// A payload's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher's index.
    pub publisher: u64,
    /// The message's number among that publisher's, from 0.
    pub seq: u64,
    /// When it was handed to the client, in microseconds since the run
    /// started (publishers and subscribers share one process and one
    /// clock).
    pub sent_us: u64,
}

impl Stamp {
    /// The payload of message `seq` of `publisher`, stamped at 10 µs and
    /// padded to `size` bytes (for tests).
    #[cfg(test)]
    pub(crate) fn payload_of(publisher: u64, seq: u64, size: usize) -> Vec<u8> {
        Stamp {
            publisher,
            seq,
            sent_us: 10,
        }
        .payload(size)
    }

    /// A payload of `size` bytes (at least [`STAMP_LEN`]) starting with
    /// this stamp, the rest filled.
    pub fn payload(&self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(STAMP_LEN));
        out.extend_from_slice(&self.publisher.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_us.to_be_bytes());
        out.resize(size.max(STAMP_LEN), b'.');
        out
    }

    /// The stamp a payload starts with, if it is long enough.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let word = |i: usize| -> Option<u64> {
            let bytes: [u8; 8] = payload.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        };
        Some(Stamp {
            publisher: word(0)?,
            seq: word(1)?,
            sent_us: word(2)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_its_payload_and_short_payloads_have_none() {
        let stamp = Stamp {
            publisher: 3,
            seq: 1 << 40,
            sent_us: 12_345,
        };
        let payload = stamp.payload(100);
        assert_eq!(payload.len(), 100);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert_eq!(stamp.payload(0).len(), STAMP_LEN);
        assert_eq!(Stamp::read(&payload[..STAMP_LEN - 1]), None);
    }
}
