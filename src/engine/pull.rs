//! The have/want exchange, as the engine routes it: what a `have` draws (an answer to a
//! complete digest, wants after announcements), how a `want` is answered, and *when* an
//! unanswered want is retried or moved. *Whom* a want goes to is `wants.rs`'s rule; how often
//! a complete digest is answered is `resync.rs`'s; whether announcements wait for a pushed
//! copy is `tree.rs`'s.
//!
//! Bounds, all here:
//! - a complete digest after the peer's first frame (a resync: after a dropped digest, or
//!   when the peer's side stopped and resumed gossip on the connection) that the resync
//!   budget answers replaces what the peer is believed to have;
//! - a `want` is answered with at most one frame ([`FrameBudget::answer`]), and never with
//!   an envelope already sent on this connection (unless a frame to the peer was dropped): a
//!   peer draws at most what it lacks;
//! - wants are re-sent at once only after a frame full of asked, new envelopes
//!   ([`FrameBudget::is_full_answer`]: a large catch-up, paced one frame per round trip), so a
//!   peer that answers with one small envelope at a time cannot make this node repeat its
//!   wants per envelope; re-sending never moves a deadline;
//! - at a want's deadline it stays with its peer only if a frame's worth of that author's
//!   asked envelopes arrived since; otherwise the peer gets a strike (one per deadline batch),
//!   is marked as tried for the ids, and they go at once to other peers known to have them
//!   (`wants.rs`); what no one else has is asked of the same peer again with a doubled
//!   timeout, until `max_want_attempts`, then given up (a later announcement or digest asks
//!   again);
//! - after a pull's first round of turns (`wants.rs`), a peer whose track record says it
//!   failed is given 2^r `want_timeout`s in round r, at most [`MAX_FAILED_TIMEOUTS`]
//!   ([`Engine::reroute`]), so ids that only liars claim cost k wants per ever longer round,
//!   not one per timeout for as long as the liars stay; an announcer that answers
//!   (`record.rs`) takes the ids from a failed peer past the first `want_timeout` of its
//!   longer time that has not delivered a frame's worth of them, as many ranges as it has
//!   room for (`hurry_overdue`), so an announcing honest peer is not kept waiting on it more
//!   than one `want_timeout`; new ids joining such a wait, and a wait whose want frame was
//!   dropped, get one `want_timeout`;
//! - announced ids beyond a peer's want budget wait in its backlog (`wants.rs`) and are asked
//!   as room frees up.

use super::authors::Introducer;
use super::ids::{IdSets, Ids};
use super::knowledge::worth_knowing;
use super::record::Standing;
use super::wants::{Asks, Want};
use super::{Engine, Millis, millis};
use crate::envelope::MessageId;
use crate::frame::{Digest, FrameBudget, envelope_len};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;

/// The longest a failed peer is given to answer a rerouted want after the first round of
/// turns, in `want_timeout`s ([`Engine::reroute`]'s backoff): once the rounds are that long,
/// a liar's made-up ids cost one want per 16 s.
pub(crate) const MAX_FAILED_TIMEOUTS: Millis = 16;

/// The most ids of one author a lazy peer's announcement may leave missing at the graft
/// timer for its peer to be grafted (`graft_due`): a tree repair is a few messages that the
/// eager links did not bring; more is a catch-up (pulled by wants) or a claim of everything.
pub(crate) const MAX_REPAIR_IDS: u64 = 64;

