//! A minimal publish ACL: topics no client may publish to.
//!
//! It plugs into rmqtt's `MessagePublishCheckAcl` hook, the check rmqtt runs
//! before it accepts a publish. A refused publish never reaches
//! [`Shared::forwards`](rmqtt::shared::Shared::forwards), so it reaches
//! nobody, on this broker or any other. Real deployments use rmqtt's ACL
//! plugins the same way; this one exists so the broker can show (and test)
//! that the cluster respects the origin's ACL.

use std::str::FromStr;

use async_trait::async_trait;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::topic::Topic;
use rmqtt::types::PublishAclResult;

/// Refuses publishes whose topic matches one of its filters.
pub struct DenyPublish {
    filters: Vec<Topic>,
}

impl DenyPublish {
    /// A handler refusing `filters` (MQTT topic filters, `+`/`#` allowed).
    pub fn new(filters: &[String]) -> anyhow::Result<Self> {
        let filters = filters
            .iter()
            .map(|f| Topic::from_str(f).map_err(|e| anyhow::anyhow!("--deny-publish {f:?}: {e}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(DenyPublish { filters })
    }

    /// `true` if a publish on `topic` is refused.
    pub fn denies(&self, topic: &str) -> bool {
        self.filters.iter().any(|f| f.matches_str(topic))
    }

    /// Registers the handler with the broker's hooks.
    pub async fn register(self, scx: &rmqtt::context::ServerContext) {
        let register = scx.extends.hook_mgr().register();
        register
            .add(Type::MessagePublishCheckAcl, Box::new(self))
            .await;
        register.start().await;
    }
}

#[async_trait]
impl Handler for DenyPublish {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessagePublishCheckAcl(session, publish) = param {
            if self.denies(&publish.topic) {
                tracing::info!(client = %session.id.client_id, topic = %publish.topic, "publish refused by ACL");
                let refused =
                    PublishAclResult::rejected(false, Some("denied by the broker's ACL".into()));
                return (false, Some(HookResult::PublishAclResult(refused)));
            }
        }
        (true, acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_matching_topics_only() {
        let acl = DenyPublish::new(&["secret/#".into(), "a/+/c".into()]).unwrap();
        assert!(acl.denies("secret/x"));
        assert!(acl.denies("a/b/c"));
        assert!(!acl.denies("public/x"));
        assert!(!acl.denies("a/b/d"));
        assert!(DenyPublish::new(&["a/#/b".into()]).is_err());
    }
}
