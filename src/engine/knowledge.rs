//! What a node believes one peer knows: ids it announced or sent, and ids sent to it.
//!
//! The belief only ever makes a node send *less* to that peer: an id it is believed to know
//! is not pushed, announced or sent again in answer to a want. So it is kept conservative and
//! bounded in bytes:
//! - only for authors this node permits and tracks or is pulling ([`worth_knowing`], which
//!   the engine checks before recording);
//! - at most `max_ranges_per_author` ranges per author, and `max_ranges_per_peer` in all.
//!   Beyond either, gaps are filled (treated as known): for the author concerned, and when
//!   the peer's total is over, for the author with the most ranges. An honest peer's ids are
//!   one contiguous run per author and never reach either bound; a peer that fragments its
//!   own knowledge only stops being sent ids it claims not to have, which it can pull from
//!   others;
//! - when a frame to the peer is dropped, what it carried is forgotten, with the whole ranges
//!   it falls in (the only way an id is sent twice on one connection).
//!
//! Memory per connection is therefore at most `max_ranges_per_peer` ranges (16 bytes each)
//! plus one map entry per author, for each of a peer's two sets ([`Beliefs`]): what it has,
//! and what it sent that this node dropped unverified (*refused*: outside the time window,
//! too large), which is never asked of that peer again. Refusals are kept per peer, so one
//! peer's unverified claim never stops the node from pulling a valid copy from another.
//!
//! [`Beliefs`] is also the engine's list of connected peers: a peer is connected exactly
//! while it has an entry here.

use super::authors::Authors;
use super::filter::SharedFilter;
use super::wants::Wants;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};

/// Whether anything a peer says it has or sent of `author` is kept: only for authors this
/// node permits and tracks or is pulling. Of any other author a peer's claims are forgotten
/// at once, so made-up authors cost a connection nothing.
pub(crate) fn worth_knowing<P: Clone + Ord>(
    filter: &SharedFilter,
    authors: &Authors<P>,
    wants: &Wants<P>,
    author: &PublicKey,
) -> bool {
    filter.permits(author) && (authors.is_tracked(author) || wants.wants_author(author))
}

#[derive(Debug, Default)]
pub(crate) struct Knowledge {
    sets: BTreeMap<PublicKey, RangeSet>,
    /// `(ranges, author)`: the most fragmented author first to be filled.
    by_size: BTreeSet<(usize, PublicKey)>,
    ranges: usize,
}

/// The bounds of one peer's [`Knowledge`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct KnowledgeLimits {
    pub(crate) per_author: usize,
    pub(crate) per_peer: usize,
}

impl Knowledge {
    pub(crate) fn knows(&self, author: &PublicKey, sequence: u64) -> bool {
        self.sets.get(author).is_some_and(|r| r.contains(sequence))
    }

    pub(crate) fn get(&self, author: &PublicKey) -> Option<&RangeSet> {
        self.sets.get(author)
    }

    /// Whether ids of `author` learned now would be kept (the author is recorded already, or
    /// there is room for it).
    pub(crate) fn can_record(&self, author: &PublicKey, limits: KnowledgeLimits) -> bool {
        self.sets.contains_key(author) || self.ranges < limits.per_peer
    }

    /// `ranges` minus what the peer knows of `author`.
    pub(crate) fn lacking(&self, author: &PublicKey, ranges: &RangeSet) -> RangeSet {
        match self.sets.get(author) {
            Some(known) => ranges.difference(known),
            None => ranges.clone(),
        }
    }

    pub(crate) fn learn_one(&mut self, author: &PublicKey, sequence: u64, limits: KnowledgeLimits) {
        if self.knows(author, sequence) {
            return;
        }
        self.update(author, limits, |set| {
            set.insert(sequence);
        });
    }

    pub(crate) fn learn(&mut self, author: &PublicKey, ranges: &RangeSet, limits: KnowledgeLimits) {
        if ranges.is_empty() {
            return;
        }
        self.update(author, limits, |set| set.union_with(ranges));
    }

    /// Forgets these ids (a frame carrying them to the peer was dropped), with the whole
    /// ranges they fall in: forgetting more only costs duplicates, and never splitting keeps
    /// the bounds.
    pub(crate) fn forget(&mut self, author: &PublicKey, ranges: &RangeSet) {
        let Some(set) = self.sets.get(author) else {
            return;
        };
        let rest = set.without_overlapping(ranges);
        self.replace(author, rest);
    }

    /// Forgets everything about `author` (no longer tracked).
    pub(crate) fn remove_author(&mut self, author: &PublicKey) {
        self.replace(author, RangeSet::new());
    }

    fn update(
        &mut self,
        author: &PublicKey,
        limits: KnowledgeLimits,
        f: impl FnOnce(&mut RangeSet),
    ) {
        let set = self.sets.entry(*author).or_default();
        let old = set.range_count();
        f(set);
        set.fill_lowest_gaps(limits.per_author);
        let new = set.range_count();
        self.reindex(author, old, new);
        while self.ranges > limits.per_peer.max(1) {
            let Some(&(count, widest)) = self.by_size.last() else {
                break;
            };
            if count <= 1 {
                // Every author is one range: more authors than the bound allows. Drop the
                // one just recorded (forgetting only costs a duplicate).
                self.remove_author(author);
                break;
            }
            let set = self.sets.get_mut(&widest).expect("indexed");
            set.fill_lowest_gaps(1);
            self.reindex(&widest, count, 1);
        }
    }

