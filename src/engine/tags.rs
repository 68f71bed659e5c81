//! Tags (`docs/PROTOCOL.md` §1, "Tags"; §3.9): new ids announced by their 8-byte tag
//! ([`MessageId::tag`]) instead of author and range, to peers that read tags. [`Tags`] owns
//! every piece of tag state: the index of recently accepted ids by tag, which peers read
//! tags, and the tags announced to this node whose ids it does not know yet (with the timer,
//! [`Timer::Tag`](super::Timer::Tag), that asks for them).
//!
//! Rules, all here:
//! - the index holds the ids accepted (received or published) within the last
//!   [`RECENT_MS`], at most [`MAX_RECENT`] (the oldest go first); a tag is resolved against
//!   it only. The first id of a tag keeps it: a colliding id (a 64-bit collision, which an
//!   author can only grind among its own ids) is never announced by tag, nor resolved;
//! - a peer is announced an id by tag only if it set `reads_tags` on this connection and the
//!   index resolves the id's tag to that id ([`Tags::encode`]); everything else (complete
//!   digests, catch-up, ranges) goes as digests. A peer that never sets `reads_tags` (a
//!   peer that predates tags) is never sent one;
//! - an announced tag the index resolves is an announcement of its id, handled as any
//!   ([`Tags::resolve`]). One it does not resolve is kept as *pending*, with all its
//!   announcers: each peer has at most [`MAX_PENDING_PER_PEER`] pending tags (more are
//!   ignored), so what k peers can make this node keep is k times that, whatever they send;
//! - with the tree on, a pending tag waits `graft_timeout` from its first announcement, over
//!   any link (a pushed copy usually follows; an eager peer that announces holds the link
//!   lazy); without the tree, an announcement has it asked of that
//!   peer at once, unless someone is asked already. At its timer, it is asked (`want_tags`) of
//!   one announcer, the best by track record (`record.rs`: proven, unknown, failed), the
//!   earliest among equals. When every ask of it has lapsed (`want_timeout`), the peers asked
//!   have failed (as for a want) and the next [`HEDGE`] best announcers not yet asked are
//!   asked at once; an announcer that comes later waits its turn. So k liars that announce
//!   first delay a tag by about one `want_timeout` per [`HEDGE`] of them, and each of its
//!   announcers is asked once (again only if it announces it again after lapsing). When all
//!   were asked and lapsed it is given up: the id, if real, comes by the tree, a later
//!   announcement or a digest. A peer that leaves with a tag asked of it has failed; a want
//!   by tag in a frame that was never sent was not asked;
//! - a pending tag ends when its id becomes known, however it came: accepted, held for the
//!   application's verdict, or arriving again as a duplicate (its announcers are then known
//!   to have it, and an ask of the sender counts as answered); or when an envelope of it is
//!   dropped because its author is refused (unverified, so it is not indexed);
//! - a peer that leaves takes its place as announcer with it; a tag left with none goes;
//! - a peer that does not read tags (one that predates them, or a Sybil that would rather
//!   cost this node 54 bytes an id than 8) is announced every new id as a digest, as before
//!   tags: bounding those announcements (two lazy links a message, in turn; or all up to
//!   eight) lost messages at nodes whose eager path failed, in networks of such peers
//!   (`docs/simulation.md`), so it is not done;
//! - a node with an allow-list reads tags like any: a refused author's pushed copy ends its
//!   pending tag, and a tag that comes first costs one pulled envelope, as a push would have.

use super::Millis;
use crate::envelope::MessageId;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How long an accepted id stays in the index: announcements go out within
/// `announce_delay` of acceptance, so a tag names an id its receiver accepted seconds ago at
/// most, even behind queues of seconds (the saturated benchmark's p99 is under 2 s).
pub(crate) const RECENT_MS: Millis = 10_000;

/// Most ids in the index: 4,096 of about 100 bytes each (a hash table's entry and spare
/// room, and its place in the order), 400 KB at most; 20 s of 200 new messages a second.
pub(crate) const MAX_RECENT: usize = 4_096;

