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
//!   ([`Tags::resolve`]). One it does not resolve is kept as *pending*, with its announcers
//!   (at most [`MAX_ANNOUNCERS`]): each peer has at most [`MAX_PENDING_PER_PEER`] pending
//!   tags (more are ignored), so what k peers can make this node keep is k times that,
//!   whatever they send;
//! - a pending tag waits `graft_timeout` from its first announcement over a lazy link (a
//!   pushed copy usually follows); an announcement over an eager link, while it waits, has
//!   it asked of that peer at once. Otherwise, at its timer, it is asked (`want_tags`) of one
//!   announcer, the best by track record (`record.rs`: proven, unknown, failed), the
//!   earliest among equals; if that lapses after `want_timeout`, the peer asked has failed
//!   (as for a want) and the tag is asked of every other announcer at once (a hedge: liars
//!   that announce first delay it by one `want_timeout`, however many), or of the same one
//!   again if it is the only one; after another `want_timeout` it is given up. The id, if it is real, comes by the tree, a later
//!   announcement or a digest;
//! - a pending tag is resolved when its id is accepted, however it came: its announcers are
//!   then known to have it;
//! - a peer that leaves takes its place as announcer with it; a tag left with none goes;
//! - with the tree on, a new message is announced as a digest to at most
//!   [`MAX_DIGEST_ANNOUNCEMENTS`] of the lazy peers that do not read tags, in turn
//!   ([`Tags::digest_turn`]); those left out are not told (their eager links, the announcements
//!   of the peers they read and the complete digests of a new connection remain); peers that
//!   read tags are all announced to;
//! - an envelope dropped because its author is refused (the author filter, or blocked) is
//!   indexed as if accepted ([`Tags::refused`]), so a node with an allow-list reads tags and
//!   pulls a refused author's message by its tag only if no copy reached it first, at most
//!   once, as a push would have brought it.

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

/// Most announcers kept for one pending tag (the hedge asks each of them at most once).
pub(crate) const MAX_ANNOUNCERS: usize = 8;

/// Most lazy peers that do not read tags a new message is announced to (as a digest, about
/// 54 bytes each), with the tree on: pushes carry messages along the tree, and announcements
/// are its repair, which peers that read tags get in full for 8 bytes an id. A peer that does
/// not (a version before tags, or a Sybil that would rather cost this node 54 bytes an id on
/// every lazy link) is announced one message in `k / 2` on average among `k` such links, so
/// what they cost per message is bounded whatever their number.
pub(crate) const MAX_DIGEST_ANNOUNCEMENTS: usize = 2;

/// Where a pending tag stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for a pushed copy until its timer.
    Waiting,
    /// Asked of one announcer until its timer.
    AskedOne,
    /// Asked of every announcer until its timer; then given up.
    AskedAll,
}

