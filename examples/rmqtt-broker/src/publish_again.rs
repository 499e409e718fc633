//! When a publish the node settled goes again, under
//! `--puback-after-confirm`.
//!
//! The node routes a publish by the table it holds at that moment. Two
//! answers say that table may have missed a subscriber, and the client's
//! PUBACK must wait for a second try:
//!
//! - the publish was routed while the node was settling
//!   ([`Routing::settling`]: a healed partition, a member back under a new
//!   incarnation whose routes have not arrived). Such a table settles within
//!   the gate's bound (`deadTimeout + requestTimeout`), however many rounds
//!   it takes: a worker that registered again rebuilds all of it;
//! - a destination went away before confirming
//!   ([`ConfirmFailure::DestinationGone`]): it may be a member back under a
//!   new incarnation, its subscribers waiting. That goes again
//!   [`PUBLISH_AGAIN`] times.
//!
//! [`Rounds`] decides, one settled publish at a time, and never waits
//! itself: the broker sleeps the glance it returns and the gate.
//!
//! [`Routing::settling`]: mqtt_cluster_core::node::Routing::settling

use std::time::Duration;

use mqtt_cluster_core::forward::confirm::ConfirmFailure;
use tokio::time::Instant;

use crate::confirmations::Outcome;

/// How many times a client publish is sent again when destinations went
/// away before confirming it (a healed partition may make several members
/// take new incarnations one after another).
pub const PUBLISH_AGAIN: u32 = 3;

/// How long a publish about to go again first gives the gate to hear of
/// what the node already knew (its events are on their way); doubled at
/// each further round up to [`LONGEST_GLANCE`], for routes that follow a
/// join, which the gate cannot see.
pub const SETTLE_GLANCE: Duration = Duration::from_millis(50);

/// The longest glance: 50, 100, 200, 400, then 800 ms each round.
pub const LONGEST_GLANCE: Duration = Duration::from_millis(800);

/// What becomes of a publish the node settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Publish it again (its `round`th time, from 1) once the gate is open,
    /// after `glance` if the gate is open already.
    Again {
        /// Which round this is.
        round: u32,
        /// How long an open gate is given to close first.
        glance: Duration,
    },
    /// Every destination took it, on a table that was not settling.
    Confirmed,
    /// Some destination never will.
    NotConfirmed(ConfirmFailure),
    /// Every destination the node knew took it, but the node still said
    /// members may be missing when the bound ran out (after `rounds`
    /// rounds): some subscribers may lack it.
    SettlingOutlasted {
        /// How many rounds went before.
        rounds: u32,
    },
}

/// The rounds of one client publish (all node publishes it became).
#[derive(Debug, Clone)]
pub struct Rounds {
    gone_left: u32,
    settle_by: Option<Instant>,
    round: u32,
}

impl Rounds {
    /// Rounds for a publish routed at `now`. `settle_within` is the gate's
    /// bound; without a gate a settling table is never waited for.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use mqtt_cluster_rmqtt_broker::confirmations::Outcome;
    /// # use mqtt_cluster_rmqtt_broker::publish_again::{Rounds, Verdict};
    /// let now = tokio::time::Instant::now();
    /// let mut rounds = Rounds::new(now, Some(Duration::from_secs(2)));
    /// // Routed while settling: every destination took it, it goes again.
    /// assert!(matches!(rounds.after(Outcome::Confirmed, true, now), Verdict::Again { round: 1, .. }));
    /// // The second time the table had settled.
    /// assert_eq!(rounds.after(Outcome::Confirmed, false, now), Verdict::Confirmed);
    /// ```
    pub fn new(now: Instant, settle_within: Option<Duration>) -> Rounds {
        Rounds {
            gone_left: PUBLISH_AGAIN,
            settle_by: settle_within.map(|within| now + within),
            round: 0,
        }
    }

    /// What to do with a node publish that ended with `outcome` at `now`,
    /// routed while the node was `settling` or not.
    pub fn after(&mut self, outcome: Outcome, settling: bool, now: Instant) -> Verdict {
        let gone = outcome == Outcome::NotConfirmed(ConfirmFailure::DestinationGone);
        let settle_left = self.settle_by.is_some_and(|by| now < by);
        if (settling && settle_left) || (gone && self.gone_left > 0) {
            if gone {
                self.gone_left -= 1;
            }
            self.round += 1;
            return Verdict::Again {
                round: self.round,
                glance: glance(self.round),
            };
        }
        match outcome {
            Outcome::NotConfirmed(reason) => Verdict::NotConfirmed(reason),
            Outcome::Confirmed if settling => Verdict::SettlingOutlasted { rounds: self.round },
            Outcome::Confirmed => Verdict::Confirmed,
        }
    }
}