/// Most tags one peer has pending at this node at once: an honest peer announces what it
/// accepted in the last `announce_delay`, which this node mostly has, or gets within a
/// `graft_timeout`.
pub(crate) const MAX_PENDING_PER_PEER: usize = 256;

/// Most tags announced to one peer in one round: more go as digests (a backlog after a
/// congested queue drained), which the receiver records whatever its pending quota.
pub(crate) const MAX_TAGS_PER_ROUND: usize = 128;

/// Most announcers of a pending tag asked at once when the one asked before lapsed (the
/// hedge): liars that announce first delay a tag by one `want_timeout` per this many of them,
/// as probes bound a pull (`wants.rs`).
pub(crate) const HEDGE: usize = 8;

/// Where one announcer of a pending tag stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// Not asked (or announced it again since it lapsed).
    No,
    /// Asked, until this time.
    Until(Millis),
    /// Asked in a frame that was never sent (its queue was full): it waits out the time, and
    /// is not blamed when it passes.
    Dropped(Millis),
    /// Asked, and the time passed.
    Lapsed,
}

impl Ask {
    fn deadline(self) -> Option<Millis> {
        match self {
            Ask::Until(t) | Ask::Dropped(t) => Some(t),
            Ask::No | Ask::Lapsed => None,
        }
    }
}

#[derive(Debug)]
struct Pending<P> {
    /// Every announcer (bounded by the per-peer quota): its place in the order of
    /// announcements (a later re-announcement takes a new one), and its ask.
    announcers: BTreeMap<P, (u64, Ask)>,
    /// The next place.
    places: u64,
    /// How many announcers are not asked.
    unasked: usize,
    /// The deadlines of the outstanding asks, with how many end then.
    deadlines: BTreeMap<Millis, usize>,
    /// Whether it still waits for a pushed copy (no one asked yet), until `wait_until`.
    waiting: bool,
    wait_until: Millis,
    /// When it is given up, whatever is left ([`RECENT_MS`] after the first announcement:
    /// its announcers answer from their own index, which holds no longer).
    expires: Millis,
    /// Its timer.
    at: Millis,
}

impl<P: Clone + Ord> Pending<P> {
    fn new(wait_until: Millis, now: Millis) -> Self {
        Pending {
            announcers: BTreeMap::new(),
            places: 0,
            unasked: 0,
            deadlines: BTreeMap::new(),
            waiting: true,
            wait_until,
            expires: now.saturating_add(RECENT_MS),
            at: wait_until,
        }
    }

    /// Adds `peer` (not yet an announcer), or gives it a new place if it was one.
    fn add(&mut self, peer: &P, ask: Ask) {
        if self.announcers.contains_key(peer) {
            self.set(peer, ask);
            let place = self.places;
            if let Some((p, _)) = self.announcers.get_mut(peer) {
                *p = place;
            }
        } else {
            self.count(ask, true);
            self.announcers.insert(peer.clone(), (self.places, ask));
        }
        self.places += 1;
    }

    /// Sets `peer`'s ask, keeping the counts.
    fn set(&mut self, peer: &P, ask: Ask) {
        let Some((_, old)) = self.announcers.get(peer).copied() else {
            return;
        };
        self.count(old, false);
        self.count(ask, true);
        if let Some((_, a)) = self.announcers.get_mut(peer) {
            *a = ask;
        }
    }

    /// Removes `peer`; returns its ask.
    fn remove(&mut self, peer: &P) -> Option<Ask> {
        let (_, ask) = self.announcers.remove(peer)?;
        self.count(ask, false);
        Some(ask)
    }

    fn count(&mut self, ask: Ask, add: bool) {
        if ask == Ask::No {
            if add {
                self.unasked += 1;
            } else {
                self.unasked -= 1;
            }
        }
        if let Some(t) = ask.deadline() {
            let n = self.deadlines.entry(t).or_default();
            if add {
                *n += 1;
            } else {
                *n -= 1;
                if *n == 0 {
                    self.deadlines.remove(&t);
                }
            }
        }
    }

    fn outstanding(&self) -> bool {
        !self.deadlines.is_empty()
    }

