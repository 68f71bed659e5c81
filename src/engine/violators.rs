//! A short, bounded memory of peers that broke the protocol or stalled: for `violation_ban`
//! after a violation (or a write that timed out) a peer is not gossiped with again, so
//! reconnecting at once does not buy a fresh start. At most [`MAX_REMEMBERED`] peers are
//! remembered (the oldest entries go first), so a stream of throwaway peer ids costs a
//! bounded table; against those, the application's connection limits and block list are the
//! answer (README, threat model).
//!
//! Rules, all here:
//! - a ban lasts `violation_ban` from the last offence; a zero ban ends at once (it is
//!   reported lifted as it is recorded, so a driver that stopped gossip resumes it);
//! - when a ban ends (its time came: [`Timer::Ban`](super::Timer::Ban), or the entry made room
//!   for a newer one) the peer is reported as lifted, so a driver that kept its connections
//!   open for other protocols gossips on them again.

use super::Millis;
use super::expiring::Expiring;

/// How many violators are remembered at most (about 100 bytes each).
pub(crate) const MAX_REMEMBERED: usize = 1024;

#[derive(Debug)]
pub(crate) struct Violators<P> {
    /// Banned peers, until their ban ends.
    bans: Expiring<P>,
    ban_ms: Millis,
}

impl<P: Clone + Ord> Violators<P> {
    pub(crate) fn new(ban_ms: Millis) -> Self {
        Violators {
            bans: Expiring::new(MAX_REMEMBERED),
            ban_ms,
        }
    }

    /// Bans `peer` from `now`. Returns the peers whose bans ended to make room (or had ended,
    /// or, with a zero ban, `peer` itself).
    pub(crate) fn record(&mut self, peer: &P, now: Millis) -> Vec<P> {
        if self.ban_ms == 0 {
            return vec![peer.clone()];
        }
        let mut lifted = self.bans.expire(now);
        lifted.extend(
            self.bans
                .insert(peer, now.saturating_add(self.ban_ms))
                .map(|(gone, _)| gone),
        );
        lifted
    }

    /// When the earliest ban ends.
    pub(crate) fn next_expiry(&self) -> Option<Millis> {
        self.bans.next()
    }

    /// The peers whose bans end by `now`.
    pub(crate) fn expire(&mut self, now: Millis) -> Vec<P> {
        self.bans.expire(now)
    }

    pub(crate) fn banned(&self, peer: &P, now: Millis) -> bool {
        self.bans.get(peer).is_some_and(|t| t > now)
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        self.bans.check_invariants();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_lasts_from_the_last_offence_and_its_end_is_reported() {
        let mut v = Violators::new(100);
        // (step, time, banned after, lifted)
        assert!(v.record(&1u8, 0).is_empty());
        assert!(v.banned(&1, 99) && !v.banned(&1, 100));
        assert!(v.record(&1, 50).is_empty(), "renewed");
        assert_eq!(v.next_expiry(), Some(150), "the renewed ban's end");
        assert!(
            v.expire(100).is_empty(),
            "renewed: not lifted at the first ban's end"
        );
        assert!(v.banned(&1, 149));
        assert_eq!(v.expire(150), vec![1]);
        assert!(!v.banned(&1, 150));
        assert_eq!(v.next_expiry(), None);
        let mut zero = Violators::new(0);
        assert_eq!(
            zero.record(&1u8, 0),
            vec![1],
            "a zero ban ends as it starts"
        );
        assert!(!zero.banned(&1, 0));
    }

    #[test]
    fn the_oldest_ban_makes_room_and_is_reported_lifted() {
        let mut v = Violators::new(1_000);
        for p in 0..MAX_REMEMBERED as u32 {
            assert!(v.record(&p, 0).is_empty());
        }
        assert_eq!(v.record(&u32::MAX, 1), vec![0]);
        v.check_invariants();
    }
}
