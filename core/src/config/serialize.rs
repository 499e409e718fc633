//! The config as `status()` shows it: camelCase keys, plain numbers, no secret.

use std::time::Duration;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::Config;

/// Milliseconds, the unit plugin.yaml reads bare numbers in, so the output can
/// be pasted back into a file.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Config", 22)?;
        m.serialize_field("core", &self.core)?;
        m.serialize_field("host", &self.host)?;
        m.serialize_field("port", &self.port)?;
        m.serialize_field("queueLength", &self.queue_length)?;
        m.serialize_field("queuePolicy", &self.queue_policy.code())?;
        m.serialize_field("clusters", &self.clusters)?;
        match &self.node_name {
            Some(name) => m.serialize_field("nodeName", name)?,
            None => m.skip_field("nodeName")?,
        }
        match &self.advertise {
            Some(url) => m.serialize_field("advertise", url)?,
            None => m.skip_field("advertise")?,
        }
        match &self.secret {
            Some(_) => m.serialize_field("secret", "***")?,
            None => m.skip_field("secret")?,
        }
        m.serialize_field("openCluster", &self.open_cluster)?;
        m.serialize_field("heartbeatInterval", &millis(self.heartbeat_interval))?;
        m.serialize_field("suspectTimeout", &millis(self.suspect_timeout))?;
        m.serialize_field("deadTimeout", &millis(self.dead_timeout))?;
        m.serialize_field("requestTimeout", &millis(self.request_timeout))?;
        m.serialize_field("retryBackoff", &millis(self.retry_backoff))?;
        m.serialize_field("retryBackoffMax", &millis(self.retry_backoff_max))?;
        m.serialize_field("messageExpiry", &millis(self.message_expiry))?;
        m.serialize_field("freshnessWindow", &millis(self.freshness_window))?;
        m.serialize_field("batchSize", &self.batch_size)?;
        m.serialize_field("maxInFlight", &self.max_in_flight)?;
        m.serialize_field("maxBodySize", &self.max_body_size)?;
        m.serialize_field("retainedLimit", &self.retained_limit)?;
        m.end()
    }
}
