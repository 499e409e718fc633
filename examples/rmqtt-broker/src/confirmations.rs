//! Answering a client's PUBACK (or PUBREC) only once the cluster confirmed
//! the publish end to end: the `--puback-after-confirm` option.
//!
//! rmqtt answers a QoS 1/2 publish once [`Shared::forwards`] returns, and
//! handles one session's packets in order. So [`ClusterShared`] waits here,
//! after handing the message to the node, for the node's
//! [`Event::Confirmed`] (or [`Event::NotConfirmed`]) of each publish id,
//! which [`crate::inbound`] passes on. The client's own in-flight window
//! then throttles it to what the cluster confirms: this is the broker's
//! backpressure, and a message a client has a PUBACK for has reached every
//! broker with a matching subscriber.
//!
//! A confirmation may reach the event loop before the publisher starts
//! waiting for it: it is kept until then.
//!
//! [`Shared::forwards`]: rmqtt::shared::Shared::forwards
//! [`ClusterShared`]: crate::cluster_shared::ClusterShared
//! [`Event::Confirmed`]: mqtt_cluster_core::Event::Confirmed
//! [`Event::NotConfirmed`]: mqtt_cluster_core::Event::NotConfirmed

use std::collections::HashMap;
use std::sync::Mutex;

use mqtt_cluster_core::forward::confirm::{ConfirmFailure, PublishId};
use tokio::sync::oneshot;

/// How a publish ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every destination took it.
    Confirmed,
    /// Some destination never will, for this reason.
    NotConfirmed(ConfirmFailure),
}

#[derive(Debug, Default)]
struct State {
    waiting: HashMap<PublishId, oneshot::Sender<Outcome>>,
    early: HashMap<PublishId, Outcome>,
}

/// Publishers waiting for their publishes' confirmations.
#[derive(Debug, Default)]
pub struct Confirmations {
    state: Mutex<State>,
}

impl Confirmations {
    /// Resolves with how publish `id` ended.
    pub fn wait(&self, id: PublishId) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.early.remove(&id) {
            Some(outcome) => {
                let _ = tx.send(outcome);
            }
            None => {
                state.waiting.insert(id, tx);
            }
        }
        rx
    }

    /// The node settled publish `id`.
    pub fn settle(&self, id: PublishId, outcome: Outcome) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.waiting.remove(&id) {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => {
                state.early.insert(id, outcome);
            }
        }
    }

    /// Forgets a confirmation nobody will wait for (the publisher gave up).
    pub fn forget(&self, id: PublishId) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting.remove(&id);
        state.early.remove(&id);
    }

    /// How many publishers wait, and how many confirmations wait for them.
    pub fn pending(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.waiting.len(), state.early.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_confirmation_before_or_after_the_wait_reaches_the_publisher() {
        let confirmations = Confirmations::default();
        confirmations.settle(PublishId(1), Outcome::Confirmed);
        assert_eq!(
            confirmations.wait(PublishId(1)).await.unwrap(),
            Outcome::Confirmed
        );
        let waiting = confirmations.wait(PublishId(2));
        confirmations.settle(PublishId(2), Outcome::NotConfirmed(ConfirmFailure::Expired));
        assert_eq!(
            waiting.await.unwrap(),
            Outcome::NotConfirmed(ConfirmFailure::Expired)
        );
        assert_eq!(confirmations.pending(), (0, 0));
    }
}
