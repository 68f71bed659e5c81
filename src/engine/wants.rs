//! Outstanding wants: which ids this node has asked for, of whom, until when, and whom a
//! want goes to next ("want turns").
//!
//! Rules, all here:
//! - every wanted id is asked of exactly one peer at a time, so a message is never pulled
//!   twice at once, and finding who an arriving id was asked of is O(log n);
//! - one peer has at most `max_want_ranges_per_frame` ranges outstanding (one frame's worth);
//!   an id arriving from inside a range splits it only within that budget. Announced ids
//!   beyond a peer's budget wait in its *backlog* (at most `max_ranges_per_peer` ranges) and
//!   are asked as room frees up;
//! - each (peer, author) want has its own deadline, and counts the asked envelopes of that
//!   author newly accepted since. At the deadline only a frame's worth of such progress keeps
//!   the want with the peer (`pull.rs` decides *when* a want moves), so a peer that answers
//!   other wants, or trickles this one, cannot keep it pending;
//! - a want that times out without progress gives its peer a *strike* (one per batch of
//!   deadlines; one is forgiven each time the last id asked of a peer arrives, from whichever
//!   peer), and the peer is marked as *tried* for the ids that went elsewhere;
//! - whom a want goes to ([`Wants::reroute`]): the connected peers that are believed to have
//!   the ids and did not refuse them, in this order: first those not yet tried for them, then
//!   (every such peer having had its turn, the marks cleared) the others; within each pass
//!   connections older than the pull first (alike), then younger ones oldest first, each by
//!   fewest strikes, then in turn after the peer the want left. So k peers that announce ids
//!   and never answer delay them by at most k want timeouts before an honest peer that has
//!   them is asked, whatever their strikes: a liar that reconnects (or a fresh identity) is a
//!   connection younger than the pull and than every honest peer already connected, asked
//!   after them.
//!
//! - *hedges*: when a want that timed out goes to a peer that is not proven (`record.rs`),
//!   up to [`MAX_HEDGES`] other peers that offer its ids, answer (not failed, no probe
//!   lapsed lately: `record.rs`), have no probe outstanding and were not tried for them are
//!   each asked for one of them, the highest they offer (the likeliest still held there): a
//!   probe ([`Wants::hedge_candidates`]). They are marked as tried for that id (so its
//!   answer is an answer, not an unasked push: `receive.rs`), and the ids stay wanted of the
//!   one peer. A probe is answered only by the probed peer's copy of that id (new here or a
//!   duplicate, [`Wants::probe_answered`]); one unanswered within `want_timeout` lapses
//!   ([`Wants::lapsed_probes`], on the want timer; one whose frame was dropped is
//!   cancelled), and its peer is not probed for a minute, nor takes ids from a failed
//!   peer's longer wait meanwhile (`record.rs`); its standing does not change, since a
//!   probe can go unanswered for reasons that are not the peer's. So a liar is probed once
//!   a minute, not once per pull (in the simulator's liar scenario, probes were most of what
//!   honest nodes sent liars). A new envelope in answer to a probe proves its sender, and a
//!   peer that becomes proven takes at once the
//!   ids it has that are wanted of peers that are not (`pull.rs`). So k liars that came
//!   before an honest peer that has not yet delivered anything delay a pull by about one
//!   `want_timeout` per `MAX_HEDGES + 1` of them, not one each. A pull is hedged once, at
//!   its first reroute (ids that only liars claim, such as an author's future ids, keep
//!   timing out at one liar after another: they draw no more probes). The extra cost is one
//!   small want and one envelope per peer probed, once per pull;
//! - *rounds*: each want carries its pull's round of turns (0 until every peer that has the
//!   ids had its turn, then 1, and so on). In round r a failed peer is given 2^r
//!   `want_timeout`s, at most 16 (`pull.rs` decides), so ids that only liars claim cost k
//!   wants per ever longer round. The round is carried wherever the ids go (reroutes, ids
//!   taken back, merged wants keep the higher);
//! - an id another peer announces while it is wanted of a peer that has already missed a
//!   deadline for it, or of a failed peer given a later round's longer time that has not
//!   delivered a frame's worth of it since (the announcer answering: `record.rs`), is taken
//!   back from that peer and asked of the announcer, as many ranges as the announcer has
//!   room for (`pull.rs`; the rest of that want keeps its deadline, attempts, progress and
//!   round; a failed peer in its first `want_timeout` keeps the ids until then), so however
//!   long a peer keeps announcing ids and not answering, a pull waits at most one
//!   `want_timeout` after a peer that answers announced the ids.
//!
//! Bounds per connected peer: `max_want_ranges_per_frame` wanted ranges, and
//! `max_ranges_per_peer` ranges each of backlog and tried marks (marks only for authors the
//! node tracks or pulls, as the engine's knowledge of peers).