impl<P: Clone + Ord> Engine<P> {
    /// A `have` from `peer`. Its ids are recorded as known there (for tracked or pulled
    /// authors). A complete one, if the resync budget allows, is answered with what the peer
    /// lacks; otherwise the announced ids this node lacks are wanted.
    pub(super) fn on_have(&mut self, peer: &P, have: Vec<Digest>, complete: bool, now: Millis) {
        let answer = complete && self.resyncs.allow(peer, now);
        if answer && self.rounds.is_synced(peer) {
            // A resync: the peer says all it has. What it was believed to have is replaced by
            // that, so what it lacks is what it says it lacks (frames it sent that this side
            // never read, or that never reached it, are not taken as known any more). Only a
            // resync within the budget does this: a peer that repeats complete digests
            // cannot wipe the record of what it was sent, and draw it all again by `want`.
            self.beliefs.reset_has(peer);
        }
        if answer {
            self.stats.resyncs += 1;
        } else if complete {
            self.stats.resyncs_limited += 1;
        }
        // Whatever it announces that this node lacks is wanted, complete or not: the peer's
        // own answer to this node's digest may be lost, split or rate-limited.
        self.want_announced(peer, &have, now);
        if answer {
            self.answer_complete(peer);
        }
    }

    /// Wants the announced ids this node lacks and has asked no one for, within `peer`'s
    /// want budget (the rest waits in its backlog), or, over a lazy link, defers them for the
    /// graft timer (`tree.rs`). Either way they are recorded as known there.
    fn want_announced(&mut self, peer: &P, have: &[Digest], now: Millis) {
        let defer = self.tree.defers(peer);
        for d in have {
            if defer {
                self.defer_announced(peer, &d.author, &d.ranges, now);
                self.record_announced(peer, &d.author, &d.ranges);
            } else {
                self.want_from(peer, &d.author, &d.ranges, now);
            }
        }
    }

    /// Keeps ids `peer` announced for the graft timer: those of an author this node accepts,
    /// that it does not know yet.
    fn defer_announced(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet, now: Millis) {
        if !self.filter.permits(author) {
            return;
        }
        let ids = self.authors.unknown(author, ids);
        if !ids.is_empty() {
            // Ids wanted of others are taken for it at the graft timer (`want_from`), if
            // they are still missing and it may take them then.
            self.tree.defer(peer, author, &ids, now);
        }
    }

    /// The graft timer: deferred announcements whose time has come. What is still missing
    /// is wanted from its announcer, and the announcer is grafted (`tree.rs`).
    pub(super) fn graft_due(&mut self, now: Millis) {
        for (peer, deferred) in self.tree.due_grafts(now) {
            let mut missing = None;
            // The authors whose messages no push brought: one of them (an author this node
            // already held messages of first: a flood of new authors cannot take the place of
            // one whose messages are withheld) is asked for whatever the link's role (author
            // links, `tree.rs`), of a peer that did not fail. One: liars, which announce
            // everything and are grafted for it until their wants lapse, cost 34 bytes an
            // author each time (eight cost honest nodes among liars 11 % more bytes, one 1-5 %;
            // the censored publisher's messages need one).
            // (new author, id): the first with `false` is asked for.
            let mut ask: Option<(bool, MessageId)> = None;
            for (author, ids) in deferred {
                let unknown = self.authors.unknown(&author, &ids);
                let Some((first, _)) = unknown.ranges().next() else {
                    continue;
                };
                if unknown.len() > MAX_REPAIR_IDS {
                    // More than a tree repair: a catch-up, or a liar's `[1, u64::MAX]`.
                    // Wanted, not grafted: grafting it would make the link eager, and push
                    // every new message to a peer that claims to hold everything.
                    self.want_from(&peer, &author, &unknown, now);
                    continue;
                }
                let id = MessageId {
                    author,
                    sequence: first,
                };
                missing.get_or_insert(id);
                let new = !self.authors.is_tracked(&author);
                if ask.is_none_or(|(was_new, _)| was_new && !new) {
                    ask = Some((new, id));
                }
                self.want_from(&peer, &author, &unknown, now);
            }
            if let Some(missing) = missing {
                let ask = ask
                    .map(|(_, id)| id)
                    .filter(|_| self.records.standing(&peer) != Standing::Failed);
                let asked = self.batcher.graft(&peer, ask.as_ref().map(|id| &id.author));
                let asked = ask.filter(|_| asked);
                self.tree.grafted(&peer, &missing, asked.as_ref(), now);
                self.stats.grafts += 1;
            }
        }
    }

