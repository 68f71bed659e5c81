//! The author table: every id a node has accepted, per author, and which authors it tracks.
//!
//! Rules, all here:
//! - an author's `known` ids are every sequence verified and accepted (held or expired
//!   since), at most `max_ranges_per_author` ranges: an id that would add a range beyond
//!   that is not accepted until the ids around it are (`receive.rs`), so no relay can make
//!   unseen ids count as known by sending an author's messages out of order. When a message
//!   ages out, the gaps below it are filled (their ids are outside the window too), so the
//!   ranges that count are those of the last `max_age`;
//! - at most `max_tracked_authors` authors are tracked. Each is attributed to the peer that
//!   introduced it (the peer its first accepted message came from; the application, for an
//!   imported one, as one group; this node's own key to no one). A new author is never refused: when the table is full it takes the place of
//!   1. an author whose newest message is older than `max_age` (every message of it is then
//!      outside the time window, so forgetting it cannot cause a second delivery); else
//!   2. the least recently active author (by when this node last accepted a message of it,
//!      not by its claimed timestamp) of the peer that introduced the most authors. So one
//!      peer, however many keys it makes, first crowds out its own authors; an author that
//!      keeps speaking stays; and no flood of authors can keep a new one out, at this node
//!      or at any node behind it.
//! - an author forgotten by rule 2 while its messages are still inside the time window
//!   leaves a tombstone (its highest known or held sequence, and newest timestamp: a message
//!   held for the application's verdict counts as the author's activity and is covered too)
//!   until its newest
//!   message leaves the window: its sequences up to that one count as known, so none is
//!   delivered twice, and if it speaks again it is tracked again from there. Tombstones are
//!   bounded by [`TOMBSTONES_PER_AUTHOR`] × `max_tracked_authors`; when they are full the
//!   oldest goes (the README's threat model says what that allows);
//! - an author's newest timestamp is the largest *verified* one, unclamped: a message signed
//!   with a future timestamp keeps its author tracked until that timestamp has aged out;
//! - a proven equivocation is remembered per id, so replaying it costs no verification and
//!   is reported once.
//!
//! Every operation is O(log n) in the number of authors.

use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};

/// Who introduced an author. Every introducer but this node's own key is a group that shares
/// the author table and the store fairly with the others (`store.rs`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Introducer<P> {
    /// This node's own key.
    Own,
    /// The application, through `Engine::import`: one group for everything imported, so
    /// imports can never crowd out what peers introduce (or this node's own messages) beyond
    /// a fair share.
    Imported,
    /// The peer the author's first accepted message came from.
    Peer(P),
}

/// Tombstones kept per tracked author at most (each about 100 bytes with its index entries).
pub(crate) const TOMBSTONES_PER_AUTHOR: usize = 4;

#[derive(Debug)]
struct Author<P> {
    known: RangeSet,
    /// Ids held for the application's verdict (`validate_messages`): verified, not yet known.
    held: RangeSet,
    equivocated: RangeSet,
    /// Largest verified timestamp of an accepted message (0: none yet).
    newest: u64,
    /// When this node last accepted a message of it.
    last_seen: u64,
    introducer: Introducer<P>,
}

#[derive(Debug, Clone, Copy)]
struct Tombstone {
    highest: u64,
    newest: u64,
}

/// Why a new author was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthorsFull;

/// What admitting an author cost: the author it displaced, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Already tracked, or there was room.
    Free,
    /// `PublicKey` was forgotten to make room.
    Displaced(PublicKey),
}

