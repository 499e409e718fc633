//! End-to-end confirmation inside the node: confirmations made where a
//! destination takes a message, carried back to the origin, and the
//! origin's bookkeeping ([`Outstanding`]) turned into events and resends.
//!
//! A confirmation is made by the node that sees the destination take the
//! copy: a core delivering to itself, or a core whose worker acknowledged
//! the stream batch that carried it. It then goes the way a message to the
//! origin would: to the origin itself if it is a core or this core's
//! worker, else to the origin's core, which passes it on only to its own
//! worker. Confirmations are not retried: one that is lost leaves its
//! message unconfirmed, and the origin sends the message again, which the
//! destination takes as a duplicate and confirms again.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;

use super::{Event, Node, Pending, TransportError};
use crate::forward::confirm::{Admitted, Settled};
use crate::forward::link::{DropReason, Dropped};
use crate::id::{Incarnation, NodeId, Role};
use crate::time::Now;
use crate::wire::messages::{ConfirmRequest, Confirmation, ForwardedMessage, StreamFrame};
use crate::wire::{encode_json, Endpoint};

/// How many confirmation ranges wait for one hop at most; more are lost
/// (and counted), and their origins send the messages again.
const MAX_WAITING_CONFIRMATIONS: usize = 65_536;

/// Confirmations waiting to go, by next hop (this node's own id for its
/// own messages).
#[derive(Debug, Default)]
pub(super) struct ConfirmOutbox {
    by_hop: BTreeMap<NodeId, Vec<Confirmation>>,
}

impl ConfirmOutbox {
    /// Adds one confirmed copy, merged into the last range when it
    /// continues it. Returns false when the hop's outbox is full.
    fn push(
        &mut self,
        hop: &NodeId,
        origin: &NodeId,
        incarnation: Incarnation,
        to: &NodeId,
        seq: u64,
    ) -> bool {
        let waiting = match self.by_hop.get_mut(hop) {
            Some(waiting) => waiting,
            None => self.by_hop.entry(hop.clone()).or_default(),
        };
        if waiting
            .last_mut()
            .is_some_and(|last| last.absorb(origin, incarnation, to, seq))
        {
            return true;
        }
        if waiting.len() >= MAX_WAITING_CONFIRMATIONS {
            return false;
        }
        waiting.push(Confirmation {
            origin: origin.clone(),
            incarnation,
            to: to.clone(),
            from: seq,
            through: seq,
        });
        true
    }

    /// Adds a range of confirmed copies as it is.
    fn push_range(&mut self, hop: &NodeId, confirmation: Confirmation) -> bool {
        let waiting = self.by_hop.entry(hop.clone()).or_default();
        if waiting
            .last_mut()
            .is_some_and(|last| last.absorb_range(&confirmation))
        {
            return true;
        }
        if waiting.len() >= MAX_WAITING_CONFIRMATIONS {
            return false;
        }
        waiting.push(confirmation);
        true
    }

    fn is_empty(&self) -> bool {
        self.by_hop.is_empty()
    }
}

impl Node {
    /// The destination `to` took copy `seq` of a QoS 1 or 2 message from
    /// `origin`: the confirmation starts back towards the origin.
    pub(super) fn confirm_copy(
        &mut self,
        origin: &NodeId,
        incarnation: Incarnation,
        to: &NodeId,
        seq: u64,
    ) {
        match self.confirmation_hop(origin, true) {
            Some(hop) => {
                if !self.confirm_outbox.push(&hop, origin, incarnation, to, seq) {
                    self.stats.confirmations_lost += 1;
                }
            }
            None => self.stats.confirmations_lost += 1,
        }
    }

    /// Where a confirmation for `origin`'s messages goes next from here.
    /// `may_cross_cores` is false for confirmations from another core: they
    /// go only to this node or its own workers, never to a third core.
    fn confirmation_hop(&self, origin: &NodeId, may_cross_cores: bool) -> Option<NodeId> {
        if *origin == self.id {
            return Some(self.id.clone());
        }
        let record = self.membership.get(origin).filter(|r| !r.state.is_gone())?;
        match record.role {
            Role::Worker if record.home == self.id => Some(record.id.clone()),
            Role::Worker if may_cross_cores => Some(record.home.clone()),
            Role::Core if may_cross_cores => Some(record.id.clone()),
            _ => None,
        }
    }

