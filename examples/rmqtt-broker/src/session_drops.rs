//! Messages rmqtt drops on their way to a client of this broker: a
//! session's queue full (`--max-mqueue-len`), a message expired while
//! queued. rmqtt reports them through its `MessageDropped` hook; this
//! handler counts them in [`BrokerStats::session_dropped`] and logs them,
//! summed over a second, so that what a cluster delivered to a broker and
//! the broker then could not hand to a slow client is not lost silently.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};

use crate::drop_log::DropLog;
use crate::stats::BrokerStats;

/// The `MessageDropped` hook handler.
pub struct SessionDrops {
    stats: Arc<BrokerStats>,
    log: Arc<DropLog>,
}

impl SessionDrops {
    /// Counts into `stats`.
    pub fn new(stats: Arc<BrokerStats>) -> Self {
        let log = Arc::new(DropLog::new("messages dropped on their way to a client"));
        DropLog::spawn_reporter(&log, Duration::from_secs(1));
        SessionDrops { stats, log }
    }

    /// Registers the handler with the broker's hooks.
    pub async fn register(self, scx: &rmqtt::context::ServerContext) {
        let register = scx.extends.hook_mgr().register();
        register.add(Type::MessageDropped, Box::new(self)).await;
        register.start().await;
    }
}

#[async_trait]
impl Handler for SessionDrops {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessageDropped(to, _from, _publish, reason) = param {
            self.stats.session_dropped.inc();
            let to = to
                .as_ref()
                .map(|id| id.client_id.to_string())
                .unwrap_or_else(|| "no session".into());
            self.log.record(to, reason, 1);
        }
        (true, acc)
    }
}
