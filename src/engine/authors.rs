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
//!   imported one, as one group; this node's own key to no one). A new author is refused
//!   only when it comes from the group that would have to give up an author, that group
//!   holds its share of *live* tombstones (below), and another peer is connected to bring
//!   new authors (a node with one peer gains nothing by refusing it). Otherwise, when the table is full, it takes the
//!   place of
//!   1. an author whose newest message is older than `max_age` (every message of it is then
//!      outside the time window, so forgetting it cannot cause a second delivery); else
//!   2. the least recently active author (by when this node last accepted a message of it,
//!      not by its claimed timestamp) of the peer that introduced the most authors. So one
//!      peer, however many keys it makes, first crowds out its own authors; an author that
//!      keeps speaking stays; and no flood of authors can keep another peer's new author
//!      out, at this node or at any node behind it.
//! - an author forgotten by rule 2 while its messages are still inside the time window
//!   leaves a tombstone (its known and held ids, and newest timestamp: a message held for
//!   the application's verdict counts as the author's activity and is covered too) until its
//!   newest message leaves the window: those ids count as known, so none is delivered twice,
//!   and if it speaks again it is tracked again from there. Only ids this node had are
//!   covered: an author whose newest id alone was relayed, then forgotten, still has its
//!   earlier ids wanted (a tombstone never marks an id known that never arrived). A
//!   tombstone's ids are the author's known ranges (at most `max_ranges_per_author`) and its
//!   held ids (at most its peers' validation shares); re-admitted, they are cut back to the
//!   bound by filling the lowest gaps. A tombstone belongs to the forgotten author's introducer. At most
//!   [`TOMBSTONES_PER_AUTHOR`] × `max_tracked_authors` are kept, and one introducer holds at
//!   most half of them (its *share*): an introducer at its share whose own new author would
//!   cost another of its authors a tombstone has that new author refused (for now: room
//!   comes back as its tombstones leave the window), so no flood one peer can send evicts a
//!   live tombstone, its own or anyone's. A tombstone is evicted while live only to admit
//!   another introducer's new author (which is never refused): the group over its share,
//!   or else the one holding the most, loses its most recently made one (an early author
//!   it relayed honestly is the last to go). The README's threat model says what that
//!   leaves;
//! - an author's newest timestamp is the largest *verified* one, unclamped: a message signed
//!   with a future timestamp keeps its author tracked until that timestamp has aged out;
//! - a proven equivocation is remembered per id, so replaying it costs no verification and
//!   is reported once.
//!
//! Every operation is O(log n) in the number of authors.

use super::durable::{AuthorRecord, Dirty};
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
    /// Whoever introduced it before this node restarted (`durable.rs`): everything restored
    /// is one group, as one peer's.
    Restored,
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
    /// When this node last accepted (or held) a message of it, counted in such events (so
    /// two within one millisecond are still ordered).
    last_seen: u64,
    introducer: Introducer<P>,
}

/// What a restored author's record said (`durable.rs`): its ids and proven equivocations
/// count until `newest` leaves the window.
#[derive(Debug, Clone)]
struct Before {
    ids: RangeSet,
    newest: u64,
    equivocated: RangeSet,
}

