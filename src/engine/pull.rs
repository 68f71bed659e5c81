//! The have/want exchange: what a `have` draws (an answer to a complete digest, wants after
//! announcements), how a `want` is answered, and how unanswered wants are retried or moved.
//!
//! Bounds, all here:
//! - a complete digest is answered at most once per `min_resync_interval` per peer (the
//!   first always); a later one within it is read as announcements only;
//! - a `want` is answered with at most one frame, and never with an envelope already sent
//!   on this connection (unless a frame to the peer was dropped): a peer draws at most what
//!   it lacks;
//! - wants are re-sent at once only after a frame full of asked, new envelopes (a large
//!   catch-up, paced one frame per round trip), so a peer that answers with one small
//!   envelope at a time cannot make this node repeat its wants per envelope; re-sending never
//!   moves a deadline;
//! - at a want's deadline it stays with its peer only if a frame's worth of that author's
//!   asked envelopes arrived since; otherwise the peer gets a strike (one per deadline batch)
//!   and the ids go at once to other peers known to have them, fewest strikes first;
//! - announced ids beyond a peer's want budget wait in its backlog and are asked as room
//!   frees up.

use super::knowledge::worth_knowing;
use super::peer::Ids;
use super::wants::{IdSets, Want};
use super::{Engine, Millis, millis};
use crate::config::{Config, ENVELOPE_OVERHEAD};
use crate::frame::{Digest, envelope_len};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::ops::Bound;

/// Whether envelopes that were asked for and newly accepted, `count` of them in `bytes`,
/// fill a frame as an answer to a want does when the sender stopped for room: more of what
/// was asked may follow. Duplicates and unasked envelopes do not count.
pub(super) fn is_full_answer(count: usize, bytes: usize, config: &Config) -> bool {
    // The answerer keeps a little room for the frame's own fields.
    let largest = config.max_payload_size + ENVELOPE_OVERHEAD + 128;
    count > 0 && (count >= config.max_messages_per_frame || bytes + largest > config.max_frame_size)
}

