//! Support code for the cluster suites: a hand-pumped in-memory cluster,
//! and live nodes on either runtime for the conformance suite.

pub mod pump;
pub mod raw_http;
pub mod runtimes;
pub mod scenario;
