//! The broadcast tree (Plumtree, with eager push on): which peers get new messages pushed
//! (*eager* links) and which only get them announced (*lazy* links).
//!
//! Rules, all here:
//! - every new connection starts eager; a link that delivers a new message first is eager;
//! - a duplicate pushed by an eager peer shows a redundant path: the peer becomes lazy and is
//!   sent `prune` (so it stops pushing to this node too). Not within `want_timeout` of a
//!   connection or a graft, when duplicates are expected (a catch-up, answers in flight);
//! - `prune` from a peer makes it lazy; `graft` makes it eager;
//! - new messages are pushed to eager peers and announced (`have`) to lazy ones at once,
//!   in the same flush;
//! - ids a lazy peer announces are not asked for at once: an eager copy usually follows.
//!   After `graft_timeout`, those still missing are wanted from it and it is grafted (it
//!   becomes eager, and is sent `graft`), which repairs the tree after a link or node
//!   failure within `graft_timeout` and one round trip. The announcer is grafted even when
//!   the ids are already wanted from another peer: no pushed copy came, so the tree is
//!   broken here (and the peer they are wanted from may announce without ever pushing);
//!
//! What a peer sends here only changes how this node sends to that same peer: a false
//! `graft` draws each message at most once per connection (as any push), a false `prune`
//! only stops its own pushes, and false announcements go through the want rules
//! (`wants.rs`), which move ids to other peers that have them.

use super::peer::Ids;
use super::{Engine, Millis, millis};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;

impl<P: Clone + Ord> Engine<P> {
    /// Whether the tree is on: with eager push and `broadcast_tree`. Without eager push
    /// every message is announced in rounds; without the tree it is pushed to every peer.
    pub(super) fn tree_mode(&self) -> bool {
        self.config.eager_push && self.config.broadcast_tree
    }

    /// `peer` just delivered a new message: its link is eager.
    pub(super) fn tree_delivered_by(&mut self, peer: &P) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.eager = true;
        }
    }

    /// `peer` pushed a message this node already had.
    pub(super) fn tree_duplicate_from(&mut self, peer: &P, now: Millis) {
        if !self.tree_mode() {
            return;
        }
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.eager && now >= state.tree_grace_until {
            state.eager = false;
            self.stats.prunes += 1;
            self.outbox.prune(peer);
        }
    }

    /// A frame's tree control flags.
    pub(super) fn on_tree_control(&mut self, peer: &P, prune: bool, graft: bool) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if graft {
            state.eager = true;
        } else if prune {
            state.eager = false;
        }
    }

    /// Whether ids a peer announces should wait for an eager copy first: the tree is on and
    /// the peer is lazy.
    pub(super) fn defers_announcements(&self, peer: &P) -> bool {
        self.tree_mode() && self.peers.get(peer).is_some_and(|s| !s.eager)
    }

    /// Keeps ids `peer` announced for `graft_timeout`: those of an author this node accepts,
    /// that it does not know yet.
    pub(super) fn defer_announced(
        &mut self,
        peer: &P,
        author: &PublicKey,
        ids: RangeSet,
        now: Millis,
    ) {
        if !self.filter.permits(author) {
            return;
        }
        let ids = match self.authors.not_wanted(author) {
            Some(known) => ids.difference(&known),
            None => ids,
        };
        if ids.is_empty() {
            return;
        }
        let max = self.config.max_ranges_per_peer;
        let timeout = millis(self.config.graft_timeout);
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.defer(author, &ids, max);
        if state.graft_at.is_none() {
            let at = now.saturating_add(timeout);
            state.graft_at = Some(at);
            self.graft_timers.insert((at, peer.clone()));
        }
    }

    /// Deferred announcements whose time has come: what is still missing is wanted from its
    /// announcer, and the announcer is grafted. It is grafted even if the ids are already
    /// wanted from another peer: no pushed copy came, so the tree is broken here, and the
    /// peer wanted from may be one that announces and never pushes.
    pub(super) fn graft_due(&mut self, now: Millis) {
        while let Some((at, peer)) = self.graft_timers.first().cloned() {
            if at > now {
                break;
            }
            self.graft_timers.pop_first();
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            state.graft_at = None;
            let mut missing = false;
            for (author, ids) in state.take_deferred() {
                let unknown = match self.authors.not_wanted(&author) {
                    Some(known) => ids.difference(&known),
                    None => ids,
                };
                if unknown.is_empty() {
                    continue;
                }
                missing = true;
                self.want_from(&peer, &author, &unknown, now);
            }
            if missing && let Some(state) = self.peers.get_mut(&peer) {
                state.eager = true;
                state.tree_grace_until = now.saturating_add(millis(self.config.want_timeout));
                self.stats.grafts += 1;
                self.outbox.graft(&peer);
            }
        }
    }

    /// The next deferred announcement's time.
    pub(super) fn next_graft(&self) -> Option<Millis> {
        self.graft_timers.first().map(|(at, _)| *at)
    }

    /// Sends the announcements queued for lazy peers (when `announce_delay` has passed, or at
    /// the end of the input with no delay).
    pub(super) fn announce_to_lazy(&mut self) {
        self.next_announce = None;
        for peer in std::mem::take(&mut self.lazy_due) {
            self.round_peer(&peer);
        }
    }

    /// Queues `sequence` of `author` for `peer`'s announcement: sent within `announce_delay`
    /// when the tree is on (else in the next round). Waiting a little lets the peer's own
    /// announcement of the same id arrive first, so a lazy link mostly carries one
    /// announcement per message, not one each way.
    pub(super) fn announce_new(
        &mut self,
        peer: &P,
        author: &PublicKey,
        sequence: u64,
        now: Millis,
    ) {
        let max = self.config.max_have_ranges_per_frame;
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.queue_announce(author, Ids::One(sequence), &self.store, max);
        if self.config.eager_push {
            self.lazy_due.insert(peer.clone());
            if self.next_announce.is_none() {
                self.next_announce = Some(now.saturating_add(millis(self.config.announce_delay)));
            }
        }
    }
}
