//! A bounded table of peers, each until a time: the shape of the engine's short memories of
//! peer ids (bans in `violators.rs`, resync answers in `resync.rs`, suspects that
//! disconnected in `tree.rs`). Each of those decides what an entry means and how long it
//! lasts; this table only keeps them.
//!
//! Rules, all here:
//! - one entry per peer; inserting again replaces it;
//! - at most `max` entries: beyond that, the entry that ends soonest goes (it is returned
//!   with its end, so the owner can report it, or tell whether it had ended already);
//! - entries whose time has come go on [`Expiring::expire`].

use super::Millis;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug)]
pub(crate) struct Expiring<P> {
    until: BTreeMap<P, Millis>,
    /// `(until, peer)` of every entry, soonest first.
    order: BTreeSet<(Millis, P)>,
    max: usize,
}

impl<P: Clone + Ord> Expiring<P> {
    /// A table of at most `max` peers.
    pub(crate) fn new(max: usize) -> Self {
        Expiring {
            until: BTreeMap::new(),
            order: BTreeSet::new(),
            max,
        }
    }

    /// `peer` until `until` (replacing its entry). Returns the entry that went to make room,
    /// if one did, with its end.
    pub(crate) fn insert(&mut self, peer: &P, until: Millis) -> Option<(P, Millis)> {
        if let Some(old) = self.until.insert(peer.clone(), until) {
            self.order.remove(&(old, peer.clone()));
        }
        self.order.insert((until, peer.clone()));
        if self.until.len() <= self.max {
            return None;
        }
        let (end, gone) = self.order.pop_first()?;
        self.until.remove(&gone);
        Some((gone, end))
    }

    /// Until when `peer` is in the table.
    pub(crate) fn get(&self, peer: &P) -> Option<Millis> {
        self.until.get(peer).copied()
    }

    /// Takes `peer`'s entry out.
    pub(crate) fn remove(&mut self, peer: &P) -> Option<Millis> {
        let until = self.until.remove(peer)?;
        self.order.remove(&(until, peer.clone()));
        Some(until)
    }

    /// Takes out the entries whose time is `now` or earlier; returns their peers, soonest
    /// first.
    pub(crate) fn expire(&mut self, now: Millis) -> Vec<P> {
        let mut gone = Vec::new();
        while self.order.first().is_some_and(|(t, _)| *t <= now) {
            let (_, peer) = self.order.pop_first().expect("looked");
            self.until.remove(&peer);
            gone.push(peer);
        }
        gone
    }

    /// When the soonest entry ends.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Panics if the two views disagree or the bound is broken.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert!(self.until.len() <= self.max);
        assert_eq!(self.until.len(), self.order.len());
        for (t, p) in &self.order {
            assert_eq!(self.until.get(p), Some(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_bounded_soonest_first_and_expired() {
        let mut e: Expiring<u8> = Expiring::new(2);
        assert_eq!(e.insert(&1, 100), None);
        assert_eq!(e.insert(&1, 150), None, "replaced, not added");
        assert_eq!(e.insert(&2, 120), None);
        assert_eq!(
            e.insert(&3, 200),
            Some((2, 120)),
            "the soonest goes at the bound"
        );
        assert_eq!(e.next(), Some(150));
        assert_eq!(e.expire(149), Vec::<u8>::new());
        assert_eq!(e.expire(150), vec![1]);
        assert_eq!(e.remove(&3), Some(200));
        assert_eq!(e.get(&3), None);
        e.check_invariants();
    }
}
