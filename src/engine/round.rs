//! Rounds (lazy push): what a node announces to each peer, when, and why an idle network
//! sends nothing. [`Rounds`] owns the round timer ([`Timer::Round`](super::Timer::Round)),
//! each peer's queue of ids to announce, and whether the peer's first frame has come.
//!
//! Rules, all here:
//! - a round runs every `gossip_interval` (none without one) while some peer has ids queued;
//!   the next is one interval after the last timed one ([`Engine::gossip`] runs one by hand
//!   and leaves the timer as it is). With nothing queued the timer is not armed at all, so an
//!   idle node never wakes for a round. The cadence goes on meanwhile: a queue that fills
//!   after a pause has its round at the cadence's next point, as if every round had run (a
//!   round at once would announce each new message before its lazy announcement is due, so
//!   ahead of its pushed copy, and graft links for nothing). Lazy announcements (`tree.rs`)
//!   are rounds of the peers they are due for;
//! - each peer has a queue of ids accepted since its last round that it may lack. A round
//!   sends it a `have` of those it is not known to have and that are still held (by tag
//!   where `tags.rs` says so). Nothing
//!   new, nothing sent: the work is proportional to what is new;
//! - a peer whose first frame (its complete digest) has not arrived is skipped: the digest
//!   is on its way and would make the announcements redundant. The skipped round runs when
//!   that frame arrives ([`Sync::Awaiting`]). Its queue does not arm the timer meanwhile: a
//!   peer that never sends (a silent Sybil) never wakes the node;
//! - a queue that grows past `max_have_ranges_per_frame` (rounds stopped, or far apart) is
//!   cut down to what the node still holds, which the store bounds; the next cut waits until
//!   the queue has doubled, so cutting costs O(1) per id queued.
//!
//! [`Engine::gossip`]: super::Engine::gossip

use super::Millis;
use super::batch::Batcher;
use super::ids::{IdSets, Ids};
use super::knowledge::Knowledge;
use super::store::Store;
use super::tags::Tags;
use crate::keys::PublicKey;
use std::collections::BTreeMap;

/// Whether a peer's first frame has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sync {
    /// Not yet; `round_due` if a round skipped the peer meanwhile.
    Awaiting { round_due: bool },
    /// Its first frame came: rounds include it.
    Synced,
}

#[derive(Debug)]
struct PeerRound {
    sync: Sync,
    /// Ids to announce at the peer's next round.
    announce: IdSets,
    ranges: usize,
    /// The size at which the queue is next cut down to what is held.
    cut_at: usize,
}

#[derive(Debug)]
pub(crate) struct Rounds<P> {
    peers: BTreeMap<P, PeerRound>,
    /// Peers whose first frame came with ids queued: the timer is armed only while there are
    /// some.
    queued: usize,
    /// The latest time the engine has passed in ([`Rounds::seen`]).
    clock: Millis,
    interval: Option<Millis>,
    next_round: Option<Millis>,
    /// Queue size (ranges) below which it is never cut.
    max_ranges: usize,
}

impl<P: Clone + Ord> Rounds<P> {
    /// Rounds every `interval` from `now`; queues cut at `max_ranges`.
    pub(crate) fn new(interval: Option<Millis>, max_ranges: usize, now: Millis) -> Self {
        let mut rounds = Rounds {
            peers: BTreeMap::new(),
            queued: 0,
            clock: now,
            interval: None,
            next_round: None,
            max_ranges,
        };
        rounds.set_interval(interval, now);
        rounds
    }

    /// Changes the interval; the next round is one interval from `now` (none without one).
    pub(crate) fn set_interval(&mut self, interval: Option<Millis>, now: Millis) {
        self.interval = interval;
        self.schedule(now);
    }

    fn schedule(&mut self, now: Millis) {
        self.seen(now);
        self.next_round = self.interval.map(|i| now.saturating_add(i));
    }

    /// The engine's time is `now` (called with every input and command).
    pub(crate) fn seen(&mut self, now: Millis) {
        self.clock = self.clock.max(now);
    }

    /// The latest time the engine was passed (for inputs that carry none).
    pub(crate) fn clock(&self) -> Millis {
        self.clock
    }

    /// When the next round is due: never while nothing is queued.
    pub(crate) fn next_round(&self) -> Option<Millis> {
        self.next_round.filter(|_| self.queued > 0)
    }

