//! The failure detector of a core.
//!
//! A core watches the members it is responsible for: the workers registered
//! with it, every other core, and the workers of a core that died (until
//! they register elsewhere). Silence longer than `suspectTimeout` makes a
//! member suspect, longer than `deadTimeout` dead.

use std::time::Duration;

use super::Node;
use crate::id::Role;
use crate::membership::Change;
use crate::time::Now;
use crate::wire::messages::{MemberRecord, MemberState};

impl Node {
    /// Decides which watched members became suspect or dead by `now`.
    pub(super) fn watch(&mut self, now: Now) -> Vec<Change> {
        let suspect_after = self.config.suspect_timeout;
        let dead_after = self.config.dead_timeout;
        let verdicts: Vec<MemberRecord> = self
            .membership
            .live()
            .filter(|r| r.id != self.id)
            .filter_map(|r| {
                let silence = self.watched_silence(r, now)?;
                let state = if silence > dead_after {
                    MemberState::Dead
                } else if silence > suspect_after && r.state == MemberState::Alive {
                    MemberState::Suspect
                } else {
                    return None;
                };
                Some(MemberRecord { state, ..r.clone() })
            })
            .collect();
        verdicts
            .into_iter()
            .map(|r| self.membership.decide(r, now.instant))
            .collect()
    }

    /// How long a member this core watches has been silent; `None` for
    /// members another live core watches.
    fn watched_silence(&self, record: &MemberRecord, now: Now) -> Option<Duration> {
        let silence = self.membership.silence(&record.id, now.instant);
        if record.role == Role::Core || record.home == self.id {
            return Some(silence);
        }
        let home = self.membership.get(&record.home);
        match home {
            Some(home) if !home.state.is_gone() => None,
            // An orphan: its home died. Count its silence from the moment this
            // core saw the home go, so it has time to register elsewhere.
            _ => {
                let orphaned = self
                    .membership
                    .gone_at(&record.home)
                    .map_or(silence, |t| now.instant.saturating_since(t));
                Some(silence.min(orphaned))
            }
        }
    }
}
