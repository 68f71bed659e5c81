//! Retention: the messages a node holds for peers that may still lack them.
//!
//! Rules, all here:
//! - a message is held until `timestamp + max_age`;
//! - the store stays within `max_stored_bytes` (payload plus a fixed per-message overhead)
//!   and `max_stored_messages`. When over, the message to go is chosen fairly: from the peer
//!   whose introduced authors (see `authors.rs`) hold the most bytes, that peer's author
//!   holding the most bytes, its lowest sequence. So one author, or every author one peer
//!   introduced, can only push out its own history;
//! - an author's held sequences are at most `max_ranges_per_author` ranges: a message that
//!   would make more pushes out the author's lowest range. Gaps only come from loss or a
//!   misbehaving author, and this keeps every per-author computation bounded.
//!
//! Inserting, evicting and expiring a message cost O(log n) plus a bounded range update.

use super::authors::Introducer;
use super::durable::Dirty;
use crate::config::ENVELOPE_OVERHEAD;
use crate::envelope::{Envelope, MessageId};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, BTreeSet};

/// What a held message counts against `max_stored_bytes`: its payload and a fixed overhead
/// for its fields and index entries.
pub(crate) fn stored_size(envelope: &Envelope) -> usize {
    envelope.payload().len() + ENVELOPE_OVERHEAD
}

#[derive(Debug)]
struct Holding<P> {
    held: RangeSet,
    bytes: usize,
    group: Introducer<P>,
}

#[derive(Debug, Default)]
struct Group {
    bytes: usize,
    /// `(bytes, author)`: who holds the most.
    authors: BTreeSet<(usize, PublicKey)>,
}

/// The limits of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub(crate) max_age_ms: u64,
    pub(crate) max_bytes: usize,
    pub(crate) max_messages: usize,
    pub(crate) max_ranges: usize,
}

#[derive(Debug)]
pub(crate) struct Store<P> {
    messages: BTreeMap<MessageId, Envelope>,
    /// `(timestamp, id)` of every held message: expiry order.
    by_age: BTreeSet<(u64, MessageId)>,
    authors: BTreeMap<PublicKey, Holding<P>>,
    groups: BTreeMap<Introducer<P>, Group>,
    /// `(bytes, group)`: which group holds the most.
    by_group_bytes: BTreeSet<(usize, Introducer<P>)>,
    bytes: usize,
    limits: Retention,
    /// Ids put or removed since the driver last wrote them (`durable.rs`).
    dirty: Dirty<MessageId>,
}

impl<P: Clone + Ord> Store<P> {
    pub(crate) fn new(limits: Retention) -> Self {
        Store {
            messages: BTreeMap::new(),
            by_age: BTreeSet::new(),
            authors: BTreeMap::new(),
            groups: BTreeMap::new(),
            by_group_bytes: BTreeSet::new(),
            bytes: 0,
            dirty: Dirty::new(limits.max_messages),
            limits,
        }
    }

    /// The ids put or removed since the driver last took them (`durable.rs`).
    pub(crate) fn marks(&mut self) -> &mut Dirty<MessageId> {
        &mut self.dirty
    }

    pub(crate) fn marks_ref(&self) -> &Dirty<MessageId> {
        &self.dirty
    }

    /// Every held envelope, by id.
    pub(crate) fn envelopes(&self) -> impl Iterator<Item = &Envelope> {
        self.messages.values()
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&Envelope> {
        self.messages.get(id)
    }

    /// The sequences of `author` held.
    pub(crate) fn held(&self, author: &PublicKey) -> Option<&RangeSet> {
        self.authors.get(author).map(|h| &h.held)
    }

    pub(crate) fn holds(&self, author: &PublicKey, sequence: u64) -> bool {
        self.held(author).is_some_and(|h| h.contains(sequence))
    }

    /// Authors that hold at least one message.
    pub(crate) fn authors_holding(&self) -> impl Iterator<Item = &PublicKey> {
        self.authors.keys()
    }

    /// The held messages of `author` whose sequences are in `ranges`, ascending.
    pub(crate) fn held_in<'a>(
        &'a self,
        author: &'a PublicKey,
        ranges: &'a RangeSet,
    ) -> impl Iterator<Item = &'a Envelope> + 'a {
        ranges.ranges().flat_map(move |(s, e)| {
            let id = |sequence| MessageId {
                author: *author,
                sequence,
            };
            self.messages.range(id(s)..=id(e)).map(|(_, env)| env)
        })
    }

