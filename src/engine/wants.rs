//! Outstanding wants: which ids this node has asked for, of whom, and until when.
//!
//! Rules, all here:
//! - every wanted id is asked of exactly one peer at a time, so a message is never pulled
//!   twice at once, and finding who an arriving id was asked of is O(log n);
//! - one peer has at most `max_want_ranges_per_frame` ranges outstanding (one frame's worth);
//!   an id arriving from inside a range splits it only within that budget;
//! - each (peer, author) want has its own deadline, and counts the asked envelopes of that
//!   author newly accepted since. At the deadline only a frame's worth of such progress keeps
//!   the want with the peer (`pull.rs`), so a peer that answers other wants, or trickles
//!   this one, cannot keep it pending;
//! - a want that times out without progress gives its peer a *strike* (one per batch of
//!   deadlines; one is forgiven each time a peer delivers everything asked of it). When wants
//!   are moved to other peers, those known to have the ids that have not yet failed for
//!   them are tried first: connections older than the pull first, then younger ones oldest
//!   first, each by fewest strikes; each such peer has its turn before any has a second
//!   (the choice is in `pull.rs` `reroute`).

use super::Millis;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};

/// Ids per author.
pub(crate) type IdSets = BTreeMap<PublicKey, RangeSet>;

/// The ids of one author asked of one peer.
#[derive(Debug)]
pub(crate) struct Want {
    pub(crate) ids: RangeSet,
    pub(crate) deadline: Millis,
    /// How many times these wants were sent to this peer without progress.
    pub(crate) attempts: u32,
    /// Asked envelopes newly accepted since the deadline was set: how many, how many bytes.
    pub(crate) progress: (usize, usize),
    /// When the pull of these ids began (they may have moved between peers since): peers
    /// that connected later are asked for them last (`pull.rs` `reroute`).
    pub(crate) since: Millis,
}

/// What is asked of one peer.
#[derive(Debug, Default)]
pub(crate) struct Asked {
    wants: BTreeMap<PublicKey, Want>,
    ranges: usize,
    /// Timeouts with ids still outstanding, less one per complete delivery.
    pub(crate) strikes: u32,
}

impl Asked {
    pub(crate) fn wants(&self) -> &BTreeMap<PublicKey, Want> {
        &self.wants
    }
}

#[derive(Debug)]
pub(crate) struct Wants<P> {
    /// author → start → (end, peer asked): disjoint intervals, each within the asked peer's
    /// own ranges.
    by_id: BTreeMap<PublicKey, BTreeMap<u64, (u64, P)>>,
    peers: BTreeMap<P, Asked>,
    /// `(deadline, peer, author)` of every want.
    deadlines: BTreeSet<(Millis, P, PublicKey)>,
    /// Ranges outstanding, over all peers.
    total: usize,
    max_ranges: usize,
}

impl<P: Clone + Ord> Wants<P> {
    pub(crate) fn new(max_ranges: usize) -> Self {
        Wants {
            by_id: BTreeMap::new(),
            peers: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            total: 0,
            max_ranges,
        }
    }

    pub(crate) fn add_peer(&mut self, peer: &P) {
        self.peers.entry(peer.clone()).or_default();
    }

    /// Forgets `peer`; returns what was asked of it.
    pub(crate) fn remove_peer(&mut self, peer: &P) -> Vec<(PublicKey, Want)> {
        let ids = self.take(peer);
        self.peers.remove(peer);
        ids
    }

    pub(crate) fn peer(&self, peer: &P) -> Option<&Asked> {
        self.peers.get(peer)
    }

    pub(crate) fn strike(&mut self, peer: &P) {
        if let Some(asked) = self.peers.get_mut(peer) {
            asked.strikes = asked.strikes.saturating_add(1);
        }
    }

    /// How many more ranges may be asked of `peer`.
    pub(crate) fn room(&self, peer: &P) -> usize {
        self.peers
            .get(peer)
            .map_or(0, |a| self.max_ranges.saturating_sub(a.ranges))
    }