use super::Millis;
use super::ids::{IdSets, RangeQueue};
use super::knowledge::{Knowledge, KnowledgeLimits};
use super::record::Standing;
use crate::envelope::MessageId;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

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
    /// that connected later are asked for them last ([`Wants::reroute`]).
    pub(crate) since: Millis,
    /// The round of turns of the pull these ids are in (0: the first; each time every peer
    /// that has them has had its turn, the next).
    pub(crate) round: u32,
    /// Asked of a failed peer past the first round, with the longer time `pull.rs` gives
    /// it: from then on (one `want_timeout` after it was asked), an announcer that answers
    /// takes the ids from it while it has delivered nothing.
    pub(crate) stealable_at: Option<Millis>,
}

/// What is asked of one peer, and its record in the want turns.
#[derive(Debug)]
struct Asked {
    wants: BTreeMap<PublicKey, Want>,
    ranges: usize,
    /// Timeouts with ids still outstanding, less one per complete delivery.
    strikes: u32,
    /// When the connection came up.
    connected_at: Millis,
    /// Ids wanted of the peer whose want failed and went to another peer: it is not asked
    /// for them again until every peer known to have them has had its turn.
    tried: Knowledge,
    /// Ids the peer announced that this node lacks, beyond its want budget.
    backlog: RangeQueue,
    catch_up: CatchUp,
    /// The hedge probe outstanding ([`Wants::hedge_candidates`]): the id, and when it lapses.
    probe: Option<(MessageId, Millis)>,
}

/// How far this node is in catching up with a peer's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CatchUp {
    /// No complete digest of the peer's has been handled (a digest too large for one frame
    /// comes as incomplete ones: then none is).
    AwaitingDigest,
    /// It was: wants of what it announced may be outstanding.
    Pulling,
    /// Nothing asked of it was outstanding after its digest (reported once).
    Done,
}

/// Whom a want was asked of, by [`Wants::reroute`]: the frames to send.
pub(crate) type Asks<P> = Vec<(P, PublicKey, RangeSet)>;

/// Most peers a rerouted want is hedged to at once (each costs one want frame).
pub(crate) const MAX_HEDGES: usize = 16;

#[derive(Debug)]
pub(crate) struct Wants<P> {
    /// author → start → (end, peer asked): disjoint intervals, each within the asked peer's
    /// own ranges.
    by_id: BTreeMap<PublicKey, BTreeMap<u64, (u64, P)>>,
    peers: BTreeMap<P, Asked>,
    /// `(deadline, peer, author)` of every want.
    deadlines: BTreeSet<(Millis, P, PublicKey)>,
    /// `(deadline, peer)` of every outstanding probe.
    probes: BTreeSet<(Millis, P)>,
    /// Ranges outstanding, over all peers.
    total: usize,
    max_ranges: usize,
    /// Bounds of tried marks and backlogs.
    limits: KnowledgeLimits,
}

impl<P: Clone + Ord> Wants<P> {
    /// At most `max_ranges` wanted per peer; tried marks and backlogs within `limits`.
    pub(crate) fn new(max_ranges: usize, limits: KnowledgeLimits) -> Self {
        Wants {
            by_id: BTreeMap::new(),
            peers: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            probes: BTreeSet::new(),
            total: 0,
            max_ranges,
            limits,
        }
    }