fn glance(round: u32) -> Duration {
    let doubled = 2u32.saturating_pow(round.saturating_sub(1));
    SETTLE_GLANCE.saturating_mul(doubled).min(LONGEST_GLANCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(1500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_publish_routed_while_settling_goes_again_every_round_until_the_bound() {
        let start = Instant::now();
        let mut rounds = Rounds::new(start, Some(BOUND));
        let mut glances = Vec::new();
        // A worker rebuilding its table: still settling at every round,
        // far more rounds than a gone destination gets.
        for k in 0..15 {
            match rounds.after(Outcome::Confirmed, true, start + ms(k * 100)) {
                Verdict::Again { round, glance } => {
                    assert_eq!(round as u64, k + 1);
                    glances.push(glance.as_millis());
                }
                other => panic!("round {k}: {other:?}"),
            }
        }
        assert_eq!(&glances[..6], &[50, 100, 200, 400, 800, 800]);
        assert!(glances.iter().all(|g| *g <= 800));
        // Still settling when the bound ran out: not confirmed, said so.
        let verdict = rounds.after(Outcome::Confirmed, true, start + BOUND);
        assert_eq!(verdict, Verdict::SettlingOutlasted { rounds: 15 });
    }

    #[test]
    fn a_publish_that_went_again_is_confirmed_once_routed_on_a_settled_table() {
        let start = Instant::now();
        let mut rounds = Rounds::new(start, Some(BOUND));
        assert!(matches!(
            rounds.after(Outcome::Confirmed, true, start),
            Verdict::Again { round: 1, .. }
        ));
        assert!(matches!(
            rounds.after(Outcome::Confirmed, true, start + ms(60)),
            Verdict::Again { round: 2, .. }
        ));
        let verdict = rounds.after(Outcome::Confirmed, false, start + ms(170));
        assert_eq!(verdict, Verdict::Confirmed);
    }

    #[test]
    fn a_gone_destination_goes_again_three_times_then_counts_not_confirmed() {
        let start = Instant::now();
        let mut rounds = Rounds::new(start, Some(BOUND));
        let gone = Outcome::NotConfirmed(ConfirmFailure::DestinationGone);
        for round in 1..=PUBLISH_AGAIN {
            assert!(matches!(
                rounds.after(gone, false, start),
                Verdict::Again { round: r, .. } if r == round
            ));
        }
        assert_eq!(
            rounds.after(gone, false, start),
            Verdict::NotConfirmed(ConfirmFailure::DestinationGone)
        );
    }

    #[test]
    fn other_failures_end_at_once_unless_the_table_was_settling() {
        let start = Instant::now();
        let expired = Outcome::NotConfirmed(ConfirmFailure::Expired);
        let mut rounds = Rounds::new(start, Some(BOUND));
        assert_eq!(
            rounds.after(expired, false, start),
            Verdict::NotConfirmed(ConfirmFailure::Expired)
        );
        // A settling table may have missed the subscriber that failed.
        let mut rounds = Rounds::new(start, Some(BOUND));
        assert!(matches!(
            rounds.after(expired, true, start),
            Verdict::Again { round: 1, .. }
        ));
    }

    #[test]
    fn without_a_gate_a_settling_table_is_not_waited_for_but_counted() {
        let start = Instant::now();
        let mut rounds = Rounds::new(start, None);
        assert_eq!(
            rounds.after(Outcome::Confirmed, true, start),
            Verdict::SettlingOutlasted { rounds: 0 }
        );
    }

    #[test]
    fn the_rounds_of_one_client_publish_share_one_budget() {
        // A client publish is two node publishes (its copy for shared
        // groups): the gone budget and the round count are theirs together.
        let start = Instant::now();
        let mut rounds = Rounds::new(start, Some(BOUND));
        let gone = Outcome::NotConfirmed(ConfirmFailure::DestinationGone);
        assert!(matches!(
            rounds.after(gone, false, start),
            Verdict::Again { round: 1, .. }
        ));
        assert!(matches!(
            rounds.after(gone, false, start),
            Verdict::Again { round: 2, .. }
        ));
        assert!(matches!(
            rounds.after(Outcome::Confirmed, true, start),
            Verdict::Again { round: 3, glance } if glance == ms(200)
        ));
        assert!(matches!(
            rounds.after(gone, false, start),
            Verdict::Again { round: 4, .. }
        ));
        assert_eq!(
            rounds.after(gone, false, start),
            Verdict::NotConfirmed(ConfirmFailure::DestinationGone)
        );
    }
}