    /// Ranges outstanding, over all peers.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Whether any id of `author` is wanted.
    pub(crate) fn wants_author(&self, author: &PublicKey) -> bool {
        self.by_id.contains_key(author)
    }

    /// The ids of `ranges` (of `author`) asked of anyone.
    pub(crate) fn wanted_within(&self, author: &PublicKey, ranges: &RangeSet) -> RangeSet {
        let mut set = RangeSet::new();
        let (Some(map), Some(first), Some(last)) = (
            self.by_id.get(author),
            ranges.ranges().next(),
            ranges.last(),
        ) else {
            return set;
        };
        // Intervals that may overlap [first.0, last]: from the one starting at or before it.
        let from = map
            .range(..=first.0)
            .next_back()
            .map_or(first.0, |(s, _)| *s);
        for (&s, &(e, _)) in map.range(from..=last) {
            set.insert_range(s, e);
        }
        set
    }

    /// Asks `peer` for `ids` of `author`, minus what is already asked of anyone, within its
    /// room (the caller cuts `ids` to [`Wants::room`]). A new want's deadline is `deadline`;
    /// an existing one keeps its own. Returns the ids newly asked.
    pub(crate) fn ask(
        &mut self,
        peer: &P,
        author: &PublicKey,
        ids: &RangeSet,
        deadline: Millis,
        since: Millis,
    ) -> RangeSet {
        if !self.peers.contains_key(peer) || ids.is_empty() {
            return RangeSet::new();
        }
        let ids = ids.difference(&self.wanted_within(author, ids));
        if ids.is_empty() {
            return ids;
        }
        let asked = self.peers.get_mut(peer).expect("checked above");
        let want = asked.wants.entry(*author).or_insert_with(|| {
            self.deadlines.insert((deadline, peer.clone(), *author));
            Want {
                ids: RangeSet::new(),
                deadline,
                attempts: 1,
                progress: (0, 0),
                since,
            }
        });
        want.since = want.since.min(since);
        asked.ranges -= want.ids.range_count();
        self.total -= want.ids.range_count();
        want.ids.union_with(&ids);
        asked.ranges += want.ids.range_count();
        self.total += want.ids.range_count();
        // The index holds exactly the want's ranges: a new range that touches one of the
        // peer's ranges replaces the entries it merged with.
        let map = self.by_id.entry(*author).or_default();
        for (s, _) in ids.ranges() {
            let (ms, me) = want
                .ids
                .ranges()
                .find(|&(a, b)| a <= s && s <= b)
                .expect("just added");
            let merged: Vec<u64> = map.range(ms..=me).map(|(k, _)| *k).collect();
            for k in merged {
                map.remove(&k);
            }
            map.insert(ms, (me, peer.clone()));
        }
        ids
    }

    /// Counts an asked envelope of `author` newly accepted from `peer`, `len` bytes.
    pub(crate) fn progress(&mut self, peer: &P, author: &PublicKey, len: usize) {
        if let Some(want) = self
            .peers
            .get_mut(peer)
            .and_then(|a| a.wants.get_mut(author))
        {
            want.progress.0 += 1;
            want.progress.1 += len;
        }
    }

    /// Sets the deadline and attempt count of `peer`'s want of `author`.
    pub(crate) fn rearm(&mut self, peer: &P, author: &PublicKey, deadline: Millis, attempts: u32) {
        let Some(want) = self
            .peers
            .get_mut(peer)
            .and_then(|a| a.wants.get_mut(author))
        else {
            return;
        };
        self.deadlines
            .remove(&(want.deadline, peer.clone(), *author));
        want.deadline = deadline;
        want.attempts = attempts;
        want.progress = (0, 0);
        self.deadlines.insert((deadline, peer.clone(), *author));
    }