    /// When it next needs the timer: the end of its wait, its earliest deadline, or now if
    /// an announcer waits to be asked, and never after it expires; `None`: nothing is left to
    /// ask.
    fn next(&self, now: Millis) -> Option<Millis> {
        let next = if self.waiting {
            Some(self.wait_until)
        } else {
            let deadline = self.deadlines.keys().next().copied();
            deadline.or_else(|| (self.unasked > 0).then_some(now))
        };
        next.map(|t| t.min(self.expires))
    }
}

/// What the tag timer asks of the engine ([`Tags::due`]).
#[derive(Debug)]
pub(crate) struct Due<P> {
    /// Tags to ask of each peer (`want_tags`).
    pub(crate) asks: BTreeMap<P, Vec<u64>>,
    /// Peers that let a tag asked of them lapse.
    pub(crate) lapsed: Vec<P>,
}

/// A resolved tag's pending state ([`Tags::accepted`]).
#[derive(Debug)]
pub(crate) struct Resolved<P> {
    /// Peers that announced the id by its tag.
    pub(crate) announcers: Vec<P>,
    /// Peers it was asked of.
    pub(crate) asked: Vec<P>,
}

#[derive(Debug)]
pub(crate) struct Tags<P> {
    recent: HashMap<u64, MessageId>,
    /// `(accepted at, tag)`, oldest first.
    order: VecDeque<(Millis, u64)>,
    readers: BTreeSet<P>,
    pending: HashMap<u64, Pending<P>>,
    by_peer: BTreeMap<P, BTreeSet<u64>>,
    timers: BTreeSet<(Millis, u64)>,
    /// Per peer, when the wait its announced tags share ends.
    waits: BTreeMap<P, Millis>,
    graft_timeout: Millis,
    want_timeout: Millis,
}

impl<P: Clone + Ord> Tags<P> {
    pub(crate) fn new(graft_timeout: Millis, want_timeout: Millis) -> Self {
        Tags {
            recent: HashMap::new(),
            order: VecDeque::new(),
            readers: BTreeSet::new(),
            pending: HashMap::new(),
            by_peer: BTreeMap::new(),
            timers: BTreeSet::new(),
            waits: BTreeMap::new(),
            graft_timeout,
            want_timeout,
        }
    }

    /// `peer` set `reads_tags`: it is announced new ids by tag from now on.
    pub(crate) fn reads(&mut self, peer: &P) {
        self.readers.insert(peer.clone());
    }

    /// `peer` is gone (or its connection replaced): it no longer reads tags, and its place
    /// as announcer goes. Returns whether it left with a tag asked of it outstanding (as a
    /// want that lapsed).
    pub(crate) fn disconnected(&mut self, peer: &P, now: Millis) -> bool {
        self.readers.remove(peer);
        self.waits.remove(peer);
        let mut left_asked = false;
        for tag in self.by_peer.remove(peer).unwrap_or_default() {
            let Some(p) = self.pending.get_mut(&tag) else {
                continue;
            };
            if let Some(ask) = p.remove(peer) {
                left_asked |= matches!(ask, Ask::Until(_));
            }
            if p.announcers.is_empty() {
                self.drop_pending(tag);
            } else {
                self.reschedule(tag, now);
            }
        }
        self.shrink();
        left_asked
    }

    /// A known id arrived again (a duplicate): its pending tag, if any, ends, without the id
    /// being indexed (its first copy may have left the index). Returns it as
    /// [`Tags::accepted`] does.
    pub(crate) fn known(&mut self, id: &MessageId) -> Option<Resolved<P>> {
        if self.pending.is_empty() {
            // The common case, on every duplicate: no hash to compute.
            return None;
        }
        let pending = self.drop_pending(id.tag())?;
        let asked = pending
            .announcers
            .iter()
            .filter(|(_, (_, a))| *a != Ask::No)
            .map(|(p, _)| p.clone())
            .collect();
        Some(Resolved {
            announcers: pending.announcers.into_keys().collect(),
            asked,
        })
    }

    /// `id` was accepted at `now` (or held for the application's verdict, its signature
    /// checked): it is indexed, and its pending tag, if any, resolved.
    pub(crate) fn accepted(&mut self, id: &MessageId, now: Millis) -> Option<Resolved<P>> {
        self.expire(now);
        let tag = id.tag();
        if let std::collections::hash_map::Entry::Vacant(e) = self.recent.entry(tag) {
            e.insert(*id);
            self.order.push_back((now, tag));
        }
        self.known(id)
    }

