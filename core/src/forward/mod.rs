//! Forwarding: per-peer outbound links with bounded queues, batching,
//! acknowledgements and retries, and receiver-side deduplication.

pub mod confirm;
pub mod dedup;
pub mod link;
