//! Picking one local member of a shared-subscription group.
//!
//! rmqtt 0.24 ships shared subscriptions switched off (its default
//! `SharedSubscription` supports nothing) and leaves the choice to a
//! plugin. The cluster already picked this broker for the message; this
//! picks the member here: in turn, by client id, skipping members that are
//! offline while any member is online.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions,
    TopicName,
};

type Candidate = (
    NodeId,
    ClientId,
    SubscriptionOptions,
    Option<Vec<SubscriptionIdentifier>>,
    Option<IsOnline>,
);

/// Round-robin over a group's local members.
#[derive(Default)]
pub struct LocalTurns {
    next: Mutex<HashMap<SharedGroup, usize>>,
}

impl LocalTurns {
    /// The index in `candidates` of the member whose turn it is, and whether
    /// it is online; `None` without candidates.
    pub fn pick(&self, group: &SharedGroup, candidates: &[Candidate]) -> Option<(usize, IsOnline)> {
        if candidates.is_empty() {
            return None;
        }
        // rmqtt hands the members over in hash order: sort them so turns
        // follow a fixed order.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&x, &y| candidates[x].1.cmp(&candidates[y].1));
        let start = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let turn = next.entry(group.clone()).or_insert(0);
            let start = *turn % order.len();
            *turn = start + 1;
            start
        };
        let online = |i: usize| candidates[i].4.unwrap_or(true);
        let chosen = (0..order.len())
            .map(|k| order[(start + k) % order.len()])
            .find(|&i| online(i));
        Some(match chosen {
            Some(i) => (i, true),
            None => (order[start], false),
        })
    }
}

#[async_trait]
impl SharedSubscription for LocalTurns {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        group: &SharedGroup,
        _publisher_id: &Id,
        _topic: &TopicName,
        candidates: &[Candidate],
    ) -> Option<(usize, IsOnline)> {
        self.pick(group, candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, online: bool) -> Candidate {
        (
            0,
            id.into(),
            SubscriptionOptions::default(),
            None,
            Some(online),
        )
    }

    #[test]
    fn members_take_turns_in_client_id_order_skipping_offline_ones() {
        let turns = LocalTurns::default();
        let group: SharedGroup = "g".into();
        let members = [member("c", true), member("a", true), member("b", false)];
        let picked: Vec<_> = (0..4)
            .map(|_| turns.pick(&group, &members).unwrap())
            .collect();
        // a (index 1), then b is offline so c (index 0), then c again
        // (b's turn), then a.
        assert_eq!(picked, [(1, true), (0, true), (0, true), (1, true)]);
        let offline = [member("x", false)];
        assert_eq!(turns.pick(&"h".into(), &offline), Some((0, false)));
        assert_eq!(turns.pick(&group, &[]), None);
    }
}