    /// A `have_tags` from `peer` (`tags.rs`): a tag the index resolves is an announcement of
    /// its id, as in a `have`; the others are kept pending, and asked for at the tag timer
    /// (after `graft_timeout` with the tree on), or of `peer` at once without the tree.
    pub(super) fn on_have_tags(&mut self, peer: &P, tags: &[u64], now: Millis) {
        if tags.is_empty() {
            return;
        }
        // With the tree on, a tag waits for a pushed copy over any link: an eager peer that
        // announces instead of pushing holds the link lazy (asking at once, on the benchmark
        // tree of one author, doubled the duplicates: RMR 0.095 -> 0.216).
        let defer = self.tree.is_on();
        let mut known: IdSets = IdSets::new();
        let mut ask = Vec::new();
        // Each tag once, however often the frame repeats it.
        let mut tags = tags.to_vec();
        tags.sort_unstable();
        tags.dedup();
        for tag in tags {
            match self.tags.resolve(tag) {
                Some(id) => {
                    known.entry(id.author).or_default().insert(id.sequence);
                }
                None => {
                    if self.tags.announced(peer, tag, defer, now) {
                        ask.push(tag);
                    }
                }
            }
        }
        if !ask.is_empty() {
            self.batcher.want_tags(peer, &ask);
        }
        for (author, ids) in known {
            // Accepted lately, so known here: the peer has them.
            self.record_announced(peer, &author, &ids);
        }
    }

    /// A frame's `want` with its `want_tags` added, as the ids the index resolves them to (a
    /// tag it does not resolve is ignored, as an id not held): one want, answered with one
    /// frame.
    pub(super) fn with_tag_wants(&self, mut want: Vec<Digest>, tags: &[u64]) -> Vec<Digest> {
        if tags.is_empty() {
            return want;
        }
        let mut ids: IdSets = IdSets::new();
        for d in want.drain(..) {
            ids.entry(d.author).or_default().union_with(&d.ranges);
        }
        for id in tags.iter().filter_map(|t| self.tags.resolve(*t)) {
            ids.entry(id.author).or_default().insert(id.sequence);
        }
        ids.into_iter()
            .map(|(author, ranges)| Digest { author, ranges })
            .collect()
    }

    /// The tag timer (`tags.rs`): tags still pending are asked of the announcer it names,
    /// which is grafted over a lazy link as for an announced id (`graft_due`); a peer that
    /// let one lapse has failed, as for a want.
    pub(super) fn tags_due(&mut self, now: Millis) {
        let (records, congestion) = (&self.records, &self.congestion);
        // Congested peers last: what is asked of them is not answered until they drain.
        let rank = |p: &P| (congestion.is_congested(p), records.standing(p));
        // As many as one answer frame holds at the largest payload.
        let largest = self.config.max_payload_size + crate::config::ENVELOPE_OVERHEAD;
        let per_peer = (self.config.max_frame_size / largest.max(1)).max(1);
        let due = self.tags.due(now, rank, per_peer);
        for peer in due.lapsed {
            self.wants.strike(&peer);
            self.records.failed(&peer, now);
        }
        for (peer, tags) in due.asks {
            if !self.beliefs.contains(&peer) {
                continue;
            }
            self.batcher.want_tags(&peer, &tags);
            if self.tree.defers(&peer) {
                self.batcher.graft(&peer, None);
                self.tree.grafted_tag(&peer, tags[0], None, now);
                self.stats.grafts += 1;
            }
        }
    }

    /// `peer` announced `ids` of `author`: they are known there, if the author is one this
    /// node keeps knowledge of.
    fn record_announced(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet) {
        if worth_knowing(&self.filter, &self.authors, &self.wants, author) {
            self.beliefs.learn(peer, author, ids);
        }
    }

