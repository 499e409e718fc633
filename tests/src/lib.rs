//! Support code for the cluster suites: a hand-pumped in-memory cluster.

pub mod pump;
pub mod scenario;
