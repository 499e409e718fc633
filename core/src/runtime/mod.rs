//! What every runtime's run loop needs around a [`Node`](crate::Node),
//! free of I/O: the parts of driving a node that do not depend on how
//! bytes move or how a thread waits, so each runtime does them the same
//! way.
//!
//! - [`EventBacklog`]: events the host has not taken yet, and the
//!   backpressure they exert on the network and on the host.
//! - [`PushReader`]: a worker's current push stream, and what the node
//!   hears of one that was given up.
//! - [`stream_buffer_shortfall`]: whether a push stream buffer can hold
//!   what a reconnect resends.
//! - [`unnamed_node_warning`]: whether the node runs without `nodeName`.

mod backlog;
mod node_name;
mod push_reader;
mod stream_buffer;

pub use backlog::{carries_deliveries, EventBacklog, Offer};
pub use node_name::unnamed_node_warning;
pub use push_reader::PushReader;
pub use stream_buffer::stream_buffer_shortfall;