#[derive(Debug)]
pub(crate) struct Authors<P> {
    me: PublicKey,
    authors: BTreeMap<PublicKey, Author<P>>,
    /// `(newest, author)` of every author but this node's own: who ages out first.
    by_newest: BTreeSet<(u64, PublicKey)>,
    /// Per introducing peer: `(last_seen, author)` of its authors.
    groups: BTreeMap<Introducer<P>, BTreeSet<(u64, PublicKey)>>,
    /// `(authors introduced, peer)`: who introduced the most.
    by_group_size: BTreeSet<(usize, Introducer<P>)>,
    tombstones: BTreeMap<PublicKey, Tombstone>,
    /// `(newest, author)` of every tombstone: which one leaves the window first.
    tombstones_by_newest: BTreeSet<(u64, PublicKey)>,
    max_authors: usize,
    max_ranges: usize,
    max_age_ms: u64,
}

impl<P: Clone + Ord> Authors<P> {
    pub(crate) fn new(
        me: PublicKey,
        max_authors: usize,
        max_ranges: usize,
        max_age_ms: u64,
    ) -> Self {
        let mut authors = BTreeMap::new();
        authors.insert(
            me,
            Author {
                known: RangeSet::new(),
                held: RangeSet::new(),
                equivocated: RangeSet::new(),
                newest: 0,
                last_seen: 0,
                introducer: Introducer::Own,
            },
        );
        Authors {
            me,
            authors,
            by_newest: BTreeSet::new(),
            groups: BTreeMap::new(),
            by_group_size: BTreeSet::new(),
            tombstones: BTreeMap::new(),
            tombstones_by_newest: BTreeSet::new(),
            max_authors,
            max_ranges,
            max_age_ms,
        }
    }

    /// Whether `id` was accepted (or is covered by a tombstone: accepted before its author
    /// was forgotten).
    pub(crate) fn knows(&self, author: &PublicKey, sequence: u64) -> bool {
        match self.authors.get(author) {
            Some(a) => a.known.contains(sequence),
            None => self
                .tombstones
                .get(author)
                .is_some_and(|t| sequence <= t.highest),
        }
    }

    pub(crate) fn is_tracked(&self, author: &PublicKey) -> bool {
        self.authors.contains_key(author)
    }

    /// Every tracked author with its known ids (the body of a complete `have`).
    pub(crate) fn all_known(&self) -> impl Iterator<Item = (&PublicKey, &RangeSet)> {
        self.authors
            .iter()
            .filter(|(_, a)| !a.known.is_empty())
            .map(|(k, a)| (k, &a.known))
    }

    /// Who introduced a tracked author ([`Introducer::Own`] for this node's own key).
    pub(crate) fn introducer(&self, author: &PublicKey) -> Introducer<P> {
        self.authors
            .get(author)
            .map_or(Introducer::Own, |a| a.introducer.clone())
    }

