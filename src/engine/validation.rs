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
//! - at most `max_pending_validations` messages wait; the driver stops reading from peers
//!   while the bound is reached, rather than dropping accepted input;
//! - a message not decided within `validation_timeout` is treated as `Ignore`
//!   ([`Timer::Validation`](super::Timer::Validation)).

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
    max: usize,
    timeout_ms: Millis,
}

impl<P: Clone + Ord> Validations<P> {
    pub(crate) fn new(max: usize, timeout_ms: Millis) -> Self {
        Validations {
            held: BTreeMap::new(),
            ids: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            max,
            timeout_ms,
        }
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.held.contains_key(id)
    }

    /// The ids of `author` waiting for a verdict.
    pub(crate) fn ids(&self, author: &PublicKey) -> Option<&RangeSet> {
        self.ids.get(author)
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether the bound is reached (the driver should stop reading).
    pub(crate) fn is_full(&self) -> bool {
        self.held.len() >= self.max
    }

    pub(crate) fn hold(&mut self, envelope: Envelope, from: P, now: Millis) {
        let id = envelope.id();
        let deadline = now.saturating_add(self.timeout_ms);
        self.ids.entry(id.author).or_default().insert(id.sequence);
        self.by_deadline.insert((deadline, id));
        self.held.insert(
            id,
            Held {
                envelope,
                from,
                deadline,
            },
        );
    }

    /// Takes a held message back: the envelope and the peer it came from.
    pub(crate) fn take(&mut self, id: &MessageId) -> Option<(Envelope, P)> {
        let held = self.held.remove(id)?;
        self.by_deadline.remove(&(held.deadline, *id));
        if let Some(ids) = self.ids.get_mut(&id.author) {
            ids.remove_range(id.sequence, id.sequence);
            if ids.is_empty() {
                self.ids.remove(&id.author);
            }
        }
        Some((held.envelope, held.from))
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
                }
            }
        }
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
    }
}
