//! The two clocks a node is told about, read from `std`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqtt_cluster_core::{Instant, Now, WallTime};

/// Maps the monotonic clock onto the core's [`Instant`] (milliseconds since
/// the node started) and the system clock onto [`WallTime`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: std::time::Instant::now(),
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

    /// The moment at which the core's clock reads `instant`.
    ///
    /// The core counts whole milliseconds and `now()` rounds down, so a wait
    /// until here never ends before the core considers the deadline reached.
    pub(crate) fn to_std(self, instant: Instant) -> std::time::Instant {
        self.start
            .checked_add(Duration::from_millis(instant.as_millis()))
            // A deadline beyond what the platform's clock can represent is
            // as good as never; a year stands in for it.
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(365 * 86_400))
    }
}

/// The system clock as [`WallTime`]; a clock set before 1970 reads as 1970.
fn wall_now() -> WallTime {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    WallTime::from_unix_millis(millis)
}

/// A seed for a node whose host gave none: the standard library's
/// per-process random hash keys, mixed with the time and the process id, so
/// two nodes started in the same process or the same instant still differ.
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

    #[test]
    fn core_instants_map_back_onto_the_monotonic_clock() {
        let clock = Clock::new();
        let later = clock.to_std(Instant::from_millis(1_500));
        assert_eq!(later - clock.start, Duration::from_millis(1_500));
        assert!(clock.now().instant < Instant::from_millis(1_000));
        assert!(clock.now().wall.as_unix_millis() > 1_577_836_800_000);
    }

    #[test]
    fn seeds_differ_between_calls() {
        assert_ne!(os_seed(), os_seed());
    }
}