    /// Asks `peer` for the ids of `ids` (which it announced) this node lacks, wants of no
    /// one, and did not refuse from `peer`, within its budget; keeps the rest in its backlog.
    /// Returns whether it asked for anything.
    ///
    /// Then, if the author is now tracked or pulled, `peer` is recorded as having all of
    /// `ids`, also those wanted of another peer: if that want fails (a peer that forges or
    /// never answers), it moves to `peer` (an announcement that waited for the graft timer
    /// while the author was unknown was not recorded when it came).
    pub(super) fn want_from(
        &mut self,
        peer: &P,
        author: &PublicKey,
        ids: &RangeSet,
        now: Millis,
    ) -> bool {
        let asked = self.ask_announced(peer, author, ids, now);
        self.record_announced(peer, author, ids);
        asked
    }

    fn ask_announced(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet, now: Millis) -> bool {
        self.authors.sweep(self.wall(now));
        if !self.filter.permits(author)
            || !self
                .authors
                .can_admit(author, &Introducer::Peer(peer.clone()), self.wall(now))
        {
            return false;
        }
        let mut missing = self.authors.unknown(author, ids);
        if let Some(pending) = self.validations.ids(author) {
            missing = missing.difference(pending);
        }
        let mut carried = None;
        if self.wants.wants_author(author) {
            carried = self.hurry_overdue(peer, author, &missing, now);
            missing = missing.difference(&self.wants.wanted_within(author, &missing));
        }
        let Some(state) = self.beliefs.get(peer) else {
            return false;
        };
        if let Some(refused) = state.refused.get(author) {
            missing = missing.difference(refused);
        }
        if missing.is_empty() {
            return false;
        }
        let room = self.wants.room(peer);
        let mut later = missing.clone();
        missing.forget_lowest(room);
        later = later.difference(&missing);
        if !later.is_empty() {
            self.wants.add_backlog(peer, author, &later);
        }
        if missing.is_empty() {
            return false;
        }
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        let (since, round) = carried.map_or((now, 0), |(since, round)| (since.min(now), round));
        let asked = self.wants.ask(peer, author, &missing, deadline, since);
        self.wants.raise_round(peer, author, round);
        if !asked.is_empty() {
            // New ids joining a failed peer's longer wait get one `want_timeout`, as any.
            self.wants.shorten_deadline(peer, author, deadline);
        }
        self.batcher.want(peer, author, &asked);
        !asked.is_empty()
    }

