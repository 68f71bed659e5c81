//! Clock trouble, made visible: whether most connected peers send fresh envelopes that fall
//! outside this node's time window, which means this node's clock (or theirs) is wrong.
//!
//! Rules, all here:
//! - every fresh envelope from a peer (not a known id) that reaches the time-window check is a
//!   sample of that peer: its timestamp minus this node's time, and whether it was outside the
//!   window. Only each connected peer's last sample is kept, so a peer has one vote however
//!   much it sends;
//! - when the peers whose last sample was outside are a strict majority of the connected
//!   peers, the estimated offset (the median of the peers' last offsets: their clocks minus
//!   this node's) is reported, once;
//! - it is reported again only after those peers have fallen to a quarter or fewer.
//!
//! So one hostile peer among honest ones that send cannot make this node report a skew, nor
//! hide a real one; alone with the node (or with many Sybil connections) it can, and the
//! report changes nothing in the protocol: it is a warning for the operator. Bounds: one
//! sample per connected peer.

use super::Millis;
use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) struct Skew<P> {
    /// Each peer's last sample: offset (ms), outside the window.
    last: BTreeMap<P, (i64, bool)>,
    /// How many of them were outside.
    outside: usize,
    reported: bool,
}

impl<P: Clone + Ord> Skew<P> {
    pub(crate) fn new() -> Self {
        Skew {
            last: BTreeMap::new(),
            outside: 0,
            reported: false,
        }
    }

    /// A fresh envelope from `peer` stamped `timestamp`, received at `now`, `outside` the
    /// window or not, with `connected` peers in all. Returns the estimated offset (peers minus
    /// this node, in ms) when it is to be reported.
    pub(crate) fn sample(
        &mut self,
        peer: &P,
        timestamp: Millis,
        now: Millis,
        outside: bool,
        connected: usize,
    ) -> Option<i64> {
        let offset = (i128::from(timestamp) - i128::from(now))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        if let Some((_, was)) = self.last.insert(peer.clone(), (offset, outside)) {
            self.outside -= usize::from(was);
        }
        self.outside += usize::from(outside);
        if self.reported {
            if self.outside * 4 <= connected {
                self.reported = false;
            }
            return None;
        }
        if self.outside * 2 <= connected {
            return None;
        }
        self.reported = true;
        let mut offsets: Vec<i64> = self.last.values().map(|(o, _)| *o).collect();
        offsets.sort_unstable();
        Some(offsets[offsets.len() / 2])
    }

    /// `peer` is gone: its vote with it.
    pub(crate) fn disconnected(&mut self, peer: &P) {
        if let Some((_, was)) = self.last.remove(peer) {
            self.outside -= usize::from(was);
        }
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self, connected: usize) {
        assert!(
            self.last.len() <= connected,
            "samples only of connected peers"
        );
        let outside = self.last.values().filter(|(_, o)| *o).count();
        assert_eq!(outside, self.outside, "outside count");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 10_000_000_000;
    const AHEAD: Millis = NOW + 7_200_000;

    #[test]
    fn a_skew_is_reported_once_when_most_peers_are_outside_and_again_after_recovery() {
        let mut s = Skew::new();
        // (peer, timestamp, outside, connected, reported)
        let table: [(u8, Millis, bool, usize, Option<i64>); 8] = [
            (1, AHEAD, true, 3, None), // 1 of 3 peers
            (1, AHEAD, true, 3, None), // still one vote, however many it sends
            (2, NOW, false, 3, None),
            (3, AHEAD, true, 3, Some(7_200_000)), // 2 of 3: a majority, the median offset
            (3, AHEAD, true, 3, None),            // once
            (1, NOW, false, 3, None),             // 1 of 3 outside: not a quarter yet
            (3, NOW, false, 3, None),             // none outside: it can be reported again
            (3, AHEAD, true, 1, Some(7_200_000)), // alone with the node: 1 of 1
        ];
        for (i, (peer, ts, outside, connected, reported)) in table.into_iter().enumerate() {
            if connected == 1 {
                s.disconnected(&1);
                s.disconnected(&2);
            }
            assert_eq!(
                s.sample(&peer, ts, NOW, outside, connected),
                reported,
                "row {i}"
            );
            s.check_invariants(connected);
        }
    }

    #[test]
    fn one_peer_among_honest_ones_cannot_report_a_skew() {
        let mut s = Skew::new();
        for p in 1..=4u8 {
            assert_eq!(s.sample(&p, NOW, NOW, false, 5), None);
        }
        for _ in 0..1_000 {
            assert_eq!(s.sample(&9, 1, NOW, true, 5), None);
        }
    }
}
