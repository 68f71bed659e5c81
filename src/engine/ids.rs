//! Sets of message ids per author, as the engine's components keep them.
//!
//! [`IdSets`] is a plain map; [`RangeQueue`] is one with a bound on its ranges, for ids that
//! wait (a lazy peer's deferred announcements, a peer's want backlog): beyond the bound the
//! lowest ids of the author concerned, then whole authors (lowest key first), are forgotten.
//! Forgetting is safe there: an id that waits is one a peer announced, and what a peer has is
//! announced again by the digests of every new connection and by the other peers that get it.

use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::BTreeMap;

/// Ids per author.
pub(crate) type IdSets = BTreeMap<PublicKey, RangeSet>;

/// One id or ranges of them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ids<'a> {
    One(u64),
    Ranges(&'a RangeSet),
}

/// Ids per author, at most a given number of ranges in all.
#[derive(Debug, Default)]
pub(crate) struct RangeQueue {
    sets: IdSets,
    ranges: usize,
}

impl RangeQueue {
    /// Adds `ids` of `author`, then cuts the queue down to `max_ranges`.
    pub(crate) fn add(&mut self, author: &PublicKey, ids: &RangeSet, max_ranges: usize) {
        let set = self.sets.entry(*author).or_default();
        self.ranges -= set.range_count();
        set.union_with(ids);
        set.forget_lowest(max_ranges);
        self.ranges += set.range_count();
        while self.ranges > max_ranges {
            let Some((_, dropped)) = self.sets.pop_first() else {
                break;
            };
            self.ranges -= dropped.range_count();
        }
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges == 0
    }

    /// Takes everything queued.
    pub(crate) fn take(&mut self) -> IdSets {
        self.ranges = 0;
        std::mem::take(&mut self.sets)
    }

    /// Forgets what is queued of `author`.
    pub(crate) fn remove_author(&mut self, author: &PublicKey) {
        if let Some(set) = self.sets.remove(author) {
            self.ranges -= set.range_count();
        }
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self, max_ranges: usize) {
        let ranges: usize = self.sets.values().map(|s| s.range_count()).sum();
        assert_eq!(ranges, self.ranges, "range count");
        assert!(self.ranges <= max_ranges.max(1), "queue bound");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn a_queue_over_its_bound_forgets_the_lowest_ids_then_whole_authors() {
        let (a, b) = {
            let mut keys = [
                Keypair::from_seed(&[1; 32]).public(),
                Keypair::from_seed(&[2; 32]).public(),
            ];
            keys.sort();
            (keys[0], keys[1])
        };
        let mut q = RangeQueue::default();
        // (author, ids added, ranges kept of a, of b)
        let table: [(PublicKey, &[u64], usize, usize); 4] = [
            (a, &[1, 3], 2, 0),
            (b, &[1], 2, 1),
            (a, &[5], 0, 1),       // 4 ranges in all: a goes whole (the lowest key)
            (b, &[3, 5, 7], 0, 3), // b's lowest range goes
        ];
        for (i, (author, ids, ka, kb)) in table.into_iter().enumerate() {
            q.add(&author, &ids.iter().copied().collect(), 3);
            q.check_invariants(3);
            let count = |k: &PublicKey| q.sets.get(k).map_or(0, RangeSet::range_count);
            assert_eq!((count(&a), count(&b)), (ka, kb), "row {i}");
        }
        q.remove_author(&b);
        assert!(q.take().is_empty());
        q.check_invariants(3);
    }
}