    /// An id arrived: it is no longer wanted. Returns the peer it was asked of.
    pub(crate) fn received(&mut self, author: &PublicKey, sequence: u64) -> Option<P> {
        let map = self.by_id.get_mut(author)?;
        let (&start, &(end, ref peer)) = map.range(..=sequence).next_back()?;
        if end < sequence {
            return None;
        }
        let peer = peer.clone();
        let asked = self.peers.get_mut(&peer).expect("asked of a known peer");
        // An id from inside a range splits it in two; at the budget the range is kept whole
        // (the id is known now, so asking for it again only costs a duplicate).
        if start < sequence && sequence < end && asked.ranges >= self.max_ranges {
            return Some(peer);
        }
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
        let want = asked.wants.get_mut(author).expect("mirrored");
        asked.ranges -= want.ids.range_count();
        self.total -= want.ids.range_count();
        want.ids.remove_range(sequence, sequence);
        asked.ranges += want.ids.range_count();
        self.total += want.ids.range_count();
        if want.ids.is_empty() {
            self.deadlines
                .remove(&(want.deadline, peer.clone(), *author));
            asked.wants.remove(author);
            if asked.wants.is_empty() {
                // Everything asked of it arrived: one strike is forgiven.
                asked.strikes = asked.strikes.saturating_sub(1);
            }
        }
        Some(peer)
    }

    /// Takes back `peer`'s want of `author`: its ids and attempts.
    pub(crate) fn take_author(&mut self, peer: &P, author: &PublicKey) -> Option<Want> {
        let asked = self.peers.get_mut(peer)?;
        let want = asked.wants.remove(author)?;
        asked.ranges -= want.ids.range_count();
        self.total -= want.ids.range_count();
        self.deadlines
            .remove(&(want.deadline, peer.clone(), *author));
        if let Some(map) = self.by_id.get_mut(author) {
            for (s, e) in want.ids.ranges() {
                let inside: Vec<u64> = map.range(s..=e).map(|(k, _)| *k).collect();
                for k in inside {
                    map.remove(&k);
                }
            }
            if map.is_empty() {
                self.by_id.remove(author);
            }
        }
        Some(want)
    }

    /// Takes back everything asked of `peer` (to ask it elsewhere).
    pub(crate) fn take(&mut self, peer: &P) -> Vec<(PublicKey, Want)> {
        let authors: Vec<PublicKey> = self
            .peers
            .get(peer)
            .map(|a| a.wants.keys().copied().collect())
            .unwrap_or_default();
        authors
            .into_iter()
            .filter_map(|author| Some((author, self.take_author(peer, &author)?)))
            .collect()
    }

    /// Wants whose deadline has passed, earliest first.
    pub(crate) fn due(&self, now: Millis) -> Vec<(P, PublicKey)> {
        self.deadlines
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .map(|(_, p, a)| (p.clone(), *a))
            .collect()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.first().map(|(t, _, _)| *t)
    }

    /// The connected peers, in order.
    pub(crate) fn peers(&self) -> impl Iterator<Item = (&P, &Asked)> {
        self.peers.iter()
    }

    /// Panics if the views of the wants disagree, or a bound is broken.
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
        let mut deadlines = 0;
        for (peer, asked) in &self.peers {
            let ranges: usize = asked.wants.values().map(|w| w.ids.range_count()).sum();
            assert_eq!(ranges, asked.ranges, "range count");
            assert!(asked.ranges <= self.max_ranges, "want budget");
            for (author, want) in &asked.wants {
                assert!(!want.ids.is_empty());
                assert!(
                    self.deadlines
                        .contains(&(want.deadline, peer.clone(), *author))
                );
                deadlines += 1;
                assert_eq!(
                    mirrored.remove(&(peer.clone(), *author)).as_ref(),
                    Some(&want.ids),
                    "mirror"
                );
                let entries = self.by_id[author]
                    .values()
                    .filter(|(_, p)| p == peer)
                    .count();
                assert_eq!(entries, want.ids.range_count(), "one entry per range");
            }
        }
        assert_eq!(deadlines, self.deadlines.len(), "deadline index");
        let total: usize = self.peers.values().map(|a| a.ranges).sum();
        assert_eq!(total, self.total, "total");
        assert!(mirrored.is_empty(), "wants of unknown peers");
    }
}
