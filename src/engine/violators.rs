//! A short, bounded memory of peers that broke the protocol: for `violation_ban` after a
//! violation a peer is not gossiped with again, so reconnecting at once does not buy a fresh
//! start. At most [`MAX_REMEMBERED`] peers are remembered (the oldest entries go first), so a
//! stream of throwaway peer ids costs a bounded table; against those, the application's
//! connection limits and block list are the answer (README, threat model).

use super::Millis;
use std::collections::{BTreeMap, VecDeque};

/// How many violators are remembered at most (about 100 bytes each).
pub(crate) const MAX_REMEMBERED: usize = 1024;

#[derive(Debug)]
pub(crate) struct Violators<P> {
    until: BTreeMap<P, Millis>,
    order: VecDeque<(Millis, P)>,
    ban_ms: Millis,
}

impl<P: Clone + Ord> Violators<P> {
    pub(crate) fn new(ban_ms: Millis) -> Self {
        Violators {
            until: BTreeMap::new(),
            order: VecDeque::new(),
            ban_ms,
        }
    }

    pub(crate) fn record(&mut self, peer: &P, now: Millis) {
        if self.ban_ms == 0 {
            return;
        }
        let until = now.saturating_add(self.ban_ms);
        self.until.insert(peer.clone(), until);
        self.order.push_back((until, peer.clone()));
        while self.until.len() > MAX_REMEMBERED
            || self.order.front().is_some_and(|(t, _)| *t <= now)
        {
            let Some((t, p)) = self.order.pop_front() else {
                break;
            };
            if self.until.get(&p) == Some(&t) {
                self.until.remove(&p);
            }
        }
    }

    pub(crate) fn banned(&self, peer: &P, now: Millis) -> bool {
        self.until.get(peer).is_some_and(|t| *t > now)
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert!(self.until.len() <= MAX_REMEMBERED);
        assert!(self.order.len() >= self.until.len());
    }
}
