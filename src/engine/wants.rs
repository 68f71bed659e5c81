//! Outstanding wants: which ids this node has asked for, and of whom.
//!
//! Rules, all here:
//! - every wanted id is asked of exactly one peer at a time, so a message is never pulled
//!   twice at once, and finding who an arriving id was asked of is O(log n);
//! - one peer has at most `max_want_ranges_per_frame` ranges outstanding (one frame's worth);
//! - a peer whose wants time out with ids still outstanding gets a *strike*. When wants are
//!   moved to other peers (a timeout, a disconnect), the peers known to have the ids are
//!   tried fewest strikes first, then in turn after the peer that failed. A peer that
//!   announces ids and never delivers them therefore delays a pull by one timeout, once,
//!   whatever it announces; the choice of whom to ask next is in `pull.rs`.

use super::Millis;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::BTreeMap;

/// Ids per author.
pub(crate) type IdSets = BTreeMap<PublicKey, RangeSet>;

/// What is asked of one peer.
#[derive(Debug, Default)]
pub(crate) struct Asked {
    ids: IdSets,
    ranges: usize,
    /// When the wants are asked again (or elsewhere), if any are outstanding.
    pub(crate) deadline: Option<Millis>,
    /// How many times the current wants were sent.
    pub(crate) attempts: u32,
    /// Timeouts with ids still outstanding, over the connection.
    pub(crate) strikes: u32,
}