    /// A core takes confirmations another core passed on.
    pub(super) fn serve_confirm(&mut self, now: Now, request: ConfirmRequest) {
        for confirmation in request.confirms {
            if confirmation.origin == self.id {
                self.apply_confirmation(now, &confirmation);
                continue;
            }
            match self.confirmation_hop(&confirmation.origin, false) {
                Some(hop) => {
                    if !self.confirm_outbox.push_range(&hop, confirmation) {
                        self.stats.confirmations_lost += 1;
                    }
                }
                None => self.stats.confirmations_lost += 1,
            }
        }
    }

    /// A worker takes the confirmations its core pushed.
    pub(super) fn take_confirms_frame(&mut self, now: Now, request: ConfirmRequest) {
        for confirmation in request.confirms {
            if confirmation.origin == self.id {
                self.apply_confirmation(now, &confirmation);
            }
        }
    }

    /// A confirmation of this node's own messages.
    fn apply_confirmation(&mut self, now: Now, confirmation: &Confirmation) {
        // Another process under this name numbered its messages afresh: its
        // confirmations say nothing of this one's.
        if confirmation.incarnation != self.first_incarnation {
            self.stats.confirmations_lost += 1;
            return;
        }
        let settled = self.outstanding.confirm(confirmation);
        self.report_settled(settled);
        self.release_waiting(now);
    }

    pub(super) fn report_settled(&mut self, settled: Vec<Settled>) {
        for settled in settled {
            let event = match settled.failure {
                None => {
                    self.stats.confirmed += 1;
                    Event::Confirmed {
                        id: settled.id,
                        nodes: settled.confirmed,
                    }
                }
                Some((reason, failed)) => {
                    *self.stats.not_confirmed.entry(reason).or_default() += 1;
                    Event::NotConfirmed {
                        id: settled.id,
                        reason,
                        failed,
                        confirmed: settled.confirmed,
                    }
                }
            };
            self.events.push_back(event);
        }
    }

    /// Takes a numbered message into the origin's bookkeeping and sends it
    /// if its destinations' windows allow.
    pub(super) fn admit_published(
        &mut self,
        now: Now,
        id: Option<crate::forward::confirm::PublishId>,
        message: ForwardedMessage,
    ) {
        match self.outstanding.admit(now.instant, id, message) {
            Admitted::Send(message) => self.send_published(now, message),
            Admitted::Held => self.busy = true,
            Admitted::Dropped(message) => {
                let peer = message.targets.first().map(|t| t.node.clone());
                let dropped = Dropped {
                    item: message,
                    reason: DropReason::QueueFull,
                };
                self.report_drops(peer.as_ref(), vec![dropped]);
            }
        }
    }

    /// Puts a message of this node's own on its way: the uplink for a
    /// worker, the links for a core.
    fn send_published(&mut self, now: Now, message: ForwardedMessage) {
        if self.forwarding.settle_on_send {
            let settled: Vec<Confirmation> = message
                .targets
                .iter()
                .map(|t| Confirmation {
                    origin: self.id.clone(),
                    incarnation: self.first_incarnation,
                    to: t.node.clone(),
                    from: t.seq,
                    through: t.seq,
                })
                .collect();
            self.send_published_now(now, message);
            for confirmation in &settled {
                let settled = self.outstanding.confirm(confirmation);
                self.report_settled(settled);
            }
            return;
        }
        self.send_published_now(now, message);
    }

    fn send_published_now(&mut self, now: Now, message: ForwardedMessage) {
        match self.role {
            Role::Worker => {
                let dropped = self.forwarding.uplink.push(now.instant, message);
                let core = self.worker.registered_core().cloned();
                self.report_drops(core.as_ref(), dropped.into_iter().collect());
            }
            Role::Core => self.relay(now, message, true),
        }
    }

    /// Sends what the windows let go, and tells the host once they are
    /// open again after it was told the node was busy.
    fn release_waiting(&mut self, now: Now) {
        if !self.outstanding.is_busy() {
            return;
        }
        for message in self.outstanding.release(now.instant) {
            self.send_published(now, message);
        }
        if self.busy && !self.outstanding.is_busy() {
            self.busy = false;
            self.events.push_back(Event::Ready);
        }
    }

    /// The periodic work of the origin: expiry, destinations gone, resends.
    pub(super) fn confirm_tick(&mut self, now: Now) {
        let membership = &self.membership;
        let gone = |node: &NodeId| membership.get(node).is_none_or(|r| r.state.is_gone());
        let (resend, settled) = self.outstanding.tick(now.instant, gone);
        self.settle_and_resend(now, settled, resend);
        self.release_waiting(now);
    }