    /// `id` was dropped because its author is refused (the author filter, or blocked): its
    /// pending tag, if any, ends (a node that refuses the author does not want it). It is not
    /// indexed: the envelope was not verified, and an unverified id must never take a tag.
    pub(crate) fn refused(&mut self, id: &MessageId) {
        self.known(id);
    }

    /// The id a tag names, if it was accepted lately.
    pub(crate) fn resolve(&self, tag: u64) -> Option<MessageId> {
        self.recent.get(&tag).copied()
    }

    /// The tags of `ids` to announce to `peer` by tag, if it reads tags, every one of them
    /// is indexed and they fit in `room` (which they then take); `None`: announce them as a
    /// digest. A round starts with [`MAX_TAGS_PER_ROUND`] of room per peer.
    pub(crate) fn encode(
        &self,
        peer: &P,
        author: &crate::keys::PublicKey,
        ids: &crate::ranges::RangeSet,
        room: &mut usize,
    ) -> Option<Vec<u64>> {
        if !self.readers.contains(peer) || ids.len() > *room as u64 {
            return None;
        }
        let mut tags = Vec::new();
        for (start, end) in ids.ranges() {
            for sequence in start..=end {
                let id = MessageId {
                    author: *author,
                    sequence,
                };
                let tag = id.tag();
                if self.recent.get(&tag) != Some(&id) {
                    return None;
                }
                tags.push(tag);
            }
        }
        *room -= tags.len();
        Some(tags)
    }

    /// `peer` announced `tag`, which the index does not resolve, at `now`; `wait`: whether
    /// to wait `graft_timeout` for a pushed copy (the tree is on) before asking. Returns
    /// whether to ask `peer` for it now (it does not wait, and no one is asked for it).
    pub(crate) fn announced(&mut self, peer: &P, tag: u64, wait: bool, now: Millis) -> bool {
        let known = self
            .by_peer
            .get(peer)
            .is_some_and(|mine| mine.contains(&tag));
        if known {
            // Announced again: a peer that let an ask lapse may be asked once more, in the
            // place of this announcement.
            if let Some(p) = self.pending.get_mut(&tag)
                && p.announcers
                    .get(peer)
                    .is_some_and(|(_, a)| *a == Ask::Lapsed)
            {
                p.add(peer, Ask::No);
                self.reschedule(tag, now);
            }
            return false;
        }
        if self
            .by_peer
            .get(peer)
            .is_some_and(|mine| mine.len() >= MAX_PENDING_PER_PEER)
        {
            return false;
        }
        self.by_peer.entry(peer.clone()).or_default().insert(tag);
        // Tags a peer announces while an earlier one of it waits join that wait, as a lazy
        // peer's deferred ids share its graft timer (`tree.rs`).
        let wait_until = match self.waits.get(peer) {
            Some(&until) if until > now => until,
            _ => {
                let until = now.saturating_add(self.graft_timeout);
                if wait {
                    self.waits.insert(peer.clone(), until);
                }
                until
            }
        };
        let pending = self
            .pending
            .entry(tag)
            .or_insert_with(|| Pending::new(wait_until, now));
        if pending.waiting && wait_until < pending.wait_until {
            pending.wait_until = wait_until;
        }
        let ask = !wait && !pending.outstanding();
        if ask {
            // Without the tree: asked at once, of this peer.
            pending.add(peer, Ask::Until(now.saturating_add(self.want_timeout)));
            pending.waiting = false;
        } else {
            pending.add(peer, Ask::No);
        }
        self.reschedule(tag, now);
        ask
    }

    /// Moves `tag`'s timer to when it next needs it, or drops it if nothing is left to ask.
    fn reschedule(&mut self, tag: u64, now: Millis) {
        let Some(p) = self.pending.get_mut(&tag) else {
            return;
        };
        self.timers.remove(&(p.at, tag));
        match p.next(now) {
            Some(at) => {
                p.at = at;
                self.timers.insert((at, tag));
            }
            None => {
                self.drop_pending(tag);
            }
        }
    }