    /// Of `ids` of `author`, those this node does not know: not among its known ids, nor
    /// covered by its tombstone. Only these are ever asked for.
    pub(crate) fn unknown(&self, author: &PublicKey, ids: &RangeSet) -> RangeSet {
        match self.authors.get(author) {
            Some(a) => ids.difference(&a.known),
            None => match self.tombstones.get(author) {
                Some(t) => ids.difference(&RangeSet::from_range(1, t.highest)),
                None => ids.clone(),
            },
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.authors.len()
    }

    /// A message of `author` aged out of the store: its known ids below it become one range.
    /// The gaps hold ids whose timestamps (an author's rise with its sequence) are outside
    /// the window too, so none could be accepted; this keeps an author that restarts often
    /// from running into `max_ranges_per_author`.
    pub(crate) fn aged_out(&mut self, author: &PublicKey, sequence: u64) {
        if let Some(a) = self.authors.get_mut(author) {
            a.known.fill_up_to(sequence);
        }
    }

    /// Whether accepting `sequence` would give a tracked `author` more than
    /// `max_ranges_per_author` ranges of known ids (it touches none of them).
    pub(crate) fn would_fragment(&self, author: &PublicKey, sequence: u64) -> bool {
        self.authors.get(author).is_some_and(|a| {
            a.known.range_count() >= self.max_ranges.max(1)
                && !a.known.contains(sequence.saturating_sub(1))
                && !a.known.contains(sequence.saturating_add(1))
        })
    }

    /// Whether a proven equivocation of this id was already reported.
    pub(crate) fn equivocated(&self, author: &PublicKey, sequence: u64) -> bool {
        self.authors
            .get(author)
            .is_some_and(|a| a.equivocated.contains(sequence))
    }

    pub(crate) fn record_equivocation(&mut self, author: &PublicKey, sequence: u64) {
        if let Some(a) = self.authors.get_mut(author) {
            a.equivocated.insert(sequence);
            a.equivocated.forget_lowest(self.max_ranges);
        }
    }

    /// Whether a message of `author` arriving from `from` could be admitted at `now`, without
    /// changing anything (checked before its signature; [`Authors::admit`] after).
    pub(crate) fn can_admit(&self, author: &PublicKey, from: &Introducer<P>, now: u64) -> bool {
        self.authors.contains_key(author) || self.room(from, now).is_ok()
    }

    /// Tracks `author`, introduced by `from`, making room as the module docs say.
    pub(crate) fn admit(
        &mut self,
        author: &PublicKey,
        from: &Introducer<P>,
        now: u64,
    ) -> Result<Admission, AuthorsFull> {
        if self.authors.contains_key(author) {
            return Ok(Admission::Free);
        }
        let displaced = match self.room(from, now)? {
            Some(victim) => {
                self.forget(&victim, now);
                Admission::Displaced(victim)
            }
            None => Admission::Free,
        };
        let mut known = RangeSet::new();
        let mut newest = 0;
        if let Some(t) = self.tombstones.remove(author) {
            self.tombstones_by_newest.remove(&(t.newest, *author));
            known.insert_range(1, t.highest);
            newest = t.newest;
        }
        let entry = Author {
            known,
            held: RangeSet::new(),
            equivocated: RangeSet::new(),
            newest,
            last_seen: now,
            introducer: from.clone(),
        };
        self.index(author, &entry);
        self.authors.insert(*author, entry);
        Ok(displaced)
    }

    /// Records an accepted message of a tracked author, received at `now`.
    pub(crate) fn accepted(&mut self, author: &PublicKey, sequence: u64, timestamp: u64, now: u64) {
        let Some(mut a) = self.authors.remove(author) else {
            return;
        };
        self.unindex(author, &a);
        a.held.remove_range(sequence, sequence);
        a.known.insert(sequence);
        // `would_fragment` keeps this from ever filling anything; it stays as the bound.
        a.known.fill_lowest_gaps(self.max_ranges);
        a.newest = a.newest.max(timestamp);
        a.last_seen = a.last_seen.max(now);
        self.index(author, &a);
        self.authors.insert(*author, a);
    }

    /// A verified message of a tracked author, received at `now`, waits for the application's
    /// verdict: it counts as the author's activity (its timestamp and time of receipt), and
    /// if the author is forgotten meanwhile its tombstone covers the id, so the message is
    /// never delivered a second time.
    pub(crate) fn hold(&mut self, author: &PublicKey, sequence: u64, timestamp: u64, now: u64) {
        let Some(mut a) = self.authors.remove(author) else {
            return;
        };
        self.unindex(author, &a);
        a.held.insert(sequence);
        a.newest = a.newest.max(timestamp);
        a.last_seen = a.last_seen.max(now);
        self.index(author, &a);
        self.authors.insert(*author, a);
    }

    /// What is held of `author` will get no verdict (the author is blocked): its ids become
    /// known, so they are never delivered again.
    pub(crate) fn settle_held(&mut self, author: &PublicKey) {
        if let Some(a) = self.authors.get_mut(author) {
            let held = std::mem::take(&mut a.held);
            a.known.union_with(&held);
            a.known.fill_lowest_gaps(self.max_ranges);
        }
    }

    /// Where a new author from `from` would go: `Ok(None)` with room to spare, `Ok(Some(a))`
    /// if `a` would have to be forgotten, `Err` if it must be refused.
    fn room(&self, from: &Introducer<P>, now: u64) -> Result<Option<PublicKey>, AuthorsFull> {
        if self.authors.len() < self.max_authors {
            return Ok(None);
        }
        let horizon = now.saturating_sub(self.max_age_ms);
        if let Some(&(newest, oldest)) = self.by_newest.first()
            && newest < horizon
        {
            return Ok(Some(oldest));
        }
        let _ = from; // Whoever brings the new author, the largest group makes room.
        let Some((_, heaviest)) = self.by_group_size.last() else {
            return Err(AuthorsFull); // Only this node's own key is tracked.
        };
        let (_, victim) = self.groups[heaviest]
            .first()
            .expect("a group is never empty");
        Ok(Some(*victim))
    }

    /// Forgets a tracked author (never this node's own), leaving a tombstone if any of its
    /// messages may still be inside the time window.
    fn forget(&mut self, author: &PublicKey, now: u64) {
        let Some(a) = self.authors.remove(author) else {
            return;
        };
        self.unindex(author, &a);
        let horizon = now.saturating_sub(self.max_age_ms);
        let Some(highest) = a.known.last().max(a.held.last()) else {
            return;
        };
        if a.newest < horizon {
            return;
        }
        // Expired tombstones first, then the oldest if still full.
        let max_tombstones = self.max_authors.saturating_mul(TOMBSTONES_PER_AUTHOR);
        while let Some(&(newest, key)) = self.tombstones_by_newest.first()
            && (newest < horizon || self.tombstones.len() >= max_tombstones)
        {
            self.tombstones_by_newest.remove(&(newest, key));
            self.tombstones.remove(&key);
        }
        self.tombstones.insert(
            *author,
            Tombstone {
                highest,
                newest: a.newest,
            },
        );
        self.tombstones_by_newest.insert((a.newest, *author));
    }

    fn index(&mut self, author: &PublicKey, a: &Author<P>) {
        if *author == self.me {
            return;
        }
        self.by_newest.insert((a.newest, *author));
        if a.introducer != Introducer::Own {
            let peer = &a.introducer;
            let group = self.groups.entry(peer.clone()).or_default();
            self.by_group_size.remove(&(group.len(), peer.clone()));
            group.insert((a.last_seen, *author));
            self.by_group_size.insert((group.len(), peer.clone()));
        }
    }

    fn unindex(&mut self, author: &PublicKey, a: &Author<P>) {
        self.by_newest.remove(&(a.newest, *author));
        if let peer @ (Introducer::Imported | Introducer::Peer(_)) = &a.introducer
            && let Some(group) = self.groups.get_mut(peer)
        {
            self.by_group_size.remove(&(group.len(), peer.clone()));
            group.remove(&(a.last_seen, *author));
            if group.is_empty() {
                self.groups.remove(peer);
            } else {
                self.by_group_size.insert((group.len(), peer.clone()));
            }
        }
    }

    /// Panics if the table's indexes disagree with it.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert!(
            self.authors.len() <= self.max_authors.max(1),
            "author bound"
        );
        assert!(
            self.tombstones.len() <= self.max_authors * TOMBSTONES_PER_AUTHOR,
            "tombstone bound"
        );
        assert_eq!(self.by_newest.len() + 1, self.authors.len(), "age index");
        assert_eq!(self.tombstones_by_newest.len(), self.tombstones.len());
        let grouped: usize = self.groups.values().map(BTreeSet::len).sum();
        let attributed = self
            .authors
            .iter()
            .filter(|(k, a)| **k != self.me && a.introducer != Introducer::Own)
            .count();
        assert_eq!(grouped, attributed, "group index");
        assert_eq!(self.by_group_size.len(), self.groups.len());
        for (key, a) in &self.authors {
            assert!(a.known.range_count() <= self.max_ranges.max(1));
            assert!(!self.tombstones.contains_key(key), "tracked and tombstoned");
            if *key != self.me {
                assert!(self.by_newest.contains(&(a.newest, *key)));
            }
        }
    }
}