    /// A round runs at `now` (the timer fired): the next is scheduled.
    pub(crate) fn ran(&mut self, now: Millis) {
        self.schedule(now);
    }

    /// Counts a peer's queue in or out of [`Rounds::queued`] as it became non-empty or empty
    /// (`before`, `after`: its range count). When the first queue fills, the timer (unarmed
    /// meanwhile) moves on to the cadence's next point.
    fn track(&mut self, before: usize, after: usize) {
        match (before > 0, after > 0) {
            (false, true) => {
                self.queued += 1;
                if self.queued == 1 {
                    self.catch_up();
                }
            }
            (true, false) => self.queued -= 1,
            _ => {}
        }
    }

    /// Moves a next round already past to the first point of its cadence not before now.
    fn catch_up(&mut self) {
        if let (Some(next), Some(interval)) = (self.next_round, self.interval)
            && next < self.clock
        {
            let late = self.clock - next;
            let steps = late.div_ceil(interval.max(1));
            self.next_round = Some(next.saturating_add(steps.saturating_mul(interval.max(1))));
        }
    }

    /// A connection to `peer` is up: its first frame is awaited, nothing is queued.
    pub(crate) fn connected(&mut self, peer: &P) {
        self.disconnected(peer);
        self.peers.insert(
            peer.clone(),
            PeerRound {
                sync: Sync::Awaiting { round_due: false },
                announce: IdSets::new(),
                ranges: 0,
                cut_at: 0,
            },
        );
    }

    pub(crate) fn disconnected(&mut self, peer: &P) {
        if let Some(state) = self.peers.remove(peer)
            && state.sync == Sync::Synced
        {
            self.track(state.ranges, 0);
        }
    }

    /// Whether `peer`'s first frame has come.
    pub(crate) fn is_synced(&self, peer: &P) -> bool {
        self.peers.get(peer).is_some_and(|s| s.sync == Sync::Synced)
    }

    /// `peer`'s first frame came. Returns whether a round skipped it meanwhile (run it now).
    pub(crate) fn first_frame(&mut self, peer: &P) -> bool {
        let Some(state) = self.peers.get_mut(peer) else {
            return false;
        };
        match std::mem::replace(&mut state.sync, Sync::Synced) {
            Sync::Awaiting { round_due } => {
                // Its queue counts from now on.
                let ranges = state.ranges;
                self.track(0, ranges);
                round_due
            }
            Sync::Synced => false,
        }
    }

    /// Queues `ids` of `author` for `peer`'s next round, cutting the queue down to what
    /// `store` holds when it has grown too large.
    pub(crate) fn queue<X: Clone + Ord>(
        &mut self,
        peer: &P,
        author: &PublicKey,
        ids: Ids<'_>,
        store: &Store<X>,
    ) {
        let max = self.max_ranges;
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let before = state.ranges;
        let set = state.announce.entry(*author).or_default();
        state.ranges -= set.range_count();
        match ids {
            Ids::One(sequence) => {
                set.insert(sequence);
            }
            Ids::Ranges(ranges) => set.union_with(ranges),
        }
        state.ranges += set.range_count();
        if state.ranges > state.cut_at.max(max) {
            state
                .announce
                .retain(|author, set| match store.held(author) {
                    Some(held) => {
                        *set = set.intersection(held);
                        !set.is_empty()
                    }
                    None => false,
                });
            state.ranges = state.announce.values().map(|s| s.range_count()).sum();
            state.cut_at = state.ranges.saturating_mul(2);
        }
        let after = state.ranges;
        if state.sync == Sync::Synced {
            self.track(before, after);
        }
    }

    /// `peer`'s round: a `have` (into `batcher`) of the queued ids it is not known to have
    /// (`has`) that `store` still holds; the queue is emptied. If its first frame has not
    /// come, nothing is sent and the round is remembered.
    pub(crate) fn run(
        &mut self,
        peer: &P,
        store: &Store<P>,
        has: &Knowledge,
        tags: &Tags<P>,
        batcher: &mut Batcher<P>,
    ) {
        let Some(queued) = self.take_round(peer) else {
            return;
        };
        let mut tag_room = super::tags::MAX_TAGS_PER_ROUND;
        for (author, ids) in queued {
            let Some(held) = store.held(&author) else {
                continue;
            };
            let lacking = has.lacking(&author, &ids.intersection(held));
            if lacking.is_empty() {
                continue;
            }
            // By tag where the peer reads them and the ids are recent (`tags.rs`).
            match tags.encode(peer, &author, &lacking, &mut tag_room) {
                Some(tags) => batcher.have_tags(peer, &tags),
                None => batcher.have(peer, &author, &lacking),
            }
        }
    }