impl Asked {
    pub(crate) fn ids(&self) -> &IdSets {
        &self.ids
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[derive(Debug)]
pub(crate) struct Wants<P> {
    /// author → start → (end, peer asked): disjoint intervals, each within the asked peer's
    /// own ranges.
    by_id: BTreeMap<PublicKey, BTreeMap<u64, (u64, P)>>,
    peers: BTreeMap<P, Asked>,
    max_ranges: usize,
}

impl<P: Clone + Ord> Wants<P> {
    pub(crate) fn new(max_ranges: usize) -> Self {
        Wants {
            by_id: BTreeMap::new(),
            peers: BTreeMap::new(),
            max_ranges,
        }
    }

    pub(crate) fn add_peer(&mut self, peer: &P) {
        self.peers.entry(peer.clone()).or_default();
    }

    /// Forgets `peer`; returns what was asked of it.
    pub(crate) fn remove_peer(&mut self, peer: &P) -> IdSets {
        let ids = self.take(peer);
        self.peers.remove(peer);
        ids
    }

    pub(crate) fn peer(&self, peer: &P) -> Option<&Asked> {
        self.peers.get(peer)
    }

    pub(crate) fn peer_mut(&mut self, peer: &P) -> Option<&mut Asked> {
        self.peers.get_mut(peer)
    }

    /// How many more ranges may be asked of `peer`.
    pub(crate) fn room(&self, peer: &P) -> usize {
        self.peers
            .get(peer)
            .map_or(0, |a| self.max_ranges.saturating_sub(a.ranges))
    }

    /// The peer `id` is asked of, if it is wanted.
    pub(crate) fn asked_of(&self, author: &PublicKey, sequence: u64) -> Option<&P> {
        let (_, (end, peer)) = self.by_id.get(author)?.range(..=sequence).next_back()?;
        (*end >= sequence).then_some(peer)
    }

    /// Whether any id of `author` is wanted.
    pub(crate) fn wants_author(&self, author: &PublicKey) -> bool {
        self.by_id.contains_key(author)
    }

    /// Every id of `author` asked of anyone.
    pub(crate) fn wanted(&self, author: &PublicKey) -> RangeSet {
        let mut set = RangeSet::new();
        if let Some(map) = self.by_id.get(author) {
            for (&s, &(e, _)) in map {
                set.insert_range(s, e);
            }
        }
        set
    }

    /// Records that `ids` of `author` (wanted of no one yet) are asked of `peer`, within its
    /// room (the caller cuts `ids` to [`Wants::room`]); its retry deadline is `deadline`
    /// unless one already runs.
    pub(crate) fn ask(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet, deadline: Millis) {
        let Some(asked) = self.peers.get_mut(peer) else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        if asked.deadline.is_none() {
            asked.deadline = Some(deadline);
            asked.attempts = 1;
        }
        let set = asked.ids.entry(*author).or_default();
        asked.ranges -= set.range_count();
        set.union_with(ids);
        asked.ranges += set.range_count();
        let map = self.by_id.entry(*author).or_default();
        for (s, e) in ids.ranges() {
            map.insert(s, (e, peer.clone()));
        }
    }

    /// An id arrived: it is no longer wanted. Returns the peer it was asked of.
    pub(crate) fn received(&mut self, author: &PublicKey, sequence: u64) -> Option<P> {
        let map = self.by_id.get_mut(author)?;
        let (&start, &(end, ref peer)) = map.range(..=sequence).next_back()?;
        if end < sequence {
            return None;
        }
        let peer = peer.clone();
        map.remove(&start);
        if start < sequence {
            map.insert(start, (sequence - 1, peer.clone()));
        }
        if sequence < end {
            map.insert(sequence + 1, (end, peer.clone()));
        }
        if map.is_empty() {
            self.by_id.remove(author);
        }
        let asked = self.peers.get_mut(&peer).expect("asked of a known peer");
        let set = asked.ids.get_mut(author).expect("mirrored");
        asked.ranges -= set.range_count();
        set.remove_range(sequence, sequence);
        asked.ranges += set.range_count();
        if set.is_empty() {
            asked.ids.remove(author);
        }
        if asked.ids.is_empty() {
            // Everything asked of it arrived: one strike is forgiven.
            asked.deadline = None;
            asked.attempts = 0;
            asked.strikes = asked.strikes.saturating_sub(1);
        }
        Some(peer)
    }

    /// Takes back everything asked of `peer` (to ask it again, or elsewhere).
    pub(crate) fn take(&mut self, peer: &P) -> IdSets {
        let Some(asked) = self.peers.get_mut(peer) else {
            return IdSets::new();
        };
        let ids = std::mem::take(&mut asked.ids);
        asked.ranges = 0;
        asked.deadline = None;
        asked.attempts = 0;
        for (author, set) in &ids {
            let Some(map) = self.by_id.get_mut(author) else {
                continue;
            };
            for (s, e) in set.ranges() {
                let inside: Vec<u64> = map.range(s..=e).map(|(k, _)| *k).collect();
                for k in inside {
                    map.remove(&k);
                }
            }
            if map.is_empty() {
                self.by_id.remove(author);
            }
        }
        ids
    }

    /// Peers whose deadline has passed.
    pub(crate) fn due(&self, now: Millis) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.peers.values().filter_map(|a| a.deadline).min()
    }

    /// The connected peers, in order.
    pub(crate) fn peers(&self) -> impl Iterator<Item = (&P, &Asked)> {
        self.peers.iter()
    }

    /// Panics if the two views of the wants disagree, or a bound is broken.
    pub(crate) fn check_invariants(&self) {
        let mut mirrored: BTreeMap<(P, PublicKey), RangeSet> = BTreeMap::new();
        for (author, map) in &self.by_id {
            assert!(!map.is_empty());
            let mut previous_end: Option<u64> = None;
            for (&s, (e, peer)) in map {
                assert!(s <= *e);
                assert!(previous_end.is_none_or(|p| p < s), "overlapping wants");
                previous_end = Some(*e);
                mirrored
                    .entry((peer.clone(), *author))
                    .or_default()
                    .insert_range(s, *e);
            }
        }
        for (peer, asked) in &self.peers {
            let ranges: usize = asked.ids.values().map(RangeSet::range_count).sum();
            assert_eq!(ranges, asked.ranges, "range count");
            assert!(asked.ranges <= self.max_ranges, "want budget");
            assert_eq!(asked.ids.is_empty(), asked.deadline.is_none(), "deadline");
            for (author, set) in &asked.ids {
                assert!(!set.is_empty());
                assert_eq!(
                    mirrored.remove(&(peer.clone(), *author)).as_ref(),
                    Some(set),
                    "mirror"
                );
            }
        }
        assert!(mirrored.is_empty(), "wants of unknown peers");
    }
}
