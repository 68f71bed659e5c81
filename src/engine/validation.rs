//! Messages held for the application's verdict (`validate_messages`).
//!
//! Rules, all here:
//! - a new message that passed every check is delivered to the application and held here:
//!   not stored, forwarded, announced or listed in digests until the application says
//!   [`Validation::Accept`]; a copy arriving meanwhile is a duplicate;
//! - [`Validation::Reject`] and [`Validation::Ignore`] make the id known (never delivered
//!   again) without storing or forwarding the message; `Reject` also counts against the
//!   peer it came from (a strike, which ranks it later in the want turns, `wants.rs`);
//! - this node's own messages (from an earlier run) are never held: it signed them;
//! - a held message counts as its author's activity in the author table, and if the author is
//!   forgotten meanwhile (to make room) what is held of it is dropped and covered by its
//!   tombstone (`authors.rs`), so it is never delivered twice;
//! - the `max_pending_validations` slots are shared fairly by the peers messages come from:
//!   a peer's share is the bound divided by the connected peers. The driver stops reading
//!   from a peer while it holds its share (counted per peer id, so reconnecting does not
//!   reset it), and goes on reading from the others; it stops reading from everyone only at
//!   twice the bound plus one frame per connected peer (peers that left, shares that grew as
//!   peers left), so k peers that each send one full frame pause only themselves. Accepted input
//!   is never dropped: a frame read is held whole, so a peer is over its share by at most
//!   one frame;
//! - messages held from peers that have left are kept up to `max_pending_validations` in
//!   all; beyond that, after the input that went past it, the oldest of the peer that left
//!   the most get `Ignore` at once, as at their timeout (without a strike). So fresh peer ids
//!   that each send a frame of undecided messages and leave cannot add up to the pause of
//!   every peer (the pause-all bound counts at most that many of theirs), and a peer that
//!   left a few behind keeps them unless it left the most; a connection replaced within one
//!   input is not a departure. A verdict on a message so ignored finds nothing (the
//!   application saw it; this node neither stores nor forwards it);
//! - a message not decided within `validation_timeout` is treated as `Ignore`
//!   ([`Timer::Validation`](super::Timer::Validation)), and counts against the peer that
//!   sent it like a `Reject` (a strike), so a peer cannot make its own messages time out
//!   for free.

use super::Millis;
use crate::envelope::{Envelope, MessageId};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};

/// The application's verdict on a message held for validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validation {
    /// Valid: store it and forward it.
    Accept,
    /// Invalid: never forwarded or stored; the id stays known; counts against the peer.
    Reject,
    /// Not wanted here: like `Reject`, without counting against the peer.
    Ignore,
}

#[derive(Debug)]
struct Held<P> {
    envelope: Envelope,
    from: P,
    deadline: Millis,
}

#[derive(Debug)]
pub(crate) struct Validations<P> {
    held: BTreeMap<MessageId, Held<P>>,
    ids: BTreeMap<PublicKey, RangeSet>,
    by_deadline: BTreeSet<(Millis, MessageId)>,
    /// Messages held per peer they came from.
    per_peer: BTreeMap<P, usize>,
    /// Peers that left while messages of theirs were held.
    departed: BTreeSet<P>,
    /// Messages held from them.
    departed_held: usize,
    max: usize,
    /// Envelopes in one frame at most: how far one peer can go past its share.
    frame: usize,
    /// Holds and releases so far: the driver re-reads who pauses when it changes.
    changes: u64,
    timeout_ms: Millis,
}

impl<P: Clone + Ord> Validations<P> {
    pub(crate) fn new(max: usize, timeout_ms: Millis, frame: usize) -> Self {
        Validations {
            held: BTreeMap::new(),
            ids: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            per_peer: BTreeMap::new(),
            departed: BTreeSet::new(),
            departed_held: 0,
            max,
            frame,
            changes: 0,
            timeout_ms,
        }
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.held.contains_key(id)
    }

    /// The envelope held for a verdict under `id`, if any.
    pub(crate) fn get(&self, id: &MessageId) -> Option<&Envelope> {
        self.held.get(id).map(|h| &h.envelope)
    }

    /// The ids of `author` waiting for a verdict.
    pub(crate) fn ids(&self, author: &PublicKey) -> Option<&RangeSet> {
        self.ids.get(author)
    }

    /// Holds and releases so far.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether the driver should stop reading from `peer`, one of `peers` connected: it
    /// holds its share, or twice the bound plus a frame per peer is held (so peers that each
    /// sent one full frame never pause the others).
    pub(crate) fn pauses(&self, peer: &P, peers: usize) -> bool {
        let share = (self.max / peers.max(1)).max(1);
        let all = self
            .max
            .saturating_mul(2)
            .saturating_add(peers.saturating_mul(self.frame));
        self.held.len() >= all || self.per_peer.get(peer).is_some_and(|n| *n >= share)
    }

    /// Whether a message `peer` sent awaits the application's verdict.
    pub(crate) fn holds_from(&self, peer: &P) -> bool {
        self.per_peer.get(peer).is_some_and(|n| *n > 0)
    }

    pub(crate) fn hold(&mut self, envelope: Envelope, from: P, now: Millis) {
        let id = envelope.id();
        let deadline = now.saturating_add(self.timeout_ms);
        self.ids.entry(id.author).or_default().insert(id.sequence);
        self.by_deadline.insert((deadline, id));
        *self.per_peer.entry(from.clone()).or_default() += 1;
        self.changes += 1;
        self.held.insert(
            id,
            Held {
                envelope,
                from,
                deadline,
            },
        );
    }

