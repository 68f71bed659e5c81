//! The node's one clock: wall-clock milliseconds that never go backwards, read by the
//! behaviour (for the engine) and by every connection handler (for the time window of the
//! envelopes it verifies ahead), so both see the same time.
//!
//! It is the Unix time at start plus a monotonic elapsed time: deadlines measured on it never
//! jump with the system clock.

use crate::engine::Millis;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
    start_unix: Duration,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: Instant::now(),
            start_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// Milliseconds since the Unix epoch, now.
    pub(crate) fn now(&self) -> Millis {
        let ms = (self.start_unix + self.start.elapsed()).as_millis();
        ms.min(u128::from(u64::MAX)) as Millis
    }
}