#[derive(Debug)]
struct Pending<P> {
    announcers: Vec<P>,
    asked: Vec<P>,
    stage: Stage,
    at: Millis,
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
    /// Where [`Tags::digest_turn`] starts next.
    turn: usize,
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
            turn: 0,
            graft_timeout,
            want_timeout,
        }
    }

    /// `peer` set `reads_tags`: it is announced new ids by tag from now on.
    pub(crate) fn reads(&mut self, peer: &P) {
        self.readers.insert(peer.clone());
    }

    /// Whether `peer` reads tags.
    pub(crate) fn is_reader(&self, peer: &P) -> bool {
        self.readers.contains(peer)
    }

    /// `peer` is gone (or its connection replaced): it no longer reads tags, and its place
    /// as announcer goes.
    pub(crate) fn disconnected(&mut self, peer: &P) {
        self.readers.remove(peer);
        for tag in self.by_peer.remove(peer).unwrap_or_default() {
            let Some(p) = self.pending.get_mut(&tag) else {
                continue;
            };
            p.announcers.retain(|a| a != peer);
            if p.announcers.is_empty() {
                self.timers.remove(&(p.at, tag));
                self.drop_pending(tag);
            }
        }
    }

    /// `id` was accepted at `now`: it is indexed, and its pending tag, if any, resolved.
    pub(crate) fn accepted(&mut self, id: &MessageId, now: Millis) -> Option<Resolved<P>> {
        self.expire(now);
        let tag = id.tag();
        if let std::collections::hash_map::Entry::Vacant(e) = self.recent.entry(tag) {
            e.insert(*id);
            self.order.push_back((now, tag));
        }
        let pending = self.pending.get(&tag)?;
        self.timers.remove(&(pending.at, tag));
        let pending = self.drop_pending(tag)?;
        Some(Resolved {
            announcers: pending.announcers,
            asked: pending.asked,
        })
    }

    /// `id` was dropped at `now` because its author is refused (the author filter, or
    /// blocked): it is indexed as if accepted, so its tag resolves and is never pulled. (Only
    /// for that drop: an envelope dropped for its window or size may be a forged copy of a
    /// real id, which must not take the id's tag.)
    pub(crate) fn refused(&mut self, id: &MessageId, now: Millis) {
        self.accepted(id, now);
    }

    /// Of `lazy` (peers a new message is announced to, none of which reads tags), those it
    /// is announced to as a digest: at most [`MAX_DIGEST_ANNOUNCEMENTS`], taken in turn.
    pub(crate) fn digest_turn(&mut self, lazy: Vec<P>) -> Vec<P> {
        if lazy.len() <= MAX_DIGEST_ANNOUNCEMENTS {
            return lazy;
        }
        let start = self.turn % lazy.len();
        self.turn = self.turn.wrapping_add(MAX_DIGEST_ANNOUNCEMENTS);
        lazy.into_iter()
            .cycle()
            .skip(start)
            .take(MAX_DIGEST_ANNOUNCEMENTS)
            .collect()
    }

    /// The id a tag names, if it was accepted lately.
    pub(crate) fn resolve(&self, tag: u64) -> Option<MessageId> {
        self.recent.get(&tag).copied()
    }

    /// The tags of `ids` to announce to `peer` by tag, if it reads tags and every one of them
    /// is indexed; `None`: announce them as a digest.
    pub(crate) fn encode(
        &self,
        peer: &P,
        author: &crate::keys::PublicKey,
        ids: &crate::ranges::RangeSet,
    ) -> Option<Vec<u64>> {
        if !self.readers.contains(peer) || ids.len() > MAX_PENDING_PER_PEER as u64 {
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
        Some(tags)
    }

    /// `peer` announced `tag`, which the index does not resolve, at `now`; `wait`: whether
    /// to wait `graft_timeout` for a pushed copy (a lazy link) before asking. Returns whether
    /// to ask `peer` for it now (it does not wait, and no one was asked yet).
    pub(crate) fn announced(&mut self, peer: &P, tag: u64, wait: bool, now: Millis) -> bool {
        if self
            .by_peer
            .get(peer)
            .is_some_and(|mine| mine.contains(&tag) || mine.len() >= MAX_PENDING_PER_PEER)
        {
            return false;
        }
        let at = now.saturating_add(self.graft_timeout);
        let pending = self.pending.entry(tag).or_insert_with(|| Pending {
            announcers: Vec::new(),
            asked: Vec::new(),
            stage: Stage::Waiting,
            at,
        });
        if pending.announcers.len() >= MAX_ANNOUNCERS {
            return false;
        }
        self.by_peer.entry(peer.clone()).or_default().insert(tag);
        pending.announcers.push(peer.clone());
        let new = pending.announcers.len() == 1;
        if !new {
            self.timers.remove(&(pending.at, tag));
        }
        let ask = !wait && pending.stage == Stage::Waiting;
        if ask {
            // Over an eager link: asked at once, of this peer.
            pending.stage = Stage::AskedOne;
            pending.asked.push(peer.clone());
            pending.at = now.saturating_add(self.want_timeout);
        }
        self.timers.insert((pending.at, tag));
        ask
    }

    /// The next tag timer.
    pub(crate) fn next_timer(&self) -> Option<Millis> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The tags whose timer has come: what to ask of whom, and who lapsed. `rank` orders
    /// announcers, best first.
    pub(crate) fn due<R: Ord>(&mut self, now: Millis, rank: impl Fn(&P) -> R) -> Due<P> {
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
            let next = now.saturating_add(self.want_timeout);
            match p.stage {
                Stage::Waiting => {
                    // The best, the earliest among equals (announcers are in arrival order).
                    let best = p
                        .announcers
                        .iter()
                        .enumerate()
                        .min_by_key(|(i, a)| (rank(a), *i))
                        .map(|(_, a)| a.clone());
                    if let Some(best) = best {
                        due.asks.entry(best.clone()).or_default().push(tag);
                        p.asked.push(best);
                    }
                    p.stage = Stage::AskedOne;
                }
                Stage::AskedOne => {
                    due.lapsed.extend(p.asked.iter().cloned());
                    // Every other announcer; the one asked again if there is no other.
                    let others = p.announcers.iter().any(|a| !p.asked.contains(a));
                    for a in &p.announcers {
                        if !others || !p.asked.contains(a) {
                            due.asks.entry(a.clone()).or_default().push(tag);
                            if !p.asked.contains(a) {
                                p.asked.push(a.clone());
                            }
                        }
                    }
                    p.stage = Stage::AskedAll;
                }
                Stage::AskedAll => {
                    self.drop_pending(tag);
                    continue;
                }
            }
            p.at = next;
            self.timers.insert((next, tag));
        }
        due.lapsed.sort();
        due.lapsed.dedup();
        due
    }

    /// Whether `tag` is pending (announced, not yet accepted).
    #[cfg(test)]
    pub(crate) fn is_pending(&self, tag: u64) -> bool {
        self.pending.contains_key(&tag)
    }

    fn drop_pending(&mut self, tag: u64) -> Option<Pending<P>> {
        let pending = self.pending.remove(&tag)?;
        for a in &pending.announcers {
            if let Some(mine) = self.by_peer.get_mut(a) {
                mine.remove(&tag);
                if mine.is_empty() {
                    self.by_peer.remove(a);
                }
            }
        }
        Some(pending)
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
                assert!(self.pending[tag].announcers.contains(peer));
            }
            counted += tags.len();
        }
        let announced: usize = self.pending.values().map(|p| p.announcers.len()).sum();
        assert_eq!(counted, announced, "every announcer counted once");
        for p in self.pending.values() {
            assert!(!p.announcers.is_empty() && p.announcers.len() <= MAX_ANNOUNCERS);
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
    fn a_pending_tag_waits_then_asks_one_then_all_then_goes() {
        let mut t: Tags<u8> = Tags::new(100, 1_000);
        let tag = id(5).tag();
        t.announced(&1, tag, true, 0);
        t.announced(&2, tag, true, 10);
        t.announced(&3, tag, true, 20);
        t.check_invariants();
        assert_eq!(t.next_timer(), Some(100));
        // Peer 2 ranks best.
        let due = t.due(100, |p| *p != 2);
        assert_eq!(
            due.asks.into_iter().collect::<Vec<_>>(),
            vec![(2, vec![tag])]
        );
        assert!(due.lapsed.is_empty());
        let due = t.due(1_100, |p| *p != 2);
        assert_eq!(due.lapsed, vec![2]);
        assert_eq!(due.asks.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        let due = t.due(2_100, |_| 0);
        assert!(due.asks.is_empty());
        assert!(!t.is_pending(tag));
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
        assert_eq!(t.encode(&1, &id(5).author, &one), Some(vec![tag]));
        assert_eq!(t.encode(&2, &id(5).author, &one), None, "not a reader");
        let other = crate::ranges::RangeSet::from_range(5, 6);
        assert_eq!(
            t.encode(&1, &id(5).author, &other),
            None,
            "6 is not indexed"
        );
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
        t.disconnected(&1);
        assert!(t.pending.is_empty() && t.timers.is_empty());
        t.check_invariants();
    }
}
