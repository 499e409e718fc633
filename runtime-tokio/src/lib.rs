//! Tokio and hyper runtime for mqtt-cluster (being written).
