//! The resync budget: how often a peer's complete digest is answered.
//!
//! Rules, all here:
//! - a complete digest is answered (with what the peer lacks) at most once per
//!   `min_resync_interval` per peer id, across its connections: a peer that reconnects does
//!   not buy a fresh answer. The first digest of a peer not heard within the interval is
//!   always answered. One within the interval is read as announcements only (`pull.rs`), so
//!   a peer that sends empty complete frames in a loop, or reconnects in a loop, draws one
//!   answer per interval, however many it sends (it still catches up: it wants what this
//!   node's own digest lists, one frame per round trip).
//!
//! Bounds: at most [`MAX_REMEMBERED`] peer ids (about 100 bytes each); an entry goes when
//! its interval is over, or, when the table is full, the oldest goes first (that peer id
//! gets a fresh answer: against a stream of new ids, the application's connection limits are
//! the answer, as for bans).

use super::Millis;
use super::expiring::Expiring;

/// How many peer ids' last answers are remembered at most.
pub(crate) const MAX_REMEMBERED: usize = 1024;

#[derive(Debug)]
pub(crate) struct Resyncs<P> {
    /// Peers answered, until their interval is over.
    answered: Expiring<P>,
    min_interval: Millis,
}

impl<P: Clone + Ord> Resyncs<P> {
    pub(crate) fn new(min_interval: Millis) -> Self {
        Resyncs {
            answered: Expiring::new(MAX_REMEMBERED),
            min_interval,
        }
    }

    /// Whether `peer`'s complete digest received at `now` is answered; if so, the budget is
    /// spent until `min_interval` from `now`.
    pub(crate) fn allow(&mut self, peer: &P, now: Millis) -> bool {
        self.answered.expire(now);
        if self.answered.get(peer).is_some() {
            return false;
        }
        if self.min_interval > 0 {
            // At the bound the entry that ends soonest goes: that peer gets a fresh answer.
            self.answered
                .insert(peer, now.saturating_add(self.min_interval));
        }
        true
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        self.answered.check_invariants();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_interval_per_peer_id_across_connections() {
        let mut r = Resyncs::new(1_000);
        // (peer, now, answered)
        let table = [
            (1u8, 0, true),
            (1, 999, false),
            (2, 999, true),
            (1, 1_000, true),
            (1, 1_500, false),
            (2, 1_998, false),
            (2, 1_999, true),
        ];
        for (i, (peer, now, answered)) in table.into_iter().enumerate() {
            assert_eq!(r.allow(&peer, now), answered, "row {i}");
        }
        r.check_invariants();
        let mut zero = Resyncs::new(0);
        assert!(
            zero.allow(&1u8, 0) && zero.allow(&1, 0),
            "no interval: always"
        );
    }

    #[test]
    fn the_table_is_bounded_and_the_oldest_goes_first() {
        let mut r = Resyncs::new(1_000_000);
        for p in 0..=MAX_REMEMBERED as u32 {
            assert!(r.allow(&p, u64::from(p)));
        }
        r.check_invariants();
        assert!(r.allow(&0, 2_000), "pushed out: answered again");
        assert!(
            !r.allow(&(MAX_REMEMBERED as u32), 2_001),
            "still remembered"
        );
        r.check_invariants();
    }
}
