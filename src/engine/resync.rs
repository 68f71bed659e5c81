//! The resync budget: how often a peer's complete digest is answered.
//!
//! Rules, all here:
//! - a complete digest is answered (with what the peer lacks) at most once per
//!   `min_resync_interval` per connection; the first always. One within the interval is read
//!   as announcements only (`pull.rs`), so a peer that sends empty complete frames in a loop
//!   draws one answer per interval, however many it sends.
//!
//! Bounds: one time per connected peer.

use super::Millis;
use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) struct Resyncs<P> {
    last: BTreeMap<P, Millis>,
    min_interval: Millis,
}

impl<P: Clone + Ord> Resyncs<P> {
    pub(crate) fn new(min_interval: Millis) -> Self {
        Resyncs {
            last: BTreeMap::new(),
            min_interval,
        }
    }

    /// Whether `peer`'s complete digest received at `now` is answered; if so, the budget is
    /// spent until `min_interval` from `now`.
    pub(crate) fn allow(&mut self, peer: &P, now: Millis) -> bool {
        let allowed = self
            .last
            .get(peer)
            .is_none_or(|t| now >= t.saturating_add(self.min_interval));
        if allowed {
            self.last.insert(peer.clone(), now);
        }
        allowed
    }

    /// `peer`'s connection is gone (or replaced).
    pub(crate) fn disconnected(&mut self, peer: &P) {
        self.last.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_interval_per_peer() {
        let mut r = Resyncs::new(1_000);
        // (peer, now, answered)
        let table = [
            (1u8, 0, true),
            (1, 999, false),
            (2, 999, true),
            (1, 1_000, true),
            (1, 1_500, false),
        ];
        for (i, (peer, now, answered)) in table.into_iter().enumerate() {
            assert_eq!(r.allow(&peer, now), answered, "row {i}");
        }
        r.disconnected(&1);
        assert!(
            r.allow(&1, 1_600),
            "a new connection starts with its budget"
        );
    }
}
