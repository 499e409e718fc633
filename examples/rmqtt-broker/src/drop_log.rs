//! Drop warnings summed over a second. Under overload drops come one
//! message at a time, from the node (on the way to a peer) and from rmqtt
//! (on the way to a client); a warning for each would write hundreds of
//! thousands of lines a second, and the writing would slow the broker
//! exactly when it is short of time. The counters in
//! [`BrokerStats`](crate::stats::BrokerStats) stay exact; the log says, at
//! most once a second per destination and reason, how many went.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Drops not yet logged, by destination and reason.
#[derive(Debug)]
pub struct DropLog {
    /// What the log line says, e.g. "messages dropped on their way to a peer".
    what: &'static str,
    pending: Mutex<BTreeMap<(String, String), u64>>,
}

impl DropLog {
    /// A log whose lines say `what`.
    pub fn new(what: &'static str) -> Self {
        DropLog {
            what,
            pending: Mutex::default(),
        }
    }

    /// Counts `count` messages dropped on their way to `to`.
    pub fn record(&self, to: impl std::fmt::Display, reason: impl std::fmt::Debug, count: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending
                .entry((to.to_string(), format!("{reason:?}")))
                .or_default() += count;
        }
    }

    /// Logs what was recorded since the last call, one line per peer and
    /// reason; returns how many lines.
    pub fn flush(&self) -> usize {
        let taken = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return 0,
        };
        for ((to, reason), count) in &taken {
            tracing::warn!(to, count, reason, "{}", self.what);
        }
        taken.len()
    }

    /// Flushes every `period` until the log is gone, then stops.
    pub fn spawn_reporter(log: &Arc<DropLog>, period: Duration) {
        let log: Weak<DropLog> = Arc::downgrade(log);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match log.upgrade() {
                    Some(log) => {
                        log.flush();
                    }
                    None => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use mqtt_cluster_core::forward::link::DropReason;

    #[test]
    fn drops_are_summed_per_destination_and_reason_until_flushed() {
        let log = DropLog::new("dropped");
        for _ in 0..1000 {
            log.record("a", DropReason::QueueFull, 1);
        }
        log.record("a", DropReason::Expired, 2);
        log.record("b", DropReason::QueueFull, 3);
        let pending = log.pending.lock().unwrap().clone();
        let key = |to: &str, reason: &str| (to.to_owned(), reason.to_owned());
        assert_eq!(pending[&key("a", "QueueFull")], 1000);
        assert_eq!(pending[&key("a", "Expired")], 2);
        assert_eq!(pending[&key("b", "QueueFull")], 3);
        assert_eq!(log.flush(), 3);
        assert_eq!(log.flush(), 0, "a flush logs each drop once");
    }
}
