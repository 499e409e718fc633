//! The two clocks a node is told about, read from tokio and the system.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqtt_cluster_core::{Instant, Now, WallTime};

/// Maps tokio's monotonic clock onto the core's [`Instant`] (milliseconds
/// since the driver started) and the system clock onto [`WallTime`].
///
/// Tokio's clock rather than `std`'s, so that a test paused with
/// `tokio::time::pause` moves the node's timers too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    /// Both clocks, read together.
    pub(crate) fn now(&self) -> Now {
        let elapsed = self.start.elapsed().as_millis();
        Now::new(
            Instant::from_millis(u64::try_from(elapsed).unwrap_or(u64::MAX)),
            wall_now(),
        )
    }

    /// The tokio instant at which the core's clock reads `instant`.
    ///
    /// The core counts whole milliseconds and `now()` rounds down, so a timer
    /// set here never fires before the core considers the deadline reached.
    pub(crate) fn to_tokio(self, instant: Instant) -> tokio::time::Instant {
        let offset = Duration::from_millis(instant.as_millis());
        self.start
            .checked_add(offset)
            // A deadline beyond what the platform's clock can represent is
            // as good as never; a year stands in for it.
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 86_400))
    }
}

/// The system clock as [`WallTime`]; a clock set before 1970 reads as 1970.
pub(crate) fn wall_now() -> WallTime {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    WallTime::from_unix_millis(millis)
}

/// A seed for a node whose host gave none: the standard library's per-process
/// random hash keys, mixed with the time and the process id, so two nodes
/// started in the same process or the same instant still differ.
pub(crate) fn os_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn core_instants_follow_tokio_time_and_map_back() {
        let clock = Clock::new();
        assert_eq!(clock.now().instant, Instant::ZERO);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        let now = clock.now();
        assert_eq!(now.instant, Instant::from_millis(1_500));
        assert_eq!(
            clock.to_tokio(now.instant) - clock.start,
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn seeds_differ_between_calls() {
        assert_ne!(os_seed(), os_seed());
    }

    #[test]
    fn wall_time_is_after_2020() {
        assert!(wall_now().as_unix_millis() > 1_577_836_800_000);
    }
}
