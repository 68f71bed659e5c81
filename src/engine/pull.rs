//! The have/want exchange: what a `have` draws (pushes after a complete digest, wants after
//! announcements), how a `want` is answered, and how unanswered wants are retried.

use super::outbox::Outbox;
use super::peer::{IdSets, Peer};
use super::{Engine, Millis, millis};
use crate::frame::{Digest, envelope_len};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;

impl<P: Clone + Ord> Engine<P> {
    /// A `have` from `peer`. Its ids are recorded as known there. A complete `have` is
    /// answered by pushing what the peer lacks (eager mode; at most one frame, the rest
    /// announced so the peer pulls it at its own pace). An incomplete one is answered by
    /// a `want` for the ids this node lacks and has not asked anyone for.
    pub(super) fn on_have(&mut self, peer: &P, have: Vec<Digest>, complete: bool, now: Millis) {
        let (max_authors, max_ranges) = self.peer_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        for d in &have {
            state.learn(&d.author, &d.ranges, max_authors, max_ranges);
        }
        if complete {
            if self.config.eager_push {
                self.push_missing(peer);
            }
            return;
        }
        let mut budget = self
            .config
            .max_want_ranges_per_frame
            .saturating_sub(state.asked_ranges());
        let mut wanted = Vec::new();
        for d in have {
            if budget == 0 {
                break;
            }
            let mut missing = match self.store.unwanted(&d.author) {
                Some(unwanted) => d.ranges.difference(&unwanted),
                None => d.ranges,
            };
            for (other, s) in &self.peers {
                if let Some(asked) = s.asked.get(&d.author)
                    && other != peer
                {
                    missing = missing.difference(asked);
                }
            }
            missing.forget_lowest(budget);
            if !missing.is_empty() {
                budget -= missing.range_count();
                wanted.push((d.author, missing));
            }
        }
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        let state = self.peers.get_mut(peer).expect("checked above");
        for (author, missing) in wanted {
            ask(&mut self.outbox, peer, state, &author, &missing, deadline);
        }
    }

    /// After a complete digest (the first of a connection, or a later resync): pushes up to
    /// one frame of held messages the peer lacks and was not told of, and announces the rest.
    pub(super) fn push_missing(&mut self, peer: &P) {
        let limits = self.peer_limits();
        let frame_limits = self.config.frame_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let mut room = frame_limits.max_frame_size / 2;
        let mut count = frame_limits.max_messages;
        // Every author is compared here, so the next round has nothing left to do.
        state.dirty.clear();
        let authors: Vec<PublicKey> = self.store.authors_holding().copied().collect();
        for author in authors {
            let Some(held) = self.store.held(&author) else {
                continue;
            };
            let mut lacking = state.lacking(&author, held);
            for envelope in self.store.held_in(&author, &lacking.clone()) {
                let len = envelope_len(envelope);
                if len > room || count == 0 {
                    break;
                }
                room -= len;
                count -= 1;
                let s = envelope.sequence();
                lacking.remove_range(s, s);
                state.learn_one(&author, s, limits);
                self.outbox.message(peer, envelope.clone());
            }
            if !lacking.is_empty() {
                self.outbox.have(peer, &author, &lacking);
                state.announce(&author, &lacking, limits.0, limits.1);
            }
        }
    }

    /// A `want` from `peer`: answered with the held envelopes it names, up to one frame
    /// (the peer asks again for the rest when this frame arrives).
    pub(super) fn on_want(&mut self, peer: &P, want: Vec<Digest>) {
        let limits = self.peer_limits();
        let frame_limits = self.config.frame_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let mut room = frame_limits.max_frame_size.saturating_sub(64);
        let mut count = frame_limits.max_messages;
        'digests: for d in want {
            for envelope in self.store.held_in(&d.author, &d.ranges) {
                let len = envelope_len(envelope);
                if len > room || count == 0 {
                    break 'digests;
                }
                room -= len;
                count -= 1;
                state.learn_one(&d.author, envelope.sequence(), limits);
                self.outbox.message(peer, envelope.clone());
            }
        }
    }

    /// `peer` just delivered some of what it was asked for: ask at once for the rest (a
    /// want is answered with at most one frame, so this paces a large catch-up).
    pub(super) fn ask_rest(&mut self, peer: &P, now: Millis) {
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.prune_asked(&self.store) {
            ask_again(&mut self.outbox, peer, state, deadline, 1);
        }
    }

    /// Wants whose deadline passed are asked again with a doubled timeout; after
    /// `max_want_attempts` they are asked of other peers known to have them.
    pub(super) fn retry_wants(&mut self, now: Millis) {
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, s)| s.ask_deadline.is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        let timeout = millis(self.config.want_timeout);
        for peer in due {
            let state = self.peers.get_mut(&peer).expect("collected above");
            if !state.prune_asked(&self.store) {
                continue;
            }
            if state.ask_attempts < self.config.max_want_attempts {
                let backoff = timeout.saturating_mul(1 << state.ask_attempts.min(16));
                let attempts = state.ask_attempts + 1;
                let deadline = now.saturating_add(backoff);
                ask_again(&mut self.outbox, &peer, state, deadline, attempts);
                continue;
            }
            // Give up on this peer: ask whoever else is known to have the ids.
            let abandoned = std::mem::take(&mut state.asked);
            state.ask_deadline = None;
            state.ask_attempts = 0;
            self.ask_elsewhere(abandoned, Some(&peer), now);
        }
    }

    /// Asks the ids of `abandoned` of the connected peers known to have them, other than
    /// `except` (the peer that did not answer).
    pub(super) fn ask_elsewhere(&mut self, abandoned: IdSets, except: Option<&P>, now: Millis) {
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        for (author, mut ids) in abandoned {
            if let Some(unwanted) = self.store.unwanted(&author) {
                ids = ids.difference(&unwanted);
            }
            for (peer, state) in &mut self.peers {
                if ids.is_empty() {
                    break;
                }
                if except == Some(peer) {
                    continue;
                }
                let Some(has) = state.has.get(&author) else {
                    continue;
                };
                let take = ids.intersection(has);
                if take.is_empty() {
                    continue;
                }
                ids = ids.difference(&take);
                ask(&mut self.outbox, peer, state, &author, &take, deadline);
            }
        }
    }
}

/// Asks `peer` for `ids` of `author`: a want now, and a retry deadline unless one runs.
fn ask<P: Clone + Ord>(
    outbox: &mut Outbox<P>,
    peer: &P,
    state: &mut Peer,
    author: &PublicKey,
    ids: &RangeSet,
    deadline: Millis,
) {
    outbox.want(peer, author, ids);
    state.asked.entry(*author).or_default().union_with(ids);
    if state.ask_deadline.is_none() {
        state.ask_deadline = Some(deadline);
        state.ask_attempts = 1;
    }
}

/// Asks `peer` again for everything outstanding, as attempt number `attempts`.
fn ask_again<P: Clone + Ord>(
    outbox: &mut Outbox<P>,
    peer: &P,
    state: &mut Peer,
    deadline: Millis,
    attempts: u32,
) {
    for (author, asked) in &state.asked {
        outbox.want(peer, author, asked);
    }
    state.ask_deadline = Some(deadline);
    state.ask_attempts = attempts;
}