    /// A connection to `peer` came up at `now`: nothing asked, no strikes, no marks.
    pub(crate) fn add_peer(&mut self, peer: &P, now: Millis) {
        self.peers.entry(peer.clone()).or_insert(Asked {
            wants: BTreeMap::new(),
            ranges: 0,
            strikes: 0,
            connected_at: now,
            tried: Knowledge::default(),
            backlog: RangeQueue::default(),
            catch_up: CatchUp::AwaitingDigest,
            probe: None,
        });
    }

    /// Forgets `peer`; returns what was asked of it.
    pub(crate) fn remove_peer(&mut self, peer: &P) -> Vec<(PublicKey, Want)> {
        self.take_probe(peer);
        let ids = self.take(peer);
        self.peers.remove(peer);
        ids
    }

    /// The probe outstanding of `peer`, if any, taken (it no longer lapses).
    pub(crate) fn take_probe(&mut self, peer: &P) -> Option<MessageId> {
        let (id, deadline) = self.peers.get_mut(peer)?.probe.take()?;
        self.probes.remove(&(deadline, peer.clone()));
        Some(id)
    }

    /// `peer` delivered `id` (new to this node or not): if it was probed for it, the probe
    /// is answered.
    pub(crate) fn probe_answered(&mut self, peer: &P, id: &MessageId) {
        if self.is_probed(peer, id) {
            self.take_probe(peer);
        }
    }

    /// Whether `peer` has a probe of `id` outstanding.
    pub(crate) fn is_probed(&self, peer: &P, id: &MessageId) -> bool {
        self.peers
            .get(peer)
            .and_then(|a| a.probe)
            .is_some_and(|(probed, _)| probed == *id)
    }

    /// A frame to `peer` with `wants` was dropped before it left: a probe among them is
    /// forgotten (it never reached the peer), and a failed peer's longer wait for an author
    /// among them is due at `deadline` instead (its want never reached it either).
    pub(crate) fn wants_dropped(
        &mut self,
        peer: &P,
        wants: &[crate::frame::Digest],
        deadline: Millis,
    ) {
        let probed = self.peers.get(peer).and_then(|a| a.probe);
        if let Some((id, _)) = probed
            && wants
                .iter()
                .any(|d| d.author == id.author && d.ranges.contains(id.sequence))
        {
            self.take_probe(peer);
        }
        for digest in wants {
            // Never later than it is (a take-back may have brought it forward already).
            let waiting = self
                .want(peer, &digest.author)
                .filter(|w| w.stealable_at.is_some())
                .map(|w| w.deadline.min(deadline));
            if let Some(at) = waiting
                && let Some(want) = self.set_deadline(peer, &digest.author, at)
            {
                want.stealable_at = None;
            }
        }
    }