    /// `announcer` announced `ids` of `author`, wanted of others already: those asked of a
    /// peer that has missed a deadline for them are taken back from it (its deadline,
    /// attempts and progress stay as they were, and it gets no strike), so the caller asks
    /// the announcer for them, instead of waiting for the doubled timeout of a peer that may
    /// never answer. A want on its first attempt keeps its ids (at most one `want_timeout`;
    /// the announcer is known to have them by then, and the deadline moves them to it),
    /// unless the announcer is proven and the holder is not. A failed holder given the longer
    /// time of a later round (`reroute`) that has not delivered a frame's worth of them, with
    /// an announcer that answers (`record.rs`), gives them up once its first `want_timeout`
    /// is over: at once if it is, else its deadline comes then. Only as many ranges are taken
    /// as the announcer has room for (the rest stays, so nothing leaves the turns for a
    /// backlog the announcer could overfill). The ids keep their pull's start and round of
    /// turns: returned, for the caller's ask.
    fn hurry_overdue(
        &mut self,
        announcer: &P,
        author: &PublicKey,
        ids: &RangeSet,
        now: Millis,
    ) -> Option<(Millis, u32)> {
        let mut carried: Option<(Millis, u32)> = None;
        let mut room = self.wants.room(announcer);
        for holder in self.wants.holders_within(author, ids) {
            if holder == *announcer || room == 0 {
                continue;
            }
            let Some(want) = self.wants.want(&holder, author) else {
                continue;
            };
            // A proven announcer takes the ids from a holder that is not proven at once, and
            // an announcer that answers from a failed holder waiting out the longer time
            // `reroute` gave it that has delivered nothing of them, past its first
            // `want_timeout` (if its answer is on the way, it still counts: the tried mark
            // below); otherwise only a holder that already missed a deadline for them gives
            // them up.
            let proven = |p: &P| self.records.standing(p) == Standing::Proven;
            let outranks = proven(announcer) && !proven(&holder);
            let (count, bytes) = want.progress;
            let waiting = want.stealable_at.filter(|_| {
                !self.is_full_answer(count, bytes) && self.records.answers(announcer, now)
            });
            if !outranks
                && let Some(at) = waiting
                && now < at
            {
                // Within its first `want_timeout`: its deadline comes then instead, and the
                // ids go on in turn (to the announcer, as it stands better).
                self.wants.shorten_deadline(&holder, author, at);
                continue;
            }
            if want.attempts <= 1 && !outranks && waiting.is_none() {
                continue;
            }
            let mut moved = want.ids.intersection(ids);
            moved.forget_lowest(room);
            if moved.is_empty() {
                continue;
            }
            room = room.saturating_sub(moved.range_count());
            let (deadline, attempts, since, progress, round, stealable_at) = (
                want.deadline,
                want.attempts,
                want.since,
                want.progress,
                want.round,
                want.stealable_at,
            );
            carried = Some(carried.map_or((since, round), |(s, r)| (s.min(since), r.max(round))));
            let Some(taken) = self.wants.take_author(&holder, author) else {
                continue;
            };
            // Its answer may be in flight: a copy from it is still an answer (a tried mark),
            // not an unasked push that would prune its link.
            let moved_ids = IdSets::from([(*author, moved.clone())]);
            self.wants.mark_tried(&holder, &moved_ids, &IdSets::new());
            // The rest goes back to the holder as it was, within its budget (taking ids out
            // may split a range); what does not fit waits in its backlog.
            let rest = taken.ids.difference(&moved);
            let mut keep = rest.clone();
            keep.forget_lowest(self.wants.room(&holder));
            let later = rest.difference(&keep);
            self.wants.ask(&holder, author, &keep, deadline, since);
            self.wants
                .restore(&holder, author, (attempts, progress, round, stealable_at));
            if !later.is_empty() {
                self.wants.add_backlog(&holder, author, &later);
            }
            self.stats.wants_hurried += 1;
        }
        carried
    }

    /// `peer` delivered a message this node lacked (`record.rs`). If that made it proven,
    /// it claims the wants it can answer.
    pub(super) fn useful(&mut self, peer: &P, now: Millis) {
        let was_proven = self.records.standing(peer) == Standing::Proven;
        self.records.useful(peer, now);
        if !was_proven && self.records.standing(peer) == Standing::Proven {
            self.claim_wants(peer, now);
        }
    }

    /// `peer` has just become proven (`record.rs`): the ids it is believed to have that are
    /// wanted of peers that are not proven are taken from them and asked of it, within its
    /// budget (`hurry_overdue`, through `want_from`).
    fn claim_wants(&mut self, peer: &P, now: Millis) {
        let Some(state) = self.beliefs.get(peer) else {
            return;
        };
        let claims: Vec<(PublicKey, RangeSet)> = self
            .wants
            .wanted_authors()
            .filter_map(|author| Some((*author, state.has.get(author)?.clone())))
            .collect();
        for (author, ids) in claims {
            self.want_from(peer, &author, &ids, now);
        }
    }

    /// Asks `peer` for what waits in its backlog, as far as its want budget allows.
    pub(super) fn top_up(&mut self, peer: &P, now: Millis) {
        if self.wants.room(peer) == 0 {
            return;
        }
        for (author, ids) in self.wants.take_backlog(peer) {
            self.want_from(peer, &author, &ids, now);
        }
    }