impl<P: Clone + Ord> Engine<P> {
    /// A `have` from `peer`. Its ids are recorded as known there (for tracked or pulled
    /// authors). A complete one, if the resync budget allows, is answered with what the peer
    /// lacks; otherwise the announced ids this node lacks are wanted.
    pub(super) fn on_have(&mut self, peer: &P, have: Vec<Digest>, complete: bool, now: Millis) {
        let min_interval = millis(self.config.min_resync_interval);
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let answer = complete
            && state
                .last_resync
                .is_none_or(|t| now >= t.saturating_add(min_interval));
        if answer {
            state.last_resync = Some(now);
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
    /// want budget; the rest waits in the peer's backlog. Either way they are recorded as
    /// known there.
    fn want_announced(&mut self, peer: &P, have: &[Digest], now: Millis) {
        let defer = self.defers_announcements(peer);
        for d in have {
            if defer {
                self.defer_announced(peer, &d.author, d.ranges.clone(), now);
                self.record_announced(peer, &d.author, &d.ranges);
            } else {
                self.want_from(peer, &d.author, &d.ranges, now);
            }
        }
    }

    /// `peer` announced `ids` of `author`: they are known there, if the author is one this
    /// node keeps knowledge of.
    fn record_announced(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet) {
        if !worth_knowing(&self.filter, &self.authors, &self.wants, author) {
            return;
        }
        let limits = self.knowledge_limits();
        if let Some(state) = self.peers.get_mut(peer) {
            state.has.learn(author, ids, limits);
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
        if !self.filter.permits(author) || !self.authors.can_admit(author, &Some(peer.clone()), now)
        {
            return false;
        }
        let mut missing = ids.clone();
        if let Some(not_wanted) = self.authors.not_wanted(author) {
            missing = missing.difference(&not_wanted);
        }
        if let Some(pending) = self.pending.ids(author) {
            missing = missing.difference(pending);
        }
        if self.wants.wants_author(author) {
            missing = missing.difference(&self.wants.wanted_within(author, &missing));
        }
        let Some(state) = self.peers.get_mut(peer) else {
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
            state.add_backlog(author, &later, self.config.max_ranges_per_peer);
        }
        if missing.is_empty() {
            return false;
        }
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        let asked = self.wants.ask(peer, author, &missing, deadline, now);
        self.outbox.want(peer, author, &asked);
        !asked.is_empty()
    }

    /// Asks `peer` for what waits in its backlog, as far as its want budget allows.
    pub(super) fn top_up(&mut self, peer: &P, now: Millis) {
        if self.wants.room(peer) == 0 {
            return;
        }
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        for (author, ids) in state.take_backlog() {
            self.want_from(peer, &author, &ids, now);
        }
    }

    /// Answers a complete digest: what the peer lacks is pushed (eager mode; up to one frame,
    /// the rest announced so the peer pulls it at its own pace) or queued for the next
    /// round's announcement.
    fn answer_complete(&mut self, peer: &P) {
        let limits = self.knowledge_limits();
        let frame_limits = self.config.frame_limits();
        let eager = self.config.eager_push;
        let max_announce = self.config.max_have_ranges_per_frame;
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let eager = eager && !state.congested;
        let mut room = frame_limits.max_frame_size / 2;
        let mut count = frame_limits.max_messages;
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
                    let len = envelope_len(envelope);
                    if len > room || count == 0 {
                        break;
                    }
                    room -= len;
                    count -= 1;
                    sent.insert(envelope.sequence());
                    self.outbox.message(peer, envelope.clone());
                }
                state.has.learn(&author, &sent, limits);
                lacking = lacking.difference(&sent);
                if !lacking.is_empty() {
                    self.outbox.have(peer, &author, &lacking);
                }
            } else {
                state.queue_announce(&author, Ids::Ranges(&lacking), &self.store, max_announce);
            }
        }
    }

