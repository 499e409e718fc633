//! The two clocks a node is told about.
//!
//! The core never reads a clock. Every input carries a [`Now`]: a monotonic
//! [`Instant`] that drives heartbeats, timeouts and retries, and a [`WallTime`]
//! used only where nodes must compare time with each other (the freshness
//! window of request signatures, see [`crate::auth`]). Both are plain integers
//! so that simulations and fuzz inputs can build them from nothing.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point on the node's monotonic clock, in milliseconds since an epoch the
/// runtime chooses (usually the moment it started).
///
/// ```
/// use mqtt_cluster_core::Instant;
/// use std::time::Duration;
/// let t = Instant::from_millis(1_000);
/// assert_eq!(t + Duration::from_millis(500), Instant::from_millis(1_500));
/// assert_eq!(Instant::from_millis(1_500) - t, Duration::from_millis(500));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(u64);

impl Instant {
    /// The epoch of the runtime's clock.
    pub const ZERO: Instant = Instant(0);

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
///
/// Only compared between nodes in the freshness check of signed requests, so a
/// skew within the configured window is harmless.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct WallTime(u64);

impl WallTime {
    /// `millis` milliseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_millis(millis: u64) -> Self {
        WallTime(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// The absolute distance between two wall times.
    pub fn distance(self, other: WallTime) -> Duration {
        Duration::from_millis(self.0.abs_diff(other.0))
    }
}

/// The time of an input: both clocks, read by the runtime at the same moment.
///
/// ```
/// use mqtt_cluster_core::{Instant, Now, WallTime};
/// let now = Now::new(Instant::from_millis(10), WallTime::from_unix_millis(1_700_000_000_000));
/// assert_eq!(now.instant.as_millis(), 10);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Now {
    /// Monotonic time: drives every timer in the node.
    pub instant: Instant,
    /// Wall-clock time: signs and checks the freshness of requests.
    pub wall: WallTime,
}

impl Now {
    /// Pairs a monotonic instant with the wall-clock time read beside it.
    pub const fn new(instant: Instant, wall: WallTime) -> Self {
        Now { instant, wall }
    }

    /// Both clocks moved forward by `d`; handy in tests and simulations.
    pub fn after(self, d: Duration) -> Now {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Now {
            instant: self.instant + d,
            wall: WallTime(self.wall.0.saturating_add(ms)),
        }
    }
}