    /// Wants of `tags` sent to `peer` in a frame that was never sent (its queue was full):
    /// they wait out their time as if sent, and it is not blamed when it passes (asking again
    /// at once would only be dropped again).
    pub(crate) fn want_dropped(&mut self, peer: &P, tags: &[u64]) {
        for tag in tags {
            if let Some(p) = self.pending.get_mut(tag)
                && let Some((_, Ask::Until(t))) = p.announcers.get(peer).copied()
            {
                p.set(peer, Ask::Dropped(t));
            }
        }
    }

    /// The next tag timer.
    pub(crate) fn next_timer(&self) -> Option<Millis> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The tags whose timer has come: what to ask of whom, and who lapsed. The first ask of
    /// a tag goes to its best announcer by `rank` (best first; the earliest among equals);
    /// when every ask of it lapsed, the next [`HEDGE`] best that were not asked are asked at
    /// once. At most `per_peer` tags are asked of one peer in one call (its answer is one
    /// frame); the others wait for the next step. A tag is given up when all its announcers
    /// were asked and lapsed, or [`RECENT_MS`] after its first announcement (no one is
    /// blamed for asks outstanding then).
    pub(crate) fn due<R: Ord>(
        &mut self,
        now: Millis,
        rank: impl Fn(&P) -> R,
        per_peer: usize,
    ) -> Due<P> {
        let mut due = Due {
            asks: BTreeMap::new(),
            lapsed: Vec::new(),
        };
        while let Some(&(at, tag)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(p) = self.pending.get_mut(&tag) else {
                continue;
            };
            if now >= p.expires {
                self.drop_pending(tag);
                continue;
            }
            if p.deadlines.keys().next().is_some_and(|t| *t <= now) {
                let ended: Vec<(P, Ask)> = p
                    .announcers
                    .iter()
                    .filter(|(_, (_, a))| a.deadline().is_some_and(|t| t <= now))
                    .map(|(peer, (_, a))| (peer.clone(), *a))
                    .collect();
                for (peer, ask) in ended {
                    p.set(&peer, Ask::Lapsed);
                    if matches!(ask, Ask::Until(_)) {
                        due.lapsed.push(peer);
                    }
                }
            }
            if !p.outstanding() && (!p.waiting || p.wait_until <= now) {
                let take = if p.waiting { 1 } else { HEDGE };
                p.waiting = false;
                let mut order: Vec<(P, u64)> = p
                    .announcers
                    .iter()
                    .filter(|(_, (_, a))| *a == Ask::No)
                    .map(|(peer, (place, _))| (peer.clone(), *place))
                    .collect();
                order.sort_by_cached_key(|(peer, place)| (rank(peer), *place));
                let until = now.saturating_add(self.want_timeout);
                let mut asked = 0;
                for (peer, _) in order {
                    if asked == take {
                        break;
                    }
                    let tags = due.asks.entry(peer.clone()).or_default();
                    if tags.len() >= per_peer {
                        continue;
                    }
                    tags.push(tag);
                    p.set(&peer, Ask::Until(until));
                    asked += 1;
                }
            }
            // Its timer was popped: the next one, or it is given up.
            match p.next(now.saturating_add(1)) {
                Some(at) => {
                    p.at = at;
                    self.timers.insert((at, tag));
                }
                None => {
                    self.drop_pending(tag);
                }
            }
        }
        due.asks.retain(|_, tags| !tags.is_empty());
        due.lapsed.sort();
        due.lapsed.dedup();
        due
    }

    /// Whether `tag` is pending (announced, not yet accepted).
    #[cfg(test)]
    pub(crate) fn is_pending(&self, tag: u64) -> bool {
        self.pending.contains_key(&tag)
    }

    /// Ends `tag`'s pending state: its timer, and its place in each announcer's quota.
    fn drop_pending(&mut self, tag: u64) -> Option<Pending<P>> {
        let pending = self.pending.remove(&tag)?;
        self.timers.remove(&(pending.at, tag));
        for a in pending.announcers.keys() {
            if let Some(mine) = self.by_peer.get_mut(a) {
                mine.remove(&tag);
                if mine.is_empty() {
                    self.by_peer.remove(a);
                }
            }
        }
        self.shrink();
        Some(pending)
    }