    /// A `want` from `peer`: answered with the held envelopes it names that were not sent to
    /// it before, up to one frame (the peer asks again for the rest when this frame arrives).
    /// Not answered while the peer's queue is congested, nor for an author its knowledge
    /// cannot record (what is sent must be remembered as sent).
    pub(super) fn on_want(&mut self, peer: &P, want: Vec<Digest>) {
        let limits = self.knowledge_limits();
        let frame_limits = self.config.frame_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.congested {
            // Nothing is sent that would be dropped again; what it asked for is announced
            // once its queue drains, and it asks again.
            let max_announce = self.config.max_have_ranges_per_frame;
            for d in want {
                if let Some(held) = self.store.held(&d.author) {
                    let lacking = state.has.lacking(&d.author, &d.ranges.intersection(held));
                    state.queue_announce(
                        &d.author,
                        Ids::Ranges(&lacking),
                        &self.store,
                        max_announce,
                    );
                }
            }
            return;
        }
        let mut room = frame_limits.max_frame_size.saturating_sub(64);
        let mut count = frame_limits.max_messages;
        'digests: for d in want {
            if !state.has.can_record(&d.author, limits) {
                continue;
            }
            let lacking = state.has.lacking(&d.author, &d.ranges);
            let mut sent = RangeSet::new();
            for envelope in self.store.held_in(&d.author, &lacking) {
                let len = envelope_len(envelope);
                if len > room || count == 0 {
                    state.has.learn(&d.author, &sent, limits);
                    break 'digests;
                }
                room -= len;
                count -= 1;
                sent.insert(envelope.sequence());
                self.outbox.message(peer, envelope.clone());
            }
            state.has.learn(&d.author, &sent, limits);
        }
    }

    /// `peer` just delivered a full frame of what it was asked for, of `authors`: ask at once
    /// for the rest of those authors' ids (a want is answered with at most one frame, so
    /// this paces a large catch-up). Deadlines do not move: that is the deadline's rule.
    pub(super) fn ask_rest(&mut self, peer: &P, authors: &[PublicKey]) {
        for author in authors {
            let Some(want) = self.wants.peer(peer).and_then(|a| a.wants().get(author)) else {
                continue;
            };
            let rest = self.still_wanted(IdSets::from([(*author, want.ids.clone())]));
            for (author, ids) in rest {
                self.outbox.want(peer, &author, &ids);
            }
        }
    }

    /// Asks `peer` for `ids` (taken back from it), within its budget, as attempt `attempts`.
    fn ask_again(&mut self, peer: &P, ids: IdSets, deadline: Millis, attempts: u32, since: Millis) {
        for (author, mut ids) in ids {
            ids.forget_lowest(self.wants.room(peer));
            let asked = self.wants.ask(peer, &author, &ids, deadline, since);
            if !asked.is_empty() {
                self.wants.rearm(peer, &author, deadline, attempts);
                self.outbox.want(peer, &author, &asked);
            }
        }
    }

    /// `ids` without those `peer` sent unverified before.
    fn not_refused_by(&self, peer: &P, ids: IdSets) -> IdSets {
        let Some(state) = self.peers.get(peer) else {
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
                let ids = match self.authors.not_wanted(&author) {
                    Some(known) => ids.difference(&known),
                    None => ids,
                };
                (!ids.is_empty()).then_some((author, ids))
            })
            .collect()
    }

    /// Wants whose deadline passed. One that made a frame's worth of progress since stays
    /// with its peer, with a new deadline. Otherwise the peer gets a strike (one per batch)
    /// and the ids are asked at once of other peers known to have them; what no one else has
    /// is asked of the same peer again with a doubled timeout, until `max_want_attempts`,
    /// then given up (a later announcement or digest asks again).
    pub(super) fn retry_wants(&mut self, now: Millis) {
        let timeout = millis(self.config.want_timeout);
        let mut touched = Vec::new();
        for (peer, author) in self.wants.due(now) {
            let Some(want) = self.wants.peer(&peer).and_then(|a| a.wants().get(&author)) else {
                continue;
            };
            let (count, bytes) = want.progress;
            if is_full_answer(count, bytes, &self.config) {
                self.wants
                    .rearm(&peer, &author, now.saturating_add(timeout), 1);
                continue;
            }
            if !touched.contains(&peer) {
                self.wants.strike(&peer);
                touched.push(peer.clone());
            }
            let Some(want) = self.wants.take_author(&peer, &author) else {
                continue;
            };
            let ids = self.still_wanted(IdSets::from([(author, want.ids)]));
            let rest = self.reroute(ids.clone(), &peer, now, want.since);
            self.mark_tried(&peer, &ids, &rest);
            if want.attempts >= self.config.max_want_attempts {
                self.abandon(rest);
                continue;
            }
            let backoff = timeout.saturating_mul(1 << want.attempts.min(16));
            let rest = self.not_refused_by(&peer, rest);
            let deadline = now.saturating_add(backoff);
            self.ask_again(&peer, rest, deadline, want.attempts + 1, want.since);
        }
        for peer in touched {
            self.top_up(&peer, now);
        }
    }

    /// `failed` did not answer for `ids`, and those not in `rest` went to other peers: it is
    /// not asked for them again before every other peer known to have them had its turn.
    fn mark_tried(&mut self, failed: &P, ids: &IdSets, rest: &IdSets) {
        let limits = self.knowledge_limits();
        let Some(state) = self.peers.get_mut(failed) else {
            return;
        };
        for (author, ids) in ids {
            let moved = match rest.get(author) {
                Some(kept) => ids.difference(kept),
                None => ids.clone(),
            };
            if !moved.is_empty() {
                state.tried.learn(author, &moved, limits);
            }
        }
    }

    /// Asks `ids` (taken back from `failed`; their pull began at `since`) of the connected
    /// peers known to have them, each within its want budget: first those that have not
    /// failed for them yet, connections older than the pull first, then younger ones oldest
    /// first, each by fewest strikes, then in turn after `failed`; if none of those can take them, every peer's turn
    /// is over (their marks for these ids are cleared) and the others are asked in the same
    /// order. Returns what no other peer could take.
    ///
    /// So k peers that announce ids and never answer delay them by at most k want timeouts
    /// before an honest peer that has them is asked, whatever their strikes: a liar that
    /// reconnects (or a fresh identity) is a connection younger than the pull and than every
    /// honest peer already connected, asked after them.
    pub(super) fn reroute(
        &mut self,
        ids: IdSets,
        failed: &P,
        now: Millis,
        since: Millis,
    ) -> IdSets {
        if ids.is_empty() {
            return ids;
        }
        let after = self
            .peers
            .range((Bound::Excluded(failed), Bound::Unbounded))
            .chain(self.peers.range(..failed.clone()))
            .map(|(p, _)| p.clone());
        let mut candidates: Vec<P> = after.filter(|p| self.wants.room(p) > 0).collect();
        // Connections older than the pull rank alike; younger ones by age, oldest first.
        candidates.sort_by_cached_key(|p| {
            let age = self.peers[p].connected_at.max(since);
            (age, self.wants.peer(p).map_or(0, |a| a.strikes))
        });
        let mut rest = IdSets::new();
        for (author, mut ids) in ids {
            self.ask_of(&candidates, &author, &mut ids, true, now, since);
            if !ids.is_empty() {
                // Every peer that has these ids has had its turn: a new round of turns.
                for candidate in &candidates {
                    if let Some(state) = self.peers.get_mut(candidate) {
                        state.tried.forget(&author, &ids);
                    }
                }
                self.ask_of(&candidates, &author, &mut ids, false, now, since);
            }
            if !ids.is_empty() {
                rest.insert(author, ids);
            }
        }
        rest
    }

    /// Asks `candidates`, in order, for what of `ids` each has (and did not refuse, nor, if
    /// `untried_only`, fail for), within its want budget; what they take leaves `ids`.
    fn ask_of(
        &mut self,
        candidates: &[P],
        author: &PublicKey,
        ids: &mut RangeSet,
        untried_only: bool,
        now: Millis,
        since: Millis,
    ) {
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        for candidate in candidates {
            if ids.is_empty() {
                return;
            }
            let state = &self.peers[candidate];
            let Some(has) = state.has.get(author) else {
                continue;
            };
            let mut take = ids.intersection(has);
            if let Some(refused) = state.refused.get(author) {
                take = take.difference(refused);
            }
            if untried_only && let Some(tried) = state.tried.get(author) {
                take = take.difference(tried);
            }
            take.forget_lowest(self.wants.room(candidate));
            if take.is_empty() {
                continue;
            }
            *ids = ids.difference(&take);
            let asked = self.wants.ask(candidate, author, &take, deadline, since);
            self.outbox.want(candidate, author, &asked);
        }
    }

    /// Wants given up on. Knowledge kept only because an author was being pulled goes too.
    fn abandon(&mut self, ids: IdSets) {
        for author in ids.keys() {
            if worth_knowing(&self.filter, &self.authors, &self.wants, author) {
                continue;
            }
            for state in self.peers.values_mut() {
                state.has.remove_author(author);
                state.refused.remove_author(author);
                state.tried.remove_author(author);
            }
        }
    }

    /// Wants that `from` will not answer (it left, or sent an id unverified): they go to
    /// other peers; what no one else has is given up.
    pub(super) fn move_wants(&mut self, wants: Vec<(PublicKey, Want)>, from: &P, now: Millis) {
        for (author, want) in wants {
            let ids = self.still_wanted(IdSets::from([(author, want.ids)]));
            let rest = self.reroute(ids, from, now, want.since);
            self.abandon(rest);
        }
    }
}
