//! What a node believes about one connected peer: the ids the peer knows, the ids announced
//! to it, and the ids asked of it. Everything here is bounded: knowledge is kept only for
//! tracked authors and capped in ranges (forgetting only costs a duplicate), and outstanding
//! wants are capped at one frame's worth of ranges.

use super::store::Store;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};

/// Ids per author.
pub(crate) type IdSets = BTreeMap<PublicKey, RangeSet>;

#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// Ids the peer knows: from its digests, from what it sent, from what was sent to it.
    pub(crate) has: IdSets,
    /// Ids announced to the peer in `have` (so a round does not announce them again).
    pub(crate) announced: IdSets,
    /// Ids asked of the peer and not yet received.
    pub(crate) asked: IdSets,
    /// When to ask again (or ask elsewhere), if anything is asked.
    pub(crate) ask_deadline: Option<u64>,
    /// How many times the current wants were sent.
    pub(crate) ask_attempts: u32,
    /// Authors whose held ids the next round must compare with what the peer knows.
    pub(crate) dirty: BTreeSet<PublicKey>,
    /// Whether the peer's first frame has arrived (before it, rounds skip the peer: its
    /// complete digest is on its way and would make announcements redundant).
    pub(crate) synced: bool,
    /// A round was skipped because the peer was not synced: run it when it syncs.
    pub(crate) round_due: bool,
}

impl Peer {
    pub(crate) fn knows(&self, author: &PublicKey, sequence: u64) -> bool {
        self.has.get(author).is_some_and(|r| r.contains(sequence))
    }

    /// The ids of `held` (this node's held ids of `author`) that the peer is not known to
    /// have and was not told of: what it may lack.
    pub(crate) fn lacking(&self, author: &PublicKey, held: &RangeSet) -> RangeSet {
        let mut lacking = held.clone();
        for sets in [&self.has, &self.announced] {
            if let Some(set) = sets.get(author) {
                lacking = lacking.difference(set);
            }
        }
        lacking
    }

    /// Records ids the peer knows, within `max_authors` authors and `max_ranges` per author.
    pub(crate) fn learn(
        &mut self,
        author: &PublicKey,
        ranges: &RangeSet,
        max_authors: usize,
        max_ranges: usize,
    ) {
        add(&mut self.has, author, max_authors, max_ranges, |set| {
            set.union_with(ranges)
        });
    }

    pub(crate) fn learn_one(&mut self, author: &PublicKey, sequence: u64, limits: (usize, usize)) {
        add(&mut self.has, author, limits.0, limits.1, |set| {
            set.insert(sequence);
        });
    }

    pub(crate) fn announce(
        &mut self,
        author: &PublicKey,
        ranges: &RangeSet,
        max_authors: usize,
        max_ranges: usize,
    ) {
        add(
            &mut self.announced,
            author,
            max_authors,
            max_ranges,
            |set| set.union_with(ranges),
        );
    }

    /// Forgets that the peer knows these ids, or was told of them (a frame to it was lost).
    pub(crate) fn forget(&mut self, author: &PublicKey, ranges: &RangeSet) {
        for sets in [&mut self.has, &mut self.announced] {
            if let Some(set) = sets.get_mut(author) {
                for (s, e) in ranges.ranges() {
                    set.remove_range(s, e);
                }
            }
        }
        self.dirty.insert(*author);
    }

    /// How many ranges are outstanding in wants.
    pub(crate) fn asked_ranges(&self) -> usize {
        self.asked.values().map(RangeSet::range_count).sum()
    }

    /// Drops the ids this node no longer wants (`store`) from the outstanding wants; with
    /// none left, the retry deadline goes too. Returns whether any want is still outstanding.
    pub(crate) fn prune_asked(&mut self, store: &Store) -> bool {
        self.asked.retain(|author, asked| {
            if let Some(unwanted) = store.unwanted(author) {
                *asked = asked.difference(&unwanted);
            }
            !asked.is_empty()
        });
        if self.asked.is_empty() {
            self.ask_deadline = None;
            self.ask_attempts = 0;
        }
        !self.asked.is_empty()
    }

    /// Drops received ids from the outstanding wants. Returns whether any were outstanding.
    pub(crate) fn received(&mut self, author: &PublicKey, sequence: u64) -> bool {
        let Some(asked) = self.asked.get_mut(author) else {
            return false;
        };
        if !asked.contains(sequence) {
            return false;
        }
        asked.remove_range(sequence, sequence);
        if asked.is_empty() {
            self.asked.remove(author);
        }
        if self.asked.is_empty() {
            self.ask_deadline = None;
            self.ask_attempts = 0;
        }
        true
    }
}

/// Adds ids to `author`'s set with `update`, keeping at most `max_authors` authors (a new
/// one beyond that is ignored) and `max` ranges (the lowest are forgotten).
fn add(
    sets: &mut IdSets,
    author: &PublicKey,
    max_authors: usize,
    max: usize,
    update: impl FnOnce(&mut RangeSet),
) {
    if !sets.contains_key(author) && sets.len() >= max_authors {
        return;
    }
    let set = sets.entry(*author).or_default();
    update(set);
    set.forget_lowest(max);
    if set.is_empty() {
        sets.remove(author);
    }
}
