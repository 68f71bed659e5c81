//! The node's one clock, read by the behaviour (for the engine) and by every connection
//! handler (for the time window of the envelopes it verifies ahead), so all see one time.
//!
//! Two readings, and the only place either is read:
//! - [`Clock::now`], the engine's time for deadlines: the Unix time at start plus a
//!   monotonic elapsed time, so deadlines never jump when the system clock does;
//! - [`Clock::wall`], the system's wall-clock time: the time window, the age of messages
//!   and this node's own timestamps follow it (a peer judges them by its own wall clock).
//!
//! They part after a suspend (the monotonic clock stops, wall time does not) or when the
//! system clock is stepped; [`Clock::offset`] is how far, and the behaviour hands it to the
//! engine ([`Engine::set_wall_clock`](crate::engine::Engine::set_wall_clock)). A change of
//! more than [`STEP_MS`] is reported as a step.

use crate::engine::Millis;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A change of the wall-clock offset larger than this is a step (or a suspend), logged.
pub(crate) const STEP_MS: i64 = 1_000;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
    start_unix: Duration,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: Instant::now(),
            start_unix: unix_now(),
        }
    }

    /// Milliseconds since the Unix epoch at start, plus monotonic time since: for deadlines.
    pub(crate) fn now(&self) -> Millis {
        to_millis(self.start_unix + self.start.elapsed())
    }

    /// Milliseconds since the Unix epoch by the system clock, now.
    pub(crate) fn wall(&self) -> Millis {
        to_millis(unix_now())
    }

    /// Wall time minus [`Clock::now`], and the engine time it was read at.
    pub(crate) fn offset(&self) -> (i64, Millis) {
        let now = self.now();
        let offset = i128::from(self.wall()) - i128::from(now);
        (
            i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX }),
            now,
        )
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn to_millis(d: Duration) -> Millis {
    d.as_millis().min(u128::from(u64::MAX)) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspend_shows_as_an_offset_between_wall_and_monotonic_time() {
        let clock = Clock::new();
        let (offset, _) = clock.offset();
        assert!(offset.abs() < STEP_MS, "fresh: {offset}");
        // As after a two-hour suspend: the monotonic clock is two hours behind.
        let suspended = Clock {
            start: clock.start,
            start_unix: clock.start_unix - Duration::from_secs(7_200),
        };
        let (offset, now) = suspended.offset();
        assert!((offset - 7_200_000).abs() < STEP_MS, "{offset}");
        assert!(suspended.wall().abs_diff(now) >= 7_199_000);
    }
}