    /// Answers a complete digest: what the peer lacks is pushed (eager mode; up to half a
    /// frame, [`FrameBudget::catch_up`], the rest announced so the peer pulls it at its own
    /// pace) or queued for the next round's announcement.
    fn answer_complete(&mut self, peer: &P) {
        let limits = self.beliefs.limits();
        let eager = self.config.eager_push && !self.congestion.is_congested(peer);
        let mut budget = FrameBudget::catch_up(&self.config.frame_limits());
        let Some(state) = self.beliefs.get_mut(peer) else {
            return;
        };
        let authors: Vec<PublicKey> = self.store.authors_holding().copied().collect();
        for author in authors {
            let Some(held) = self.store.held(&author) else {
                continue;
            };
            let mut lacking = state.has.lacking(&author, held);
            if lacking.is_empty() {
                continue;
            }
            if eager {
                let mut sent = RangeSet::new();
                for envelope in self.store.held_in(&author, &lacking) {
                    if !budget.take(envelope_len(envelope)) {
                        break;
                    }
                    sent.insert(envelope.sequence());
                    self.batcher.message(peer, envelope.clone());
                }
                state.has.learn(&author, &sent, limits);
                lacking = lacking.difference(&sent);
                if !lacking.is_empty() {
                    self.batcher.have(peer, &author, &lacking);
                }
            } else {
                self.rounds
                    .queue(peer, &author, Ids::Ranges(&lacking), &self.store);
            }
        }
    }