#[derive(Debug, Clone)]
struct Tombstone<P> {
    /// The ids the author had when it was forgotten: known and held.
    known: RangeSet,
    newest: u64,
    /// The forgotten author's introducer.
    group: Introducer<P>,
    /// When it was made, in tombstones made so far.
    made: u64,
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
    tombstones: BTreeMap<PublicKey, Tombstone<P>>,
    /// `(newest, author)` of every tombstone: which one leaves the window first.
    tombstones_by_newest: BTreeSet<(u64, PublicKey)>,
    /// Per introducer: `(made, author)` of its tombstones.
    tombstone_groups: BTreeMap<Introducer<P>, BTreeSet<(u64, PublicKey)>>,
    /// `(tombstones held, introducer)`: who holds the most.
    tombstone_groups_by_size: BTreeSet<(usize, Introducer<P>)>,
    tombstones_made: u64,
    /// Connected peers (set by the engine): the tombstone share is enforced only with more
    /// than one.
    peers: usize,
    /// Messages accepted or held so far: the clock of `last_seen`.
    activity: u64,
    max_authors: usize,
    max_ranges: usize,
    max_age_ms: u64,
    /// Authors whose durable record changed (`durable.rs`).
    dirty: Dirty<PublicKey>,
    /// Per author, the ids known before this node restarted and the newest timestamp among
    /// them (`durable.rs`): they count as known until that timestamp leaves the window, and
    /// nothing displaces them (what was written was within the table's bounds).
    restored: BTreeMap<PublicKey, Before>,
    /// `(newest, author)` of `restored`: which leaves the window first.
    restored_by_newest: BTreeSet<(u64, PublicKey)>,
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
            tombstone_groups: BTreeMap::new(),
            tombstone_groups_by_size: BTreeSet::new(),
            tombstones_made: 0,
            activity: 0,
            peers: 0,
            max_authors,
            max_ranges,
            max_age_ms,
            dirty: Dirty::new(max_authors.saturating_mul(1 + TOMBSTONES_PER_AUTHOR)),
            restored: BTreeMap::new(),
            restored_by_newest: BTreeSet::new(),
        }
    }

    /// The authors whose durable record changed since the driver last took them (`durable.rs`).
    pub(crate) fn marks(&mut self) -> &mut Dirty<PublicKey> {
        &mut self.dirty
    }

    pub(crate) fn marks_ref(&self) -> &Dirty<PublicKey> {
        &self.dirty
    }

    /// What a durable store keeps of `author`, if anything: its ids delivered or accepted
    /// (held for a verdict included), newest timestamp and equivocations; or its tombstone.
    pub(crate) fn record(&self, author: &PublicKey) -> Option<AuthorRecord> {
        let mut record = if let Some(a) = self.authors.get(author) {
            let mut ids = a.known.clone();
            ids.union_with(&a.held);
            AuthorRecord {
                ids,
                newest: a.newest,
                equivocated: a.equivocated.clone(),
                forgotten: false,
            }
        } else if let Some(t) = self.tombstones.get(author) {
            AuthorRecord {
                ids: t.known.clone(),
                newest: t.newest,
                equivocated: RangeSet::new(),
                forgotten: true,
            }
        } else {
            AuthorRecord {
                forgotten: true,
                ..AuthorRecord::default()
            }
        };
        if let Some(before) = self.restored.get(author) {
            record.ids.union_with(&before.ids);
            record.newest = record.newest.max(before.newest);
            record.equivocated.union_with(&before.equivocated);
        }
        (!record.ids.is_empty() || !record.equivocated.is_empty()).then_some(record)
    }

    /// Every durable record (a rewrite of everything).
    pub(crate) fn records(&self) -> impl Iterator<Item = (PublicKey, AuthorRecord)> + '_ {
        let mut authors: BTreeSet<&PublicKey> = self.authors.keys().collect();
        authors.extend(self.tombstones.keys());
        authors.extend(self.restored.keys());
        authors
            .into_iter()
            .filter_map(|author| Some((*author, self.record(author)?)))
    }

    /// Takes back `author` as `record` says: its ids count as known until its newest
    /// timestamp leaves the window (held ones get no verdict); if `track` and it was tracked
    /// and there is room without displacing anyone, it is tracked again, introduced by
    /// [`Introducer::Restored`]. Returns whether it is tracked, or `None` if the table of
    /// restored ids is full (records come newest first: the oldest are left out).
    pub(crate) fn restore(
        &mut self,
        author: &PublicKey,
        record: &AuthorRecord,
        track: bool,
    ) -> Option<bool> {
        let mut known = record.ids.clone();
        known.fill_lowest_gaps(self.max_ranges);
        if *author == self.me {
            let me = self
                .authors
                .get_mut(author)
                .expect("own key always tracked");
            me.known.union_with(&known);
            me.known.fill_lowest_gaps(self.max_ranges);
            me.newest = me.newest.max(record.newest);
            return Some(true);
        }
        if self.restored.contains_key(author)
            || self.restored.len() >= self.max_authors.saturating_mul(1 + TOMBSTONES_PER_AUTHOR)
        {
            return None;
        }
        let mut equivocated = record.equivocated.clone();
        equivocated.forget_lowest(self.max_ranges);
        self.restored.insert(
            *author,
            Before {
                ids: known.clone(),
                newest: record.newest,
                equivocated: equivocated.clone(),
            },
        );
        self.restored_by_newest.insert((record.newest, *author));
        if !track || record.forgotten || self.authors.len() >= self.max_authors {
            return Some(false);
        }
        let entry = Author {
            known,
            held: RangeSet::new(),
            equivocated,
            newest: record.newest,
            last_seen: self.tick(),
            introducer: Introducer::Restored,
        };
        self.index(author, &entry);
        self.authors.insert(*author, entry);
        Some(true)
    }

    /// Whether `id` was accepted (or is covered by a tombstone: accepted before its author
    /// was forgotten).
    pub(crate) fn knows(&self, author: &PublicKey, sequence: u64) -> bool {
        let now = match self.authors.get(author) {
            Some(a) => a.known.contains(sequence),
            None => self
                .tombstones
                .get(author)
                .is_some_and(|t| t.known.contains(sequence)),
        };
        now || self
            .restored
            .get(author)
            .is_some_and(|before| before.ids.contains(sequence))
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
        let unknown = match self.authors.get(author) {
            Some(a) => ids.difference(&a.known),
            None => match self.tombstones.get(author) {
                Some(t) => ids.difference(&t.known),
                None => ids.clone(),
            },
        };
        match self.restored.get(author) {
            Some(before) => unknown.difference(&before.ids),
            None => unknown,
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
            self.dirty.mark(*author);
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
            || self
                .restored
                .get(author)
                .is_some_and(|before| before.equivocated.contains(sequence))
    }

    pub(crate) fn record_equivocation(&mut self, author: &PublicKey, sequence: u64) {
        if let Some(a) = self.authors.get_mut(author) {
            a.equivocated.insert(sequence);
            a.equivocated.forget_lowest(self.max_ranges);
            self.dirty.mark(*author);
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
        self.sweep(now);
        let displaced = match self.room(from, now)? {
            Some(victim) => {
                self.forget(&victim, now);
                Admission::Displaced(victim)
            }
            None => Admission::Free,
        };
        let mut known = RangeSet::new();
        let mut newest = 0;
        let mut equivocated = RangeSet::new();
        if let Some(t) = self.unbury(author) {
            known = t.known;
            newest = t.newest;
        }
        // Known before a restart: from the start, so its digest and fragmentation count them.
        if let Some(before) = self.restored.get(author) {
            known.union_with(&before.ids);
            newest = newest.max(before.newest);
            equivocated = before.equivocated.clone();
        }
        // Held ids (never checked for fragmentation) may have put it past the bound: back
        // within it, the lowest gaps count as known (only ids below held ones).
        known.fill_lowest_gaps(self.max_ranges);
        let entry = Author {
            known,
            held: RangeSet::new(),
            equivocated,
            newest,
            last_seen: self.tick(),
            introducer: from.clone(),
        };
        self.index(author, &entry);
        self.authors.insert(*author, entry);
        self.dirty.mark(*author);
        Ok(displaced)
    }

    /// Records an accepted message of a tracked author.
    pub(crate) fn accepted(&mut self, author: &PublicKey, sequence: u64, timestamp: u64) {
        let Some(mut a) = self.authors.remove(author) else {
            return;
        };
        self.unindex(author, &a);
        a.held.remove_range(sequence, sequence);
        a.known.insert(sequence);
        // `would_fragment` keeps this from ever filling anything; it stays as the bound.
        a.known.fill_lowest_gaps(self.max_ranges);
        a.newest = a.newest.max(timestamp);
        a.last_seen = self.tick();
        self.index(author, &a);
        self.authors.insert(*author, a);
        self.dirty.mark(*author);
    }

    fn tick(&mut self) -> u64 {
        self.activity += 1;
        self.activity
    }

    /// A verified message of a tracked author waits for the application's verdict: it
    /// counts as the author's activity (its timestamp, and as the latest received), and
    /// if the author is forgotten meanwhile its tombstone covers the id, so the message is
    /// never delivered a second time.
    pub(crate) fn hold(&mut self, author: &PublicKey, sequence: u64, timestamp: u64) {
        let Some(mut a) = self.authors.remove(author) else {
            return;
        };
        self.unindex(author, &a);
        a.held.insert(sequence);
        a.newest = a.newest.max(timestamp);
        a.last_seen = self.tick();
        self.index(author, &a);
        self.authors.insert(*author, a);
        self.dirty.mark(*author);
    }

    /// What is held of `author` will get no verdict (the author is blocked): its ids become
    /// known, so they are never delivered again.
    pub(crate) fn settle_held(&mut self, author: &PublicKey) {
        if let Some(a) = self.authors.get_mut(author) {
            let held = std::mem::take(&mut a.held);
            a.known.union_with(&held);
            a.known.fill_lowest_gaps(self.max_ranges);
            self.dirty.mark(*author);
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
        // Whoever brings the new author, the largest group makes room.
        let Some((_, heaviest)) = self.by_group_size.last() else {
            return Err(AuthorsFull); // Only this node's own key is tracked.
        };
        let (_, victim) = self.groups[heaviest]
            .first()
            .expect("a group is never empty");
        // Only with other peers to bring new authors: a node whose one peer brings
        // everything gains nothing by refusing it (that peer could withhold anyway).
        if heaviest == from
            && self.peers > 1
            && self.needs_tombstone(&self.authors[victim], horizon)
            && self.tombstones_held(from) >= self.tombstone_share()
        {
            // Its own flood would evict its own live tombstones: it waits instead.
            return Err(AuthorsFull);
        }
        Ok(Some(*victim))
    }

    /// How many peers are connected.
    pub(crate) fn set_peers(&mut self, peers: usize) {
        self.peers = peers;
    }

    /// Drops the tombstones whose newest message has left the window by `now`, so shares
    /// count live tombstones only (called before every admission check).
    pub(crate) fn sweep(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.max_age_ms);
        while let Some(&(newest, key)) = self.tombstones_by_newest.first()
            && newest < horizon
        {
            self.unbury(&key);
        }
        while let Some(&(newest, key)) = self.restored_by_newest.first()
            && newest < horizon
        {
            self.restored_by_newest.remove(&(newest, key));
            self.restored.remove(&key);
            self.dirty.mark(key);
        }
    }

    /// Whether forgetting `a` needs a tombstone: it has ids and its newest message may still
    /// be inside the window.
    fn needs_tombstone(&self, a: &Author<P>, horizon: u64) -> bool {
        a.newest >= horizon && (a.known.last().is_some() || a.held.last().is_some())
    }

    fn max_tombstones(&self) -> usize {
        self.max_authors.saturating_mul(TOMBSTONES_PER_AUTHOR)
    }

    /// The most tombstones one introducer holds.
    fn tombstone_share(&self) -> usize {
        (self.max_tombstones() / 2).max(1)
    }

    fn tombstones_held(&self, group: &Introducer<P>) -> usize {
        self.tombstone_groups.get(group).map_or(0, BTreeSet::len)
    }

    /// Leaves a tombstone for `author`.
    fn bury(&mut self, author: &PublicKey, known: RangeSet, newest: u64, group: Introducer<P>) {
        self.dirty.mark(*author);
        self.tombstones_made += 1;
        let made = self.tombstones_made;
        let held = self.tombstone_groups.entry(group.clone()).or_default();
        self.tombstone_groups_by_size
            .remove(&(held.len(), group.clone()));
        held.insert((made, *author));
        self.tombstone_groups_by_size
            .insert((held.len(), group.clone()));
        self.tombstones_by_newest.insert((newest, *author));
        self.tombstones.insert(
            *author,
            Tombstone {
                known,
                newest,
                group,
                made,
            },
        );
    }

    /// Removes `author`'s tombstone, if it has one.
    fn unbury(&mut self, author: &PublicKey) -> Option<Tombstone<P>> {
        let t = self.tombstones.remove(author)?;
        self.dirty.mark(*author);
        self.tombstones_by_newest.remove(&(t.newest, *author));
        if let Some(held) = self.tombstone_groups.get_mut(&t.group) {
            self.tombstone_groups_by_size
                .remove(&(held.len(), t.group.clone()));
            held.remove(&(t.made, *author));
            if held.is_empty() {
                self.tombstone_groups.remove(&t.group);
            } else {
                self.tombstone_groups_by_size
                    .insert((held.len(), t.group.clone()));
            }
        }
        Some(t)
    }

    /// Evicts the most recently made tombstone of `group`.
    fn evict_newest_of(&mut self, group: &Introducer<P>) {
        let newest = self
            .tombstone_groups
            .get(group)
            .and_then(|held| held.last().map(|(_, key)| *key));
        if let Some(key) = newest {
            self.unbury(&key);
        }
    }

    /// Forgets a tracked author (never this node's own), leaving a tombstone if any of its
    /// messages may still be inside the time window.
    fn forget(&mut self, author: &PublicKey, now: u64) {
        let Some(a) = self.authors.remove(author) else {
            return;
        };
        self.dirty.mark(*author);
        self.unindex(author, &a);
        let horizon = now.saturating_sub(self.max_age_ms);
        if !self.needs_tombstone(&a, horizon) {
            return;
        }
        let mut known = a.known;
        known.union_with(&a.held);
        // Tombstones out of the window go first; then, if the author's group is at its
        // share, its newest; then, if all are taken, the newest of the group holding most.
        self.sweep(now);
        if self.tombstones_held(&a.introducer) >= self.tombstone_share() {
            self.evict_newest_of(&a.introducer);
        } else if self.tombstones.len() >= self.max_tombstones()
            && let Some((_, most)) = self.tombstone_groups_by_size.last().cloned()
        {
            self.evict_newest_of(&most);
        }
        self.bury(author, known, a.newest, a.introducer);
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
        if let peer @ (Introducer::Imported | Introducer::Peer(_) | Introducer::Restored) =
            &a.introducer
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
        assert_eq!(
            self.restored.len(),
            self.restored_by_newest.len(),
            "restored index"
        );
        assert!(self.restored.len() <= self.max_authors.saturating_mul(1 + TOMBSTONES_PER_AUTHOR));
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
        let buried: usize = self.tombstone_groups.values().map(BTreeSet::len).sum();
        assert_eq!(buried, self.tombstones.len(), "tombstone group index");
        assert_eq!(
            self.tombstone_groups_by_size.len(),
            self.tombstone_groups.len()
        );
        for held in self.tombstone_groups.values() {
            assert!(held.len() <= self.tombstone_share(), "tombstone share");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    fn key() -> PublicKey {
        Keypair::generate().public()
    }

    /// One peer (1) relays an honest author first, then floods fresh authors: it can never
    /// evict that author's tombstone (nor any other live one); its own new authors are
    /// refused once its share is full, and another peer's new author still gets in.
    #[test]
    fn one_peer_flood_evicts_no_live_tombstone() {
        let me = key();
        let (max_authors, max_age) = (4, 1_000_000);
        let mut t = Authors::<u8>::new(me, max_authors, 64, max_age);
        t.set_peers(2);
        let flooder = Introducer::Peer(1);
        let honest = key();
        t.admit(&honest, &flooder, 10).unwrap();
        t.accepted(&honest, 1, 10);
        let mut refused = 0;
        for now in 11..10_000u64 {
            let spam = key();
            if !t.can_admit(&spam, &flooder, now) {
                assert_eq!(t.admit(&spam, &flooder, now), Err(AuthorsFull));
                refused += 1;
                continue;
            }
            t.admit(&spam, &flooder, now).unwrap();
            t.accepted(&spam, 1, now);
            t.check_invariants();
            assert!(t.knows(&honest, 1), "the honest author's id at step {now}");
        }
        assert!(refused > 9_000, "refused {refused}");
        assert!(t.knows(&honest, 1));
        // Another peer's new author is never refused.
        let other = key();
        assert!(t.can_admit(&other, &Introducer::Peer(2), 20_000));
        assert!(matches!(
            t.admit(&other, &Introducer::Peer(2), 20_000),
            Ok(Admission::Displaced(_))
        ));
        t.accepted(&other, 1, 20_000);
        t.check_invariants();
        assert!(
            t.knows(&honest, 1),
            "an early tombstone outlives the newest of its group"
        );
        // Once the window has passed, the flooder's authors get in again.
        assert!(t.can_admit(&key(), &flooder, 10_000 + max_age + 1));
    }
}