    /// Takes a held message back: the envelope, the peer it came from, and its verdict's
    /// deadline.
    pub(crate) fn take(&mut self, id: &MessageId) -> Option<(Envelope, P, Millis)> {
        let held = self.held.remove(id)?;
        self.by_deadline.remove(&(held.deadline, *id));
        self.released(&held.from);
        if let Some(ids) = self.ids.get_mut(&id.author) {
            ids.remove_range(id.sequence, id.sequence);
            if ids.is_empty() {
                self.ids.remove(&id.author);
            }
        }
        Some((held.envelope, held.from, held.deadline))
    }

    /// Drops what is held of `author` (it was forgotten: its tombstone covers the ids, so
    /// they are never delivered again; a verdict on them finds nothing).
    pub(crate) fn remove_author(&mut self, author: &PublicKey) {
        let Some(ids) = self.ids.remove(author) else {
            return;
        };
        for (start, end) in ids.ranges() {
            for sequence in start..=end {
                let id = MessageId {
                    author: *author,
                    sequence,
                };
                if let Some(held) = self.held.remove(&id) {
                    self.by_deadline.remove(&(held.deadline, id));
                    self.released(&held.from);
                }
            }
        }
    }

    /// A message `from` sent is no longer held.
    fn released(&mut self, from: &P) {
        self.changes += 1;
        if let Some(n) = self.per_peer.get_mut(from) {
            *n -= 1;
            if self.departed.contains(from) {
                self.departed_held -= 1;
            }
            if *n == 0 {
                self.per_peer.remove(from);
                self.departed.remove(from);
            }
        }
    }

    /// `peer` is connected (again): what it sent counts as a connected peer's.
    pub(crate) fn returned(&mut self, peer: &P) {
        if self.departed.remove(peer) {
            self.departed_held -= self.per_peer[peer];
        }
    }

    /// `peer` left.
    pub(crate) fn departed(&mut self, peer: &P) {
        if let Some(&n) = self.per_peer.get(peer)
            && self.departed.insert(peer.clone())
        {
            self.departed_held += n;
        }
    }

    /// The ids to ignore at once: beyond `max` held from peers that left, the oldest of the
    /// peer that left the most.
    pub(crate) fn excess_departed(&self) -> Vec<MessageId> {
        let excess = self.departed_held.saturating_sub(self.max);
        if excess == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(excess);
        let mut by_size: Vec<(usize, &P)> = self
            .departed
            .iter()
            .map(|p| (self.per_peer[p], p))
            .collect();
        by_size.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        for (_, peer) in by_size {
            out.extend(
                self.by_deadline
                    .iter()
                    .filter(|(_, id)| self.held[id].from == *peer)
                    .map(|(_, id)| *id)
                    .take(excess - out.len()),
            );
            if out.len() >= excess {
                break;
            }
        }
        out
    }

    /// The ids whose verdict is overdue.
    pub(crate) fn overdue(&self, now: Millis) -> Vec<MessageId> {
        self.by_deadline
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.by_deadline.first().map(|(t, _)| *t)
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.held.len(), self.by_deadline.len());
        let ids: u64 = self.ids.values().map(RangeSet::len).sum();
        assert_eq!(ids, self.held.len() as u64);
        let counted: usize = self.per_peer.values().sum();
        assert_eq!(counted, self.held.len(), "per-peer counts");
        let departed: usize = self.departed.iter().map(|p| self.per_peer[p]).sum();
        assert_eq!(departed, self.departed_held, "held from peers that left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn a_peer_at_its_share_pauses_alone() {
        let keys = Keypair::generate();
        let mut v = Validations::<u8>::new(8, 1_000, 1);
        let envelope = |seq| Envelope::sign(&keys, seq, 0, vec![]).unwrap();
        // Four peers connected: a share is 2.
        v.hold(envelope(1), 1, 0);
        assert!(!v.pauses(&1, 4));
        v.hold(envelope(2), 1, 0);
        assert!(v.pauses(&1, 4), "at its share");
        assert!(!v.pauses(&2, 4), "another peer reads on");
        assert!(!v.pauses(&1, 1), "alone, its share is the bound");
        v.take(&envelope(1).id());
        assert!(!v.pauses(&1, 4), "a verdict frees its slot");
        for seq in 3..=21 {
            v.hold(envelope(seq), 3, 0);
        }
        assert!(
            v.pauses(&2, 4),
            "twice the bound and a frame per peer: everyone waits"
        );
        v.remove_author(&keys.public());
        assert!(!v.pauses(&3, 4));
        v.check_invariants();
    }

    #[test]
    fn messages_of_peers_that_left_are_kept_up_to_the_bound() {
        let keys = Keypair::generate();
        let mut v = Validations::<u8>::new(4, 1_000, 8);
        let envelope = |seq| Envelope::sign(&keys, seq, 0, vec![]).unwrap();
        // Peer 1 sends two and leaves, peer 2 sends four and leaves.
        for seq in 1..=2 {
            v.hold(envelope(seq), 1, seq);
        }
        v.departed(&1);
        assert!(v.excess_departed().is_empty(), "two of four");
        for seq in 3..=6 {
            v.hold(envelope(seq), 2, seq);
        }
        v.departed(&2);
        let ignored = v.excess_departed();
        assert_eq!(
            ignored,
            vec![envelope(3).id(), envelope(4).id()],
            "beyond the bound, the oldest of the peer that left the most"
        );
        for id in &ignored {
            v.take(id);
        }
        assert!(v.excess_departed().is_empty());
        v.check_invariants();
        // A peer that comes back counts as connected again.
        v.returned(&2);
        v.hold(envelope(7), 2, 7);
        v.departed(&9);
        assert!(v.excess_departed().is_empty());
        v.check_invariants();
    }
}