    /// Tables that emptied give their memory back (amortised: only below a quarter full).
    fn shrink(&mut self) {
        if self.pending.capacity() > 64 && self.pending.len() < self.pending.capacity() / 4 {
            self.pending.shrink_to(self.pending.len() * 2);
        }
    }

    /// Ids accepted more than [`RECENT_MS`] before `now` leave the index (also at every
    /// timer, so an index left idle empties).
    pub(crate) fn expire(&mut self, now: Millis) {
        while let Some(&(at, tag)) = self.order.front() {
            if self.order.len() <= MAX_RECENT && at.saturating_add(RECENT_MS) > now {
                break;
            }
            self.order.pop_front();
            self.recent.remove(&tag);
        }
        // An index that emptied gives its memory back.
        if self.recent.capacity() > 64 && self.recent.len() < self.recent.capacity() / 4 {
            self.recent.shrink_to(self.recent.len() * 2);
            self.order.shrink_to(self.order.len() * 2);
        }
    }

    /// Panics if the bookkeeping disagrees with itself.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.recent.len(), self.order.len(), "index and order agree");
        assert!(self.recent.len() <= MAX_RECENT + 1);
        assert_eq!(
            self.timers.len(),
            self.pending.len(),
            "one timer per pending tag"
        );
        for (at, tag) in &self.timers {
            assert_eq!(self.pending.get(tag).map(|p| p.at), Some(*at));
        }
        let mut counted = 0;
        for (peer, tags) in &self.by_peer {
            assert!(!tags.is_empty() && tags.len() <= MAX_PENDING_PER_PEER);
            for tag in tags {
                assert!(self.pending[tag].announcers.contains_key(peer));
            }
            counted += tags.len();
        }
        let announced: usize = self.pending.values().map(|p| p.announcers.len()).sum();
        assert_eq!(counted, announced, "every announcer counted once");
        for p in self.pending.values() {
            assert!(!p.announcers.is_empty());
            assert!(
                !p.waiting || !p.outstanding(),
                "no one is asked while it waits"
            );
            assert!(
                p.waiting || p.outstanding() || p.unasked > 0,
                "a pending tag has something left to ask"
            );
            let unasked = p.announcers.values().filter(|(_, a)| *a == Ask::No).count();
            assert_eq!(p.unasked, unasked, "unasked counted");
            let asked = p
                .announcers
                .values()
                .filter(|(_, a)| a.deadline().is_some())
                .count();
            assert_eq!(
                p.deadlines.values().sum::<usize>(),
                asked,
                "deadlines counted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    fn id(sequence: u64) -> MessageId {
        MessageId {
            author: Keypair::from_seed(&[3; 32]).public(),
            sequence,
        }
    }

    #[test]
    fn a_pending_tag_waits_then_asks_one_then_the_next_best_then_goes() {
        let mut t: Tags<u8> = Tags::new(100, 1_000);
        let tag = id(5).tag();
        for (k, peer) in (1..=12u8).enumerate() {
            t.announced(&peer, tag, true, k as Millis);
        }
        t.check_invariants();
        assert_eq!(t.next_timer(), Some(100));
        // Peer 12 ranks best; the rest tie, earliest first.
        let rank = |p: &u8| *p != 12;
        let due = t.due(100, rank, 16);
        assert_eq!(
            due.asks.into_iter().collect::<Vec<_>>(),
            vec![(12, vec![tag])]
        );
        assert!(due.lapsed.is_empty());
        // A late announcer waits its turn.
        t.announced(&13, tag, true, 500);
        let due = t.due(1_100, rank, 16);
        assert_eq!(due.lapsed, vec![12]);
        assert_eq!(
            due.asks.keys().copied().collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
        let due = t.due(2_100, rank, 16);
        assert_eq!(due.lapsed, (1..=8).collect::<Vec<_>>());
        assert_eq!(
            due.asks.keys().copied().collect::<Vec<_>>(),
            vec![9, 10, 11, 13]
        );
        t.check_invariants();
        // One that lapsed and announces again is asked again.
        t.announced(&12, tag, true, 2_500);
        let due = t.due(3_100, rank, 16);
        assert_eq!(due.asks.keys().copied().collect::<Vec<_>>(), vec![12]);
        let due = t.due(4_100, rank, 16);
        assert!(due.asks.is_empty());
        assert!(!t.is_pending(tag), "all asked, all lapsed: given up");
        t.check_invariants();
    }

    #[test]
    fn a_want_that_never_left_waits_unblamed_and_one_that_leaves_asked_fails() {
        let mut t: Tags<u8> = Tags::new(100, 1_000);
        let tag = id(5).tag();
        assert!(t.announced(&1, tag, false, 0));
        t.want_dropped(&1, &[tag]);
        t.announced(&2, tag, true, 20);
        let due = t.due(500, |_| 0, 16);
        assert!(due.asks.is_empty(), "not asked again at once");
        let due = t.due(1_000, |_| 0, 16);
        assert!(due.lapsed.is_empty(), "a dropped ask is not blamed");
        assert_eq!(due.asks.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert!(t.disconnected(&2, 1_500), "left with the ask outstanding");
        assert!(!t.disconnected(&3, 1_500));
        t.check_invariants();
    }

    #[test]
    fn a_tag_is_given_up_when_its_announcers_answer_from_their_index_no_longer() {
        let mut t: Tags<u8> = Tags::new(100, 1_000);
        let tag = id(5).tag();
        for peer in 1..=100u8 {
            t.announced(&peer, tag, true, 0);
        }
        let mut lapsed = 0;
        let mut now = 0;
        while let Some(next) = t.next_timer() {
            now = next;
            lapsed += t.due(now, |_| 0, 16).lapsed.len();
        }
        assert!(now <= RECENT_MS, "given up by {now}");
        assert!(!t.is_pending(tag));
        assert_eq!(
            lapsed,
            1 + 8 * 8,
            "one, then batches of eight, until it expired"
        );
        t.check_invariants();
    }

    #[test]
    fn acceptance_resolves_and_indexes() {
        let mut t: Tags<u8> = Tags::new(100, 1_000);
        let tag = id(5).tag();
        assert!(t.announced(&1, tag, false, 0), "asked at once");
        assert!(!t.announced(&2, tag, false, 0), "asked already");
        assert_eq!(t.next_timer(), Some(1_000));
        let resolved = t.accepted(&id(5), 50).expect("was pending");
        assert_eq!(resolved.announcers, vec![1, 2]);
        assert_eq!(resolved.asked, vec![1]);
        assert_eq!(t.resolve(tag), Some(id(5)));
        assert_eq!(t.next_timer(), None);
        t.reads(&1);
        let one = crate::ranges::RangeSet::from_range(5, 5);
        let mut room = 1;
        let author = id(5).author;
        assert_eq!(t.encode(&2, &author, &one, &mut room), None, "not a reader");
        assert_eq!(t.encode(&1, &author, &one, &mut room), Some(vec![tag]));
        assert_eq!(t.encode(&1, &author, &one, &mut room), None, "no room left");
        let other = crate::ranges::RangeSet::from_range(5, 6);
        let mut room = 10;
        let encoded = t.encode(&1, &author, &other, &mut room);
        assert_eq!(encoded, None, "6 is not indexed");
        // Gone after RECENT_MS.
        t.accepted(&id(9), 50 + RECENT_MS);
        assert_eq!(t.resolve(tag), None);
        t.check_invariants();
    }

    #[test]
    fn a_peer_keeps_at_most_its_share_pending() {
        let mut t: Tags<u8> = Tags::new(100, 1_000);
        for tag in 0..(MAX_PENDING_PER_PEER as u64 + 50) {
            t.announced(&1, tag, true, 0);
        }
        t.check_invariants();
        assert_eq!(t.pending.len(), MAX_PENDING_PER_PEER);
        t.disconnected(&1, 0);
        assert!(t.pending.is_empty() && t.timers.is_empty());
        t.check_invariants();
    }
}
