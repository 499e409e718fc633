//! Bounded queues with a discard policy.

use serde::{Deserialize, Serialize};

/// What a full queue does with one more message (`queuePolicy` in plugin.yaml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// `0`: keep what is queued, drop the message that arrives.
    #[default]
    DiscardNewest,
    /// `1`: drop the oldest queued message to make room.
    DiscardOldest,
}

impl QueuePolicy {
    /// The policy's number in plugin.yaml.
    pub fn code(self) -> u8 {
        match self {
            QueuePolicy::DiscardNewest => 0,
            QueuePolicy::DiscardOldest => 1,
        }
    }

    /// The policy for a plugin.yaml number, if it is one.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(QueuePolicy::DiscardNewest),
            1 => Some(QueuePolicy::DiscardOldest),
            _ => None,
        }
    }
}
