//! Clock trouble, made visible: whether most fresh envelopes from peers fall outside this
//! node's time window, which means this node's clock (or most peers') is wrong.
//!
//! Rules, all here:
//! - every fresh envelope from a peer (not a known id) that reaches the time-window check is a
//!   sample: its timestamp minus this node's time, and whether it was outside the window;
//! - the last [`SAMPLES`] samples are kept; once at least [`MIN_SAMPLES`] are there and more
//!   than half are outside the window, the estimated offset (the median of the samples:
//!   peers' clocks minus this node's) is reported, once;
//! - it is reported again only after the share outside has fallen to a quarter or less.
//!
//! One hostile peer can send out-of-window envelopes and make this node report a skew: the
//! report changes nothing in the protocol (it is a warning for the operator), and it costs
//! the peer its inbound budget. Bounds: [`SAMPLES`] offsets (8 bytes each).

use super::Millis;
use std::collections::VecDeque;

/// Samples kept.
pub(crate) const SAMPLES: usize = 64;
/// Samples needed before anything is reported.
pub(crate) const MIN_SAMPLES: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Skew {
    samples: VecDeque<(i64, bool)>,
    outside: usize,
    reported: bool,
}

impl Skew {
    /// A fresh envelope stamped `timestamp`, received at `now`, `outside` the window or not.
    /// Returns the estimated offset (peers minus this node, in ms) when it is to be reported.
    pub(crate) fn sample(&mut self, timestamp: Millis, now: Millis, outside: bool) -> Option<i64> {
        let offset = (i128::from(timestamp) - i128::from(now))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        self.samples.push_back((offset, outside));
        self.outside += usize::from(outside);
        if self.samples.len() > SAMPLES
            && let Some((_, was_outside)) = self.samples.pop_front()
        {
            self.outside -= usize::from(was_outside);
        }
        let n = self.samples.len();
        if self.reported {
            if self.outside * 4 <= n {
                self.reported = false;
            }
            return None;
        }
        if n < MIN_SAMPLES || self.outside * 2 <= n {
            return None;
        }
        self.reported = true;
        let mut offsets: Vec<i64> = self.samples.iter().map(|(o, _)| *o).collect();
        offsets.sort_unstable();
        Some(offsets[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skew_is_reported_once_when_most_samples_are_outside_and_again_after_recovery() {
        let mut s = Skew::default();
        let now = 10_000_000_000;
        // Half inside, half an hour ahead: not yet a majority.
        for i in 0..MIN_SAMPLES {
            let outside = i % 2 == 0;
            let ts = if outside { now + 1_800_000 } else { now };
            assert_eq!(s.sample(ts, now, outside), None, "sample {i}");
        }
        // One more outside: a majority of 17, reported with the median offset.
        assert_eq!(s.sample(now + 1_800_000, now, true), Some(1_800_000));
        assert_eq!(s.sample(now + 1_800_000, now, true), None, "once");
        // Back inside until a quarter or less is outside, then it can be reported again.
        for _ in 0..SAMPLES {
            assert_eq!(s.sample(now, now, false), None);
        }
        let mut again = None;
        for _ in 0..SAMPLES {
            again = again.or(s.sample(now.saturating_sub(7_200_000), now, true));
        }
        assert_eq!(again, Some(-7_200_000));
    }
}