    /// Holds a verified message of an author introduced by `group`, then evicts what the
    /// limits require.
    pub(crate) fn insert(&mut self, envelope: Envelope, group: &Introducer<P>) {
        let id = envelope.id();
        if self.messages.contains_key(&id) {
            return;
        }
        let size = stored_size(&envelope);
        let holding = self.authors.entry(id.author).or_insert_with(|| Holding {
            held: RangeSet::new(),
            bytes: 0,
            group: group.clone(),
        });
        holding.held.insert(id.sequence);
        let group = holding.group.clone();
        let before = holding.bytes;
        holding.bytes += size;
        let too_gapped = holding.held.range_count() > self.limits.max_ranges.max(1);
        self.account(&id.author, &group, before, size as isize);
        self.bytes += size;
        self.by_age.insert((envelope.timestamp(), id));
        self.messages.insert(id, envelope);
        self.dirty.mark(id);
        if too_gapped {
            let (start, end) = self.authors[&id.author]
                .held
                .ranges()
                .next()
                .expect("not empty");
            self.remove_range(&id.author, start, end);
        }
        while self.bytes > self.limits.max_bytes || self.messages.len() > self.limits.max_messages {
            let Some(victim) = self.fairest_victim() else {
                break;
            };
            self.remove(&victim);
        }
    }

    /// The lowest sequence of the author holding the most bytes in the group holding the most.
    fn fairest_victim(&self) -> Option<MessageId> {
        let (_, group) = self.by_group_bytes.last()?;
        let (_, author) = self.groups[group].authors.last()?;
        let from = MessageId {
            author: *author,
            sequence: 0,
        };
        self.messages.range(from..).next().map(|(id, _)| *id)
    }

    /// Moves `author`'s bytes by `delta` (it held `before`) in its group's indexes.
    fn account(&mut self, author: &PublicKey, group: &Introducer<P>, before: usize, delta: isize) {
        let entry = self.groups.entry(group.clone()).or_default();
        self.by_group_bytes.remove(&(entry.bytes, group.clone()));
        entry.authors.remove(&(before, *author));
        let after = before
            .checked_add_signed(delta)
            .expect("bytes never negative");
        entry.bytes = entry
            .bytes
            .checked_add_signed(delta)
            .expect("bytes never negative");
        if after > 0 {
            entry.authors.insert((after, *author));
        }
        if entry.bytes > 0 {
            self.by_group_bytes.insert((entry.bytes, group.clone()));
        } else {
            self.groups.remove(group);
        }
    }

    pub(crate) fn remove(&mut self, id: &MessageId) {
        let Some(envelope) = self.messages.remove(id) else {
            return;
        };
        self.dirty.mark(*id);
        let size = stored_size(&envelope);
        self.by_age.remove(&(envelope.timestamp(), *id));
        self.bytes -= size;
        let holding = self.authors.get_mut(&id.author).expect("held author");
        holding.held.remove_range(id.sequence, id.sequence);
        let before = holding.bytes;
        holding.bytes -= size;
        let group = holding.group.clone();
        if holding.held.is_empty() {
            self.authors.remove(&id.author);
        }
        self.account(&id.author, &group, before, -(size as isize));
    }

    fn remove_range(&mut self, author: &PublicKey, start: u64, end: u64) {
        let id = |sequence| MessageId {
            author: *author,
            sequence,
        };
        let ids: Vec<MessageId> = self
            .messages
            .range(id(start)..=id(end))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Drops every message of `author` (it is no longer tracked).
    pub(crate) fn remove_author(&mut self, author: &PublicKey) {
        self.remove_range(author, 1, u64::MAX);
    }

    /// Drops every message older than `max_age`; returns their ids.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<MessageId> {
        let horizon = now.saturating_sub(self.limits.max_age_ms);
        let mut expired = Vec::new();
        while let Some(&(timestamp, id)) = self.by_age.first() {
            if timestamp >= horizon {
                break;
            }
            self.remove(&id);
            expired.push(id);
        }
        expired
    }

    /// When the oldest held message expires.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.by_age
            .first()
            .map(|&(t, _)| t.saturating_add(self.limits.max_age_ms).saturating_add(1))
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Panics if the store's own bookkeeping disagrees with itself.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.by_age.len(), self.messages.len(), "age index size");
        let bytes: usize = self.messages.values().map(stored_size).sum();
        assert_eq!(bytes, self.bytes, "byte count");
        assert!(self.bytes <= self.limits.max_bytes);
        assert!(self.messages.len() <= self.limits.max_messages);
        let held: u64 = self.authors.values().map(|h| h.held.len()).sum();
        assert_eq!(
            held,
            self.messages.len() as u64,
            "held ranges match messages"
        );
        for id in self.messages.keys() {
            assert!(self.authors[&id.author].held.contains(id.sequence));
        }
        let group_bytes: usize = self.groups.values().map(|g| g.bytes).sum();
        assert_eq!(group_bytes, self.bytes, "group bytes");
        assert_eq!(self.by_group_bytes.len(), self.groups.len());
        for (author, h) in &self.authors {
            assert!(h.held.range_count() <= self.limits.max_ranges.max(1));
            assert!(self.groups[&h.group].authors.contains(&(h.bytes, *author)));
        }
    }
}