    /// The peers whose probe lapsed by `now` unanswered (taken).
    pub(crate) fn lapsed_probes(&mut self, now: Millis) -> Vec<P> {
        let mut lapsed = Vec::new();
        while self.probes.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, peer)) = self.probes.pop_first() else {
                break;
            };
            if let Some(asked) = self.peers.get_mut(&peer) {
                asked.probe = None;
            }
            lapsed.push(peer);
        }
        lapsed
    }

    /// `peer`'s want of `author`.
    pub(crate) fn want(&self, peer: &P, author: &PublicKey) -> Option<&Want> {
        self.peers.get(peer)?.wants.get(author)
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

    /// Whether `peer` was asked for `sequence` of `author` and it went elsewhere or was a
    /// probe (a tried mark): a copy from it then answers this node, it is no unasked push.
    pub(crate) fn was_tried(&self, peer: &P, author: &PublicKey, sequence: u64) -> bool {
        self.peers
            .get(peer)
            .and_then(|a| a.tried.get(author))
            .is_some_and(|ids| ids.contains(sequence))
    }

    /// The authors with ids wanted.
    pub(crate) fn wanted_authors(&self) -> impl Iterator<Item = &PublicKey> {
        self.by_id.keys()
    }

    /// Whether any id of `author` is wanted.
    pub(crate) fn wants_author(&self, author: &PublicKey) -> bool {
        self.by_id.contains_key(author)
    }

    /// The wanted intervals of `author` that may overlap `ranges` (those within its span),
    /// with the peer each is asked of.
    fn wanted_near<'a>(
        &'a self,
        author: &PublicKey,
        ranges: &RangeSet,
    ) -> impl Iterator<Item = (u64, u64, &'a P)> + 'a {
        let span = self
            .by_id
            .get(author)
            .zip(ranges.ranges().next().zip(ranges.last()));
        span.into_iter().flat_map(|(map, ((first, _), last))| {
            // From the interval starting at or before the span's start.
            let from = map.range(..=first).next_back().map_or(first, |(s, _)| *s);
            map.range(from..=last).map(|(&s, (e, p))| (s, *e, p))
        })
    }

    /// The ids of `ranges` (of `author`) asked of anyone.
    pub(crate) fn wanted_within(&self, author: &PublicKey, ranges: &RangeSet) -> RangeSet {
        let mut set = RangeSet::new();
        for (s, e, _) in self.wanted_near(author, ranges) {
            set.insert_range(s, e);
        }
        set
    }

    /// The peers that `ranges` (of `author`) are asked of, each once.
    pub(crate) fn holders_within(&self, author: &PublicKey, ranges: &RangeSet) -> Vec<P> {
        let mut holders: Vec<P> = Vec::new();
        // Ends of `ranges`, for an overlap test by binary search.
        let spans: Vec<(u64, u64)> = ranges.ranges().collect();
        for (s, e, peer) in self.wanted_near(author, ranges) {
            let i = spans.partition_point(|&(_, end)| end < s);
            let overlaps = spans.get(i).is_some_and(|&(start, _)| start <= e);
            if overlaps && !holders.contains(peer) {
                holders.push(peer.clone());
            }
        }
        holders
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
                round: 0,
                stealable_at: None,
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

    /// Puts back the attempt count and progress of `peer`'s want of `author` (after some of
    /// its ids were taken out: the rest keeps its standing).
    pub(crate) fn restore(
        &mut self,
        peer: &P,
        author: &PublicKey,
        (attempts, progress, round, stealable_at): (u32, (usize, usize), u32, Option<Millis>),
    ) {
        if let Some(want) = self
            .peers
            .get_mut(peer)
            .and_then(|a| a.wants.get_mut(author))
        {
            want.attempts = attempts;
            want.progress = progress;
            want.round = round;
            want.stealable_at = stealable_at;
        }
    }

    /// `peer`'s want of `author` is due at `at` if that is sooner than its deadline.
    pub(crate) fn shorten_deadline(&mut self, peer: &P, author: &PublicKey, at: Millis) {
        if self.want(peer, author).is_some_and(|w| at < w.deadline) {
            self.set_deadline(peer, author, at);
        }
    }

    /// Moves `peer`'s want of `author` to `deadline` (its index entry too); returns it.
    fn set_deadline(
        &mut self,
        peer: &P,
        author: &PublicKey,
        deadline: Millis,
    ) -> Option<&mut Want> {
        let want = self
            .peers
            .get_mut(peer)
            .and_then(|a| a.wants.get_mut(author))?;
        self.deadlines
            .remove(&(want.deadline, peer.clone(), *author));
        want.deadline = deadline;
        self.deadlines.insert((deadline, peer.clone(), *author));
        Some(want)
    }

    /// The ids of `peer`'s want of `author` are in round `round` of their pull, at least.
    pub(crate) fn raise_round(&mut self, peer: &P, author: &PublicKey, round: u32) {
        if let Some(want) = self
            .peers
            .get_mut(peer)
            .and_then(|a| a.wants.get_mut(author))
        {
            want.round = want.round.max(round);
        }
    }

    /// Sets the deadline and attempt count of `peer`'s want of `author`.
    pub(crate) fn rearm(&mut self, peer: &P, author: &PublicKey, deadline: Millis, attempts: u32) {
        if let Some(want) = self.set_deadline(peer, author, deadline) {
            want.attempts = attempts;
            want.progress = (0, 0);
            want.stealable_at = None;
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

    /// The earliest deadline, of a want or a probe.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        let want = self.deadlines.first().map(|(t, _, _)| *t);
        let probe = self.probes.first().map(|(t, _)| *t);
        want.into_iter().chain(probe).min()
    }

    /// How many connected peers are kept.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A complete digest of `peer`'s was handled: what it announced is wanted (or known) by
    /// now.
    pub(crate) fn digest_handled(&mut self, peer: &P) {
        if let Some(asked) = self.peers.get_mut(peer)
            && asked.catch_up == CatchUp::AwaitingDigest
        {
            asked.catch_up = CatchUp::Pulling;
        }
    }

    /// Whether this node has just caught up with `peer`: a complete digest of its was handled,
    /// and nothing is asked of it or waits in its backlog (ids wanted of another peer, or
    /// given up on, are not waited for). True once per connection.
    pub(crate) fn caught_up(&mut self, peer: &P) -> bool {
        match self.peers.get_mut(peer) {
            Some(asked)
                if asked.catch_up == CatchUp::Pulling
                    && asked.wants.is_empty()
                    && asked.backlog.is_empty() =>
            {
                asked.catch_up = CatchUp::Done;
                true
            }
            _ => false,
        }
    }

    /// Keeps announced ids of `author` to ask of `peer` when there is room.
    pub(crate) fn add_backlog(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet) {
        let max = self.limits.per_peer;
        if let Some(asked) = self.peers.get_mut(peer) {
            asked.backlog.add(author, ids, max);
        }
    }

    /// Takes `peer`'s backlog.
    pub(crate) fn take_backlog(&mut self, peer: &P) -> IdSets {
        self.peers
            .get_mut(peer)
            .map(|a| a.backlog.take())
            .unwrap_or_default()
    }

    /// `failed` did not answer for `ids`, and those not in `rest` went to other peers: it is
    /// not asked for them again before every other peer known to have them had its turn.
    pub(crate) fn mark_tried(&mut self, failed: &P, ids: &IdSets, rest: &IdSets) {
        let limits = self.limits;
        let Some(asked) = self.peers.get_mut(failed) else {
            return;
        };
        for (author, ids) in ids {
            let moved = match rest.get(author) {
                Some(kept) => ids.difference(kept),
                None => ids.clone(),
            };
            if !moved.is_empty() {
                asked.tried.learn(author, &moved, limits);
            }
        }
    }

    /// Forgets the tried marks of `author` (it is no longer tracked or pulled).
    pub(crate) fn forget_tried(&mut self, author: &PublicKey) {
        for asked in self.peers.values_mut() {
            asked.tried.remove_author(author);
        }
    }

    /// Forgets the tried marks and backlogs of `author` (its wants stay).
    pub(crate) fn forget_author(&mut self, author: &PublicKey) {
        for asked in self.peers.values_mut() {
            asked.tried.remove_author(author);
            asked.backlog.remove_author(author);
        }
    }

    /// Asks `ids` (taken back from `failed`; their pull began at `since` and is in round of
    /// turns `round`) of the other connected peers, in the order of the module's rules, each
    /// within its want budget, with the deadline `deadline(peer, round)` gives it, and
    /// whether that is a failed peer's longer time (`pull.rs` decides). `offers(peer,
    /// author, ids)` says which of `ids` a peer is believed to have and did not refuse.
    /// Returns whom it asked for what (to send), and what no other peer could take.
    pub(crate) fn reroute(
        &mut self,
        failed: &P,
        ids: IdSets,
        (since, round): (Millis, u32),
        deadline: impl Fn(&P, u32) -> (Millis, Option<Millis>),
        offers: impl Fn(&P, &PublicKey, &RangeSet) -> RangeSet,
        standing: impl Fn(&P) -> Standing,
    ) -> (Asks<P>, IdSets) {
        let mut asks = Vec::new();
        if ids.is_empty() {
            return (asks, ids);
        }
        let candidates = self.turn_order(failed, since, standing);
        let mut rest = IdSets::new();
        for (author, mut ids) in ids {
            self.ask_in_turn(
                &candidates,
                &author,
                &mut ids,
                true,
                &offers,
                (&deadline, since, round),
                &mut asks,
            );
            if !ids.is_empty() {
                // Every peer that has these ids has had its turn: a new round of turns.
                for candidate in &candidates {
                    if let Some(asked) = self.peers.get_mut(candidate) {
                        asked.tried.forget(&author, &ids);
                    }
                }
                self.ask_in_turn(
                    &candidates,
                    &author,
                    &mut ids,
                    false,
                    &offers,
                    (&deadline, since, round.saturating_add(1)),
                    &mut asks,
                );
            }
            if !ids.is_empty() {
                rest.insert(author, ids);
            }
        }
        (asks, rest)
    }

    /// Whom ids of `author` just asked of `asked` (leaving `failed`) are hedged to, with the
    /// one id each is asked for (the highest it offers: the likeliest still held there): at
    /// most [`MAX_HEDGES`] other peers that offer some, have no probe outstanding, were not
    /// tried for them and may be probed (`rank` gives their standing, `None` if not: a failed
    /// peer, one whose probe lapsed lately), best standing first. They are marked as tried
    /// for that id, and their probe lapses at `deadline` ([`Wants::lapsed_probes`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hedge_candidates(
        &mut self,
        failed: &P,
        asked: &P,
        author: &PublicKey,
        ids: &RangeSet,
        offers: impl Fn(&P, &PublicKey, &RangeSet) -> RangeSet,
        rank: impl Fn(&P) -> Option<Standing>,
        deadline: Millis,
    ) -> Vec<(P, RangeSet)> {
        let mut hedges: Vec<(Standing, P, RangeSet)> = Vec::new();
        for (peer, state) in &self.peers {
            if peer == failed || peer == asked || state.probe.is_some() {
                continue;
            }
            let Some(standing) = rank(peer) else {
                continue;
            };
            let mut take = offers(peer, author, ids);
            if let Some(tried) = state.tried.get(author) {
                take = take.difference(tried);
            }
            if let Some(last) = take.last() {
                hedges.push((standing, peer.clone(), RangeSet::from_range(last, last)));
            }
        }
        hedges.sort_by_key(|h| h.0);
        hedges.truncate(MAX_HEDGES);
        let limits = self.limits;
        hedges
            .into_iter()
            .map(|(_, peer, take)| {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.tried.learn(author, &take, limits);
                    if let Some((sequence, _)) = take.ranges().next() {
                        let id = MessageId {
                            author: *author,
                            sequence,
                        };
                        state.probe = Some((id, deadline));
                        self.probes.insert((deadline, peer.clone()));
                    }
                }
                (peer, take)
            })
            .collect()
    }

    /// The peers a want leaving `failed` (pulled since `since`) may go to, in turn order:
    /// those with room, by standing (`record.rs`: proven, unknown, failed), then connections
    /// older than the pull alike, younger ones by age, each by fewest strikes, then in turn
    /// after `failed`.
    fn turn_order(&self, failed: &P, since: Millis, standing: impl Fn(&P) -> Standing) -> Vec<P> {
        let mut candidates: Vec<P> = self
            .peers
            .range((Bound::Excluded(failed), Bound::Unbounded))
            .chain(self.peers.range(..failed.clone()))
            .filter(|(p, _)| self.room(p) > 0)
            .map(|(p, _)| p.clone())
            .collect();
        candidates.sort_by_cached_key(|p| {
            let asked = &self.peers[p];
            (standing(p), asked.connected_at.max(since), asked.strikes)
        });
        candidates
    }

    /// Asks `candidates`, in order, for what of `ids` each offers (less, if `untried_only`,
    /// what it was tried for), within its want budget; what they take leaves `ids`.
    #[allow(clippy::too_many_arguments)]
    fn ask_in_turn(
        &mut self,
        candidates: &[P],
        author: &PublicKey,
        ids: &mut RangeSet,
        untried_only: bool,
        offers: &impl Fn(&P, &PublicKey, &RangeSet) -> RangeSet,
        (deadline, since, round): (&impl Fn(&P, u32) -> (Millis, Option<Millis>), Millis, u32),
        asks: &mut Asks<P>,
    ) {
        for candidate in candidates {
            if ids.is_empty() {
                return;
            }
            let mut take = offers(candidate, author, ids);
            if untried_only && let Some(tried) = self.peers[candidate].tried.get(author) {
                take = take.difference(tried);
            }
            take.forget_lowest(self.room(candidate));
            if take.is_empty() {
                continue;
            }
            *ids = ids.difference(&take);
            let (deadline, stealable_at) = deadline(candidate, round);
            let asked = self.ask(candidate, author, &take, deadline, since);
            if let Some(want) = self
                .peers
                .get_mut(candidate)
                .and_then(|a| a.wants.get_mut(author))
            {
                want.round = want.round.max(round);
                if want.deadline == deadline {
                    // A want made just now (one that was there keeps its own time).
                    want.stealable_at = want.stealable_at.or(stealable_at);
                }
            }
            asks.push((candidate.clone(), *author, asked));
        }
    }

    /// Panics if the views of the wants disagree, or a bound is broken.
    #[cfg(any(test, feature = "test-utils"))]
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
            asked.tried.check_invariants(self.limits);
            asked.backlog.check_invariants(self.limits.per_peer);
            let ranges: usize = asked.wants.values().map(|w| w.ids.range_count()).sum();
            assert_eq!(ranges, asked.ranges, "range count");
            assert!(asked.ranges <= self.max_ranges, "want budget");
            for (author, want) in &asked.wants {
                assert!(!want.ids.is_empty());
                assert!(
                    want.stealable_at.is_none() || want.round > 0,
                    "a longer time only after the first round"
                );
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
        let probes: BTreeSet<(Millis, P)> = self
            .peers
            .iter()
            .filter_map(|(p, a)| a.probe.map(|(_, at)| (at, p.clone())))
            .collect();
        assert!(probes == self.probes, "probe index");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    const LIMITS: KnowledgeLimits = KnowledgeLimits {
        per_author: 64,
        per_peer: 256,
    };

    fn author() -> PublicKey {
        Keypair::from_seed(&[1; 32]).public()
    }

    fn ids(list: &[u64]) -> RangeSet {
        list.iter().copied().collect()
    }

    /// Peers `(name, connected at, strikes)`.
    fn wants(peers: &[(u8, Millis, u32)]) -> Wants<u8> {
        let mut w = Wants::new(4, LIMITS);
        for &(peer, at, strikes) in peers {
            w.add_peer(&peer, at);
            for _ in 0..strikes {
                w.strike(&peer);
            }
        }
        w
    }

    /// Whom a want leaving peer 0 (pulled since 1,000) meets, in turn: connections older
    /// than the pull alike by strikes, then ring order after the failed peer; younger ones by
    /// age, oldest first, whatever their strikes.
    #[test]
    fn the_turn_order_of_a_want_that_failed() {
        // (case, peers (name, connected at, strikes), expected order)
        type Case = (&'static str, &'static [(u8, Millis, u32)], &'static [u8]);
        let table: [Case; 5] = [
            (
                "older alike: fewest strikes first",
                &[(0, 0, 0), (1, 0, 2), (2, 0, 0), (3, 0, 1)],
                &[2, 3, 1],
            ),
            (
                "older alike: ties in turn after the failed peer",
                &[(0, 0, 0), (1, 0, 0), (2, 0, 0)],
                &[1, 2],
            ),
            (
                "a liar that reconnected comes after every older peer",
                &[(0, 0, 0), (1, 1_500, 0), (2, 0, 3)],
                &[2, 1],
            ),
            (
                "younger ones by age, whatever their strikes",
                &[(0, 0, 0), (1, 1_900, 0), (2, 1_200, 5), (3, 900, 9)],
                &[3, 2, 1],
            ),
            (
                "the same age: by strikes",
                &[(0, 0, 0), (1, 1_200, 2), (2, 1_200, 1)],
                &[2, 1],
            ),
        ];
        for (case, peers, expected) in table {
            let w = wants(peers);
            assert_eq!(
                w.turn_order(&0, 1_000, |_| Standing::Unknown),
                expected,
                "{case}"
            );
        }
    }

    /// Standing comes before age and strikes: a proven peer that connected after the pull
    /// began is asked before unknown older ones; a failed one after them all.
    #[test]
    fn turn_order_puts_proven_peers_first_and_failed_ones_last() {
        let w = wants(&[(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 1_900, 4), (4, 0, 0)]);
        let standing = |p: &u8| match p {
            3 => Standing::Proven,
            1 => Standing::Failed,
            _ => Standing::Unknown,
        };
        assert_eq!(w.turn_order(&0, 1_000, standing), vec![3, 2, 4, 1]);
    }

    /// `reroute`: peers that were tried for the ids wait until every peer that has them had
    /// its turn; a peer without room, or that does not offer the ids, is passed over.
    #[test]
    fn a_rerouted_want_goes_to_untried_peers_first_then_starts_a_new_round_of_turns() {
        let a = author();
        let wanted = ids(&[5, 6]);
        // (case, peers that offer the ids, peers tried for them, peers without room, asked)
        type Case = (
            &'static str,
            &'static [u8],
            &'static [u8],
            &'static [u8],
            Option<u8>,
        );
        let table: [Case; 5] = [
            (
                "the first in turn that has them",
                &[1, 2, 3],
                &[],
                &[],
                Some(1),
            ),
            ("a tried peer waits", &[1, 2, 3], &[1], &[], Some(2)),
            (
                "every one tried: a new round of turns",
                &[1, 2],
                &[1, 2],
                &[],
                Some(1),
            ),
            ("no room: passed over", &[1, 2], &[], &[1], Some(2)),
            ("no one else has them", &[], &[], &[], None),
        ];
        for (case, offering, tried, full, asked) in table {
            let mut w = wants(&[(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 0)]);
            for &peer in tried {
                let mut once = IdSets::new();
                once.insert(a, wanted.clone());
                w.mark_tried(&peer, &once, &IdSets::new());
            }
            for &peer in full {
                // Fill its budget with other ids.
                w.ask(&peer, &a, &ids(&[100, 102, 104, 106]), 9_999, 0);
            }
            let offers = |peer: &u8, _: &PublicKey, ids: &RangeSet| {
                if offering.contains(peer) {
                    ids.clone()
                } else {
                    RangeSet::new()
                }
            };
            let (asks, rest) = w.reroute(
                &0,
                IdSets::from([(a, wanted.clone())]),
                (1_000, 0),
                |_, _| (2_000, None),
                offers,
                |_| Standing::Unknown,
            );
            let got = asks
                .iter()
                .find(|(_, _, r)| !r.is_empty())
                .map(|(p, _, _)| *p);
            assert_eq!(got, asked, "{case}");
            assert_eq!(
                rest.is_empty(),
                asked.is_some(),
                "{case}: what no one took comes back"
            );
            w.check_invariants();
        }
    }

    /// Probes: one per peer at a time, answered only by the probed id, lapsing at their
    /// deadline (which the want timer covers), and gone with their peer.
    #[test]
    fn a_probe_is_answered_or_lapses() {
        let a = author();
        let mut w = wants(&[(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 0)]);
        let offers = |_: &u8, _: &PublicKey, ids: &RangeSet| ids.clone();
        let unknown = |_: &u8| Some(Standing::Unknown);
        let probes = w.hedge_candidates(&0, &1, &a, &ids(&[5, 6]), offers, unknown, 2_000);
        assert_eq!(probes, vec![(2, ids(&[6])), (3, ids(&[6]))]);
        assert_eq!(w.next_deadline(), Some(2_000));
        // A peer with a probe outstanding is not probed again.
        assert!(
            w.hedge_candidates(&0, &1, &a, &ids(&[6]), offers, unknown, 2_500)
                .is_empty()
        );
        let id = |sequence| MessageId {
            author: a,
            sequence,
        };
        w.probe_answered(&2, &id(5));
        w.probe_answered(&2, &id(6));
        assert_eq!(w.lapsed_probes(1_999), Vec::<u8>::new());
        assert_eq!(w.lapsed_probes(2_000), vec![3], "2 answered; 3 did not");
        assert_eq!(w.next_deadline(), None);
        w.check_invariants();
        let probes = w.hedge_candidates(&0, &1, &a, &ids(&[7]), offers, unknown, 3_000);
        assert_eq!(probes.len(), 2);
        w.remove_peer(&2);
        assert_eq!(w.take_probe(&3), Some(id(7)));
        assert_eq!(w.lapsed_probes(3_000), Vec::<u8>::new());
        w.check_invariants();
    }
}