    /// A path changed (this worker moved to another core, a core died or
    /// came back, a destination moved or went away): what this node sent
    /// and has not seen confirmed goes again, except to destinations gone.
    pub(super) fn resend_unconfirmed(&mut self, now: Now) {
        if self.role == Role::Worker && self.worker.registered_core().is_none() {
            // Registering again will send them.
            return;
        }
        self.resend_due = false;
        let membership = &self.membership;
        let gone = |node: &NodeId| membership.get(node).is_none_or(|r| r.state.is_gone());
        let (resend, settled) = self.outstanding.resend_all(now.instant, gone);
        self.settle_and_resend(now, settled, resend);
    }

    /// Reports what settled, then sends again what stays unconfirmed.
    fn settle_and_resend(
        &mut self,
        now: Now,
        settled: Vec<Settled>,
        mut resend: Vec<ForwardedMessage>,
    ) {
        self.report_settled(settled);
        if self.forwarding.never_resend {
            resend.clear();
        }
        self.stats.resent += resend.len() as u64;
        for message in resend {
            self.send_published(now, message);
        }
    }

    /// `node` came back as another process: what it had not confirmed
    /// fails, which may open its window for what waits.
    pub(super) fn destination_restarted(&mut self, now: Now, node: &NodeId) {
        let settled = self.outstanding.fail_destination(node);
        if settled.is_empty() && !self.outstanding.is_busy() {
            return;
        }
        self.report_settled(settled);
        self.release_waiting(now);
    }

    /// How many copies this node sent again so far. Exists only so that
    /// the simulator can tell a copy sent again, which may arrive after
    /// later ones, from one reordered on its path.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn resent_for_checker(&self) -> u64 {
        self.stats.resent
    }

    /// The node stops: every unsettled publish fails, and the QoS 0
    /// messages that waited for a window are abandoned.
    pub(super) fn abandon_unconfirmed(&mut self) {
        let (settled, waiting) = self.outstanding.abandon();
        self.report_settled(settled);
        let dropped = waiting
            .into_iter()
            .map(|item| Dropped {
                item,
                reason: DropReason::Abandoned,
            })
            .collect();
        self.report_drops(None, dropped);
        self.busy = false;
    }

    /// Sends the confirmations waiting: applied here for this node's own
    /// messages, pushed on a worker's stream, or posted to a core (one
    /// request in flight per core; more wait for it).
    pub(super) fn flush_confirms(&mut self, now: Now) {
        if self.confirm_outbox.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.confirm_outbox.by_hop);
        for (hop, confirms) in waiting {
            if hop == self.id {
                for confirmation in &confirms {
                    self.apply_confirmation(now, confirmation);
                }
                continue;
            }
            let Some(record) = self.membership.get(&hop).filter(|r| !r.state.is_gone()) else {
                self.stats.confirmations_lost += confirms.len() as u64;
                continue;
            };
            if record.role == Role::Worker {
                match self.core.stream_of(&hop) {
                    Some(stream) => {
                        let frame = StreamFrame::Confirms(ConfirmRequest { confirms });
                        self.push_frame_bytes(stream, Self::frame(&frame));
                    }
                    None => self.stats.confirmations_lost += confirms.len() as u64,
                }
                continue;
            }
            let in_flight =
                self.is_pending(|p| matches!(p, Pending::Confirm { peer } if *peer == hop));
            if in_flight {
                self.confirm_outbox.by_hop.insert(hop, confirms);
                continue;
            }
            let Some(url) = self.peer_address(&hop) else {
                self.stats.confirmations_lost += confirms.len() as u64;
                continue;
            };
            let body: Bytes = encode_json(&ConfirmRequest { confirms });
            self.send(
                now,
                &url,
                Some(hop.clone()),
                Endpoint::Confirm,
                body,
                Pending::Confirm { peer: hop },
            );
        }
    }

    /// A `/confirm` was answered. What it carried is not sent again: the
    /// origins resend what stays unconfirmed.
    pub(super) fn on_confirm_answered(
        &mut self,
        result: Result<http::Response<Bytes>, TransportError>,
    ) {
        if !result.is_ok_and(|r| r.status() == StatusCode::OK) {
            self.stats.confirmations_lost += 1;
        }
    }
}