    /// A `want` from `peer`: answered with the held envelopes it names that were not sent to
    /// it before, up to one frame (the peer asks again for the rest when this frame arrives).
    /// Not answered while the peer's queue is congested, nor for an author its knowledge
    /// cannot record (what is sent must be remembered as sent).
    pub(super) fn on_want(&mut self, peer: &P, want: Vec<Digest>) {
        let limits = self.beliefs.limits();
        let congested = self.congestion.is_congested(peer);
        let Some(state) = self.beliefs.get_mut(peer) else {
            return;
        };
        if congested {
            // Nothing is sent that would be dropped again; what it asked for is announced
            // once its queue drains, and it asks again.
            for d in want {
                if let Some(held) = self.store.held(&d.author) {
                    let lacking = state.has.lacking(&d.author, &d.ranges.intersection(held));
                    self.rounds
                        .queue(peer, &d.author, Ids::Ranges(&lacking), &self.store);
                }
            }
            return;
        }
        let mut budget = FrameBudget::answer(&self.config.frame_limits());
        'digests: for d in want {
            if !state.has.can_record(&d.author, limits) {
                continue;
            }
            let lacking = state.has.lacking(&d.author, &d.ranges);
            let mut sent = RangeSet::new();
            for envelope in self.store.held_in(&d.author, &lacking) {
                if !budget.take(envelope_len(envelope)) {
                    state.has.learn(&d.author, &sent, limits);
                    break 'digests;
                }
                sent.insert(envelope.sequence());
                self.batcher.message(peer, envelope.clone());
            }
            state.has.learn(&d.author, &sent, limits);
        }
    }

    /// `peer` just delivered a full frame of what it was asked for, of `authors`: ask at once
    /// for the rest of those authors' ids (a want is answered with at most one frame, so
    /// this paces a large catch-up). Deadlines do not move: that is the deadline's rule.
    pub(super) fn ask_rest(&mut self, peer: &P, authors: &[PublicKey]) {
        for author in authors {
            let Some(want) = self.wants.want(peer, author) else {
                continue;
            };
            let rest = self.authors.unknown(author, &want.ids);
            if !rest.is_empty() {
                self.batcher.want(peer, author, &rest);
            }
        }
    }

    /// Asks `peer` for `ids` (taken back from it), within its budget, as attempt `attempts`
    /// of a pull that began at `since` and is in round `round`.
    fn ask_again(
        &mut self,
        peer: &P,
        ids: IdSets,
        deadline: Millis,
        attempts: u32,
        (since, round): (Millis, u32),
    ) {
        for (author, mut ids) in ids {
            ids.forget_lowest(self.wants.room(peer));
            let asked = self.wants.ask(peer, &author, &ids, deadline, since);
            if !asked.is_empty() {
                self.wants.rearm(peer, &author, deadline, attempts);
                self.wants.raise_round(peer, &author, round);
                self.batcher.want(peer, &author, &asked);
            }
        }
    }

    /// `ids` without those `peer` sent unverified before.
    fn not_refused_by(&self, peer: &P, ids: IdSets) -> IdSets {
        let Some(state) = self.beliefs.get(peer) else {
            return IdSets::new();
        };
        ids.into_iter()
            .filter_map(|(author, ids)| {
                let ids = match state.refused.get(&author) {
                    Some(refused) => ids.difference(refused),
                    None => ids,
                };
                (!ids.is_empty()).then_some((author, ids))
            })
            .collect()
    }

    /// `ids` without those that became known meanwhile.
    fn still_wanted(&self, ids: IdSets) -> IdSets {
        ids.into_iter()
            .filter_map(|(author, ids)| {
                let ids = self.authors.unknown(&author, &ids);
                (!ids.is_empty()).then_some((author, ids))
            })
            .collect()
    }

    /// The want timer: wants whose deadline passed. One that made a frame's worth of
    /// progress since stays with its peer, with a new deadline. Otherwise the peer gets a
    /// strike (one per batch), the ids go to other peers (`wants.rs` says whom), and what
    /// no one else has is asked of the same peer again with a doubled timeout, until
    /// `max_want_attempts`, then given up.
    pub(super) fn retry_wants(&mut self, now: Millis) {
        let timeout = millis(self.config.want_timeout);
        let (mut touched, mut probed) = (Vec::new(), Vec::new());
        // A probe that went unanswered: not probed again for a while, nothing more
        // (`record.rs`).
        for peer in self.wants.lapsed_probes(now) {
            self.records.probe_lapsed(&peer, now);
        }
        for (peer, author) in self.wants.due(now) {
            let Some(want) = self.wants.want(&peer, &author) else {
                continue;
            };
            let (count, bytes) = want.progress;
            if self.is_full_answer(count, bytes) {
                self.wants
                    .rearm(&peer, &author, now.saturating_add(timeout), 1);
                continue;
            }
            // One batch of deadlines of a peer: one strike, and one burst of probes.
            if !touched.contains(&peer) {
                self.wants.strike(&peer);
                self.records.failed(&peer, now);
                touched.push(peer.clone());
            }
            let Some(want) = self.wants.take_author(&peer, &author) else {
                continue;
            };
            let ids = self.still_wanted(IdSets::from([(author, want.ids)]));
            let (rest, probes) = self.reroute(
                ids.clone(),
                &peer,
                now,
                (want.since, want.round),
                !probed.contains(&peer),
            );
            if probes {
                probed.push(peer.clone());
            }
            self.wants.mark_tried(&peer, &ids, &rest);
            if want.attempts >= self.config.max_want_attempts {
                self.abandon(rest);
                continue;
            }
            let backoff = timeout.saturating_mul(1 << want.attempts.min(16));
            let rest = self.not_refused_by(&peer, rest);
            let deadline = now.saturating_add(backoff);
            let pull = (want.since, want.round);
            self.ask_again(&peer, rest, deadline, want.attempts + 1, pull);
        }
        for peer in touched {
            self.top_up(&peer, now);
            self.report_caught_up(&peer);
        }
    }

    /// Asks `ids` (taken back from `failed`; their pull began at `since`) of the peers the
    /// want turns name (`wants.rs`), each for what it is believed to have and did not refuse,
    /// with probes of others if `may_hedge` (`wants.rs`'s hedges). Returns what no other peer
    /// could take, and whether probes went out.
    fn reroute(
        &mut self,
        ids: IdSets,
        failed: &P,
        now: Millis,
        (since, round): (Millis, u32),
        may_hedge: bool,
    ) -> (IdSets, bool) {
        let timeout = millis(self.config.want_timeout);
        let (beliefs, records) = (&self.beliefs, &self.records);
        let offers = |peer: &P, author: &PublicKey, ids: &RangeSet| {
            beliefs
                .get(peer)
                .map_or_else(RangeSet::new, |k| k.offers(author, ids))
        };
        let standing = |peer: &P| records.standing(peer);
        // In the first round of turns every peer is given one `want_timeout`, so an honest
        // peer after k liars is asked within about k of them (fewer with the probes). In
        // round r after it, a failed peer is given 2^r of them (at most
        // `MAX_FAILED_TIMEOUTS`): ids that only peers which let wants lapse claim (liars'
        // made-up ids) cost k wants per round, the rounds ever longer, not one want per
        // `want_timeout` for as long as the liars stay; and any announcer takes the ids from
        // a failed peer waiting out its longer time (`hurry_overdue`).
        let deadline = |peer: &P, round: u32| {
            let failed = round > 0 && records.standing(peer) == Standing::Failed;
            let times = if failed {
                (1 << round.min(16)).min(MAX_FAILED_TIMEOUTS)
            } else {
                1
            };
            let stealable_at = failed.then(|| now.saturating_add(timeout));
            (
                now.saturating_add(timeout.saturating_mul(times)),
                stealable_at,
            )
        };
        let (asks, rest): (Asks<P>, IdSets) =
            self.wants
                .reroute(failed, ids, (since, round), deadline, offers, standing);
        // Hedged once per pull, at its first reroute (the next comes a `want_timeout` later at
        // the earliest): ids only liars claim (an author's future ids) would otherwise draw a
        // burst of probes at every timeout, for ever. And once per batch of deadlines or per
        // departure of the failed peer (`may_hedge`), not once per author.
        let mut hedged =
            !may_hedge || now.saturating_sub(since) >= 2 * millis(self.config.want_timeout);
        let mut probed = false;
        for (peer, author, ids) in asks {
            self.batcher.want(&peer, &author, &ids);
            if hedged || standing(&peer) == Standing::Proven {
                continue;
            }
            // The first ask to a peer that is not proven is hedged: probes of others that
            // have the ids (`wants.rs`).
            hedged = true;
            let rank = |p: &P| records.answers(p, now).then(|| records.standing(p));
            let hedges = self.wants.hedge_candidates(
                failed,
                &peer,
                &author,
                &ids,
                offers,
                rank,
                now.saturating_add(timeout),
            );
            for (hedge, probe) in hedges {
                self.batcher.want(&hedge, &author, &probe);
                self.stats.wants_hedged += 1;
                probed = true;
            }
        }
        (rest, probed)
    }

    /// Wants given up on. Knowledge kept only because an author was being pulled goes too.
    fn abandon(&mut self, ids: IdSets) {
        for author in ids.keys() {
            if worth_knowing(&self.filter, &self.authors, &self.wants, author) {
                continue;
            }
            self.beliefs.forget_author(author);
            self.wants.forget_tried(author);
        }
    }

    /// Wants that `from` will not answer (it left, or sent an id unverified): they go to
    /// other peers; what no one else has is given up.
    pub(super) fn move_wants(&mut self, wants: Vec<(PublicKey, Want)>, from: &P, now: Millis) {
        // One burst of probes per departure.
        let mut may_probe = true;
        for (author, want) in wants {
            let ids = self.still_wanted(IdSets::from([(author, want.ids)]));
            let (rest, probes) = self.reroute(ids, from, now, (want.since, want.round), may_probe);
            may_probe &= !probes;
            self.abandon(rest);
        }
    }
}