    fn take_round(&mut self, peer: &P) -> Option<IdSets> {
        let state = self.peers.get_mut(peer)?;
        if let Sync::Awaiting { round_due } = &mut state.sync {
            *round_due = true;
            return None;
        }
        let before = std::mem::replace(&mut state.ranges, 0);
        let queued = std::mem::take(&mut state.announce);
        self.track(before, 0);
        Some(queued)
    }

    /// `author` is forgotten: nothing of it is announced.
    pub(crate) fn forget_author(&mut self, author: &PublicKey) {
        let mut emptied = 0;
        for state in self.peers.values_mut() {
            if let Some(set) = state.announce.remove(author) {
                let before = state.ranges;
                state.ranges -= set.range_count();
                let synced = state.sync == Sync::Synced;
                emptied += usize::from(synced && before > 0 && state.ranges == 0);
            }
        }
        self.queued -= emptied;
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        for state in self.peers.values() {
            let ranges: usize = state.announce.values().map(|s| s.range_count()).sum();
            assert_eq!(ranges, state.ranges, "announce range count");
        }
        let queued = self
            .peers
            .values()
            .filter(|s| s.ranges > 0 && s.sync == Sync::Synced)
            .count();
        assert_eq!(queued, self.queued, "synced peers with ids queued");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn a_round_before_the_first_frame_is_kept_for_it() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let store = Store::<u8>::new(super::super::store::Retention {
            max_age_ms: 1_000,
            max_bytes: 1 << 20,
            max_messages: 100,
            max_ranges: 64,
        });
        let mut r = Rounds::<u8>::new(Some(100), 16, 0);
        r.connected(&1);
        r.queue(&1, &author, Ids::One(7), &store);
        assert_eq!(
            r.next_round(),
            None,
            "a peer that has not sent its first frame does not arm the timer"
        );
        // (step, result)
        assert_eq!(r.take_round(&1), None, "awaiting the first frame");
        assert!(r.first_frame(&1), "the skipped round is due");
        assert!(
            r.next_round().is_some(),
            "its queue counts from its first frame"
        );
        assert!(!r.first_frame(&1), "once");
        let queued = r.take_round(&1).expect("synced");
        assert_eq!(queued[&author].to_wire(), vec![7, 7]);
        assert_eq!(r.take_round(&1), Some(IdSets::new()), "nothing new");
        r.check_invariants();
    }

    #[test]
    fn the_round_timer_follows_the_interval() {
        // (interval, now, next round)
        let table = [
            (Some(100), 0, Some(100)),
            (Some(5), 40, Some(45)),
            (None, 50, None),
        ];
        let store = Store::<u8>::new(super::super::store::Retention {
            max_age_ms: 1_000,
            max_bytes: 1 << 20,
            max_messages: 100,
            max_ranges: 64,
        });
        let author = Keypair::from_seed(&[1; 32]).public();
        let mut r = Rounds::<u8>::new(Some(100), 16, 0);
        assert_eq!(r.next_round(), None, "nothing queued: no timer");
        r.connected(&1);
        r.first_frame(&1);
        r.queue(&1, &author, Ids::One(7), &store);
        for (i, (interval, now, next)) in table.into_iter().enumerate() {
            r.set_interval(interval, now);
            assert_eq!(r.next_round(), next, "row {i}");
        }
        r.set_interval(Some(10), 0);
        r.ran(25);
        assert_eq!(r.next_round(), Some(35));
        r.first_frame(&1);
        assert!(r.take_round(&1).is_some());
        assert_eq!(r.next_round(), None, "emptied: no timer");
        // Idle from 35 to 1,000: a queue that fills then waits for the cadence (…, 1,005),
        // not a round at once.
        r.seen(1_000);
        r.queue(&1, &author, Ids::One(8), &store);
        assert_eq!(r.next_round(), Some(1_005));
        r.check_invariants();
    }
}