    fn replace(&mut self, author: &PublicKey, set: RangeSet) {
        let old = self.sets.remove(author).map_or(0, |s| s.range_count());
        let new = set.range_count();
        if new > 0 {
            self.sets.insert(*author, set);
        }
        self.reindex(author, old, new);
    }

    /// Moves `author` from `old` to `new` ranges in the counts (its set is already updated).
    fn reindex(&mut self, author: &PublicKey, old: usize, new: usize) {
        if old > 0 {
            self.by_size.remove(&(old, *author));
            self.ranges -= old;
        }
        if new > 0 {
            self.by_size.insert((new, *author));
            self.ranges += new;
        } else {
            self.sets.remove(author);
        }
    }

    /// Panics if the indexes disagree with the sets.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self, limits: KnowledgeLimits) {
        let ranges: usize = self.sets.values().map(RangeSet::range_count).sum();
        assert_eq!(ranges, self.ranges, "range count");
        assert!(self.ranges <= limits.per_peer.max(1), "per-peer bound");
        assert_eq!(self.by_size.len(), self.sets.len());
        for (author, set) in &self.sets {
            assert!(!set.is_empty());
            assert!(
                set.range_count() <= limits.per_author.max(1),
                "per-author bound"
            );
            assert!(self.by_size.contains(&(set.range_count(), *author)));
        }
    }
}

/// What the node believes one connected peer knows.
#[derive(Debug, Default)]
pub(crate) struct PeerKnowledge {
    /// Ids the peer has: announced by it, sent by it, or sent to it.
    pub(crate) has: Knowledge,
    /// Ids the peer sent and this node dropped unverified: not asked of it again.
    pub(crate) refused: Knowledge,
}

impl PeerKnowledge {
    /// Of `ids` of `author`, those the peer is believed to have and did not refuse: what it
    /// can be asked for.
    pub(crate) fn offers(&self, author: &PublicKey, ids: &RangeSet) -> RangeSet {
        let Some(has) = self.has.get(author) else {
            return RangeSet::new();
        };
        let take = ids.intersection(has);
        match self.refused.get(author) {
            Some(refused) => take.difference(refused),
            None => take,
        }
    }
}

/// The connected peers, and what each is believed to know.
#[derive(Debug)]
pub(crate) struct Beliefs<P> {
    peers: BTreeMap<P, PeerKnowledge>,
    limits: KnowledgeLimits,
}

impl<P: Clone + Ord> Beliefs<P> {
    pub(crate) fn new(limits: KnowledgeLimits) -> Self {
        Beliefs {
            peers: BTreeMap::new(),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> KnowledgeLimits {
        self.limits
    }

    /// `peer` is connected, knowing nothing yet (as far as this node can tell).
    pub(crate) fn connected(&mut self, peer: &P) {
        self.peers.insert(peer.clone(), PeerKnowledge::default());
    }

    /// Forgets `peer`; returns whether it was connected.
    pub(crate) fn disconnected(&mut self, peer: &P) -> bool {
        self.peers.remove(peer).is_some()
    }

    pub(crate) fn contains(&self, peer: &P) -> bool {
        self.peers.contains_key(peer)
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// The connected peers, in order.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    pub(crate) fn get(&self, peer: &P) -> Option<&PeerKnowledge> {
        self.peers.get(peer)
    }

    pub(crate) fn get_mut(&mut self, peer: &P) -> Option<&mut PeerKnowledge> {
        self.peers.get_mut(peer)
    }

    /// Every connected peer's knowledge, in order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&P, &mut PeerKnowledge)> {
        self.peers.iter_mut()
    }

    /// `peer` has `sequence` of `author` (the caller checked [`worth_knowing`]).
    pub(crate) fn learn_one(&mut self, peer: &P, author: &PublicKey, sequence: u64) {
        let limits = self.limits;
        if let Some(state) = self.peers.get_mut(peer) {
            state.has.learn_one(author, sequence, limits);
        }
    }

    /// `peer` has `ids` of `author` (the caller checked [`worth_knowing`]).
    pub(crate) fn learn(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet) {
        let limits = self.limits;
        if let Some(state) = self.peers.get_mut(peer) {
            state.has.learn(author, ids, limits);
        }
    }

    /// Forgets what `peer` is believed to have (it is about to say, in a complete digest).
    pub(crate) fn reset_has(&mut self, peer: &P) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.has = Knowledge::default();
        }
    }

    /// `peer` sent `sequence` of `author` and it was dropped unverified.
    pub(crate) fn refuse_one(&mut self, peer: &P, author: &PublicKey, sequence: u64) {
        let limits = self.limits;
        if let Some(state) = self.peers.get_mut(peer) {
            state.refused.learn_one(author, sequence, limits);
        }
    }

    /// Forgets what every peer is believed to know of `author`.
    pub(crate) fn forget_author(&mut self, author: &PublicKey) {
        for state in self.peers.values_mut() {
            state.has.remove_author(author);
            state.refused.remove_author(author);
        }
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        for state in self.peers.values() {
            state.has.check_invariants(self.limits);
            state.refused.check_invariants(self.limits);
        }
    }
}
