//! mqtt-cluster-core: the sans-IO cluster layer.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod config;
pub mod id;
pub mod membership;
pub mod node;
pub mod queue;
pub mod routing;
pub mod time;
pub mod wire;

pub use config::{Config, ConfigError};
pub use id::{Incarnation, InvalidNodeId, NodeId, RequestId, Role, StreamId};
pub use node::{Event, MemberStatus, Node, NodeError, Phase, RequestError, Stats, Status, StreamOutput, Transmit, TransportError};
pub use time::{Instant, Now, WallTime};
