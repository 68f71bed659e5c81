//! What a node knows: every id it has seen per author (kept after the message expires, so a
//! message is never delivered twice) and the messages it still holds (retention).
//!
//! Retention rules, all here:
//! - a message is held until `timestamp + max_age`, and while the store is within
//!   `max_stored_bytes` and `max_stored_messages` (the oldest timestamp goes first);
//! - an id stays known after its message goes; an author's known ranges are capped at
//!   `max_ranges_per_author` by treating the lowest gaps as known;
//! - an envelope dropped unverified (outside the time window, too large) is remembered apart
//!   from the known ids: it is not asked for again, but it is not in digests and does not
//!   stop a later valid copy, so a forged one cannot censor the real one;
//! - at most `max_tracked_authors` authors are tracked. An author is forgotten only when it
//!   holds no message and its newest timestamp is older than `max_age`: every message of it
//!   that a peer could still send is then outside the time window and dropped, so forgetting
//!   it cannot cause a second delivery.

use crate::config::{Config, ENVELOPE_OVERHEAD};
use crate::envelope::{Envelope, MessageId};
use crate::frame::Digest;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// What a held message counts against `max_stored_bytes`: its payload and a fixed overhead
/// for its fields and index entries.
fn stored_size(envelope: &Envelope) -> usize {
    envelope.payload().len() + ENVELOPE_OVERHEAD
}

/// One tracked author.
#[derive(Debug, Default)]
struct Author {
    /// Every sequence whose message was verified and accepted: held or expired since.
    known: RangeSet,
    /// Sequences of envelopes dropped unverified (outside the time window, or too large):
    /// not asked for again, but neither listed in digests nor a bar to a later valid copy,
    /// so a relay cannot pre-empt an author's future message with a forged one.
    dropped: RangeSet,
    /// The sequences whose messages are held.
    held: RangeSet,
    /// The newest timestamp of any id known (0 if none).
    newest: u64,
}

/// Why a new author's message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthorsFull;

#[derive(Debug)]
pub(crate) struct Store {
    me: PublicKey,
    authors: BTreeMap<PublicKey, Author>,
    messages: BTreeMap<MessageId, Envelope>,
    /// `(timestamp, id)` of every held message: eviction order.
    by_age: BTreeSet<(u64, MessageId)>,
    bytes: usize,
    max_age_ms: u64,
    max_bytes: usize,
    max_messages: usize,
    max_authors: usize,
    max_ranges: usize,
}

impl Store {
    pub(crate) fn new(me: PublicKey, config: &Config) -> Self {
        let mut authors = BTreeMap::new();
        authors.insert(me, Author::default());
        Store {
            me,
            authors,
            messages: BTreeMap::new(),
            by_age: BTreeSet::new(),
            bytes: 0,
            max_age_ms: config.max_age.as_millis() as u64,
            max_bytes: config.max_stored_bytes,
            max_messages: config.max_stored_messages,
            max_authors: config.max_tracked_authors,
            max_ranges: config.max_ranges_per_author,
        }
    }

    pub(crate) fn knows(&self, id: &MessageId) -> bool {
        self.authors
            .get(&id.author)
            .is_some_and(|a| a.known.contains(id.sequence))
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&Envelope> {
        self.messages.get(id)
    }

    pub(crate) fn held(&self, author: &PublicKey) -> Option<&RangeSet> {
        self.authors.get(author).map(|a| &a.held)
    }

    /// Authors that hold at least one message.
    pub(crate) fn authors_holding(&self) -> impl Iterator<Item = &PublicKey> {
        self.authors
            .iter()
            .filter(|(_, a)| !a.held.is_empty())
            .map(|(k, _)| k)
    }

    /// The held messages of `author` whose sequences are in `ranges`, ascending.
    pub(crate) fn held_in<'a>(
        &'a self,
        author: &'a PublicKey,
        ranges: &'a RangeSet,
    ) -> impl Iterator<Item = &'a Envelope> + 'a {
        ranges.ranges().flat_map(move |(s, e)| {
            let from = MessageId {
                author: *author,
                sequence: s,
            };
            let to = MessageId {
                author: *author,
                sequence: e,
            };
            self.messages.range(from..=to).map(|(_, env)| env)
        })
    }

    /// Every id known, of every author: the body of a complete `have`.
    pub(crate) fn digest(&self) -> Vec<Digest> {
        self.authors
            .iter()
            .filter(|(_, a)| !a.known.is_empty())
            .map(|(author, a)| Digest {
                author: *author,
                ranges: a.known.clone(),
            })
            .collect()
    }

    /// Makes room for `author` if it is new. Fails when every tracked author may still have
    /// messages inside the time window.
    pub(crate) fn track(&mut self, author: &PublicKey, now: u64) -> Result<(), AuthorsFull> {
        if self.authors.contains_key(author) {
            return Ok(());
        }
        if self.authors.len() >= self.max_authors {
            let horizon = now.saturating_sub(self.max_age_ms);
            let evictable = self
                .authors
                .iter()
                .filter(|(k, a)| **k != self.me && a.held.is_empty() && a.newest < horizon)
                .min_by_key(|(_, a)| a.newest)
                .map(|(k, _)| *k)
                .ok_or(AuthorsFull)?;
            self.authors.remove(&evictable);
        }
        self.authors.insert(*author, Author::default());
        Ok(())
    }

    /// Records an envelope dropped unverified (out of window or too large): its id is not
    /// asked for again. It never refreshes the author's age (its timestamp is unverified),
    /// and it takes a new author's place only when there is room without forgetting anyone.
    pub(crate) fn mark_dropped(&mut self, id: MessageId) {
        if !self.authors.contains_key(&id.author) && self.authors.len() >= self.max_authors {
            return;
        }
        let author = self.authors.entry(id.author).or_default();
        author.dropped.insert(id.sequence);
        author.dropped.forget_lowest(self.max_ranges);
    }

    /// The ids of `author` this node does not want: known, or dropped unverified.
    pub(crate) fn unwanted(&self, author: &PublicKey) -> Option<Cow<'_, RangeSet>> {
        let a = self.authors.get(author)?;
        if a.dropped.is_empty() {
            return Some(Cow::Borrowed(&a.known));
        }
        let mut all = a.known.clone();
        all.union_with(&a.dropped);
        Some(Cow::Owned(all))
    }

    /// Whether `id` was dropped unverified.
    pub(crate) fn was_dropped(&self, id: &MessageId) -> bool {
        self.authors
            .get(&id.author)
            .is_some_and(|a| a.dropped.contains(id.sequence))
    }

    /// Holds a verified message (its author must be tracked) and evicts the oldest messages
    /// beyond the limits.
    pub(crate) fn insert(&mut self, envelope: Envelope, now: u64) {
        let id = envelope.id();
        let timestamp = envelope.timestamp();
        let author = self
            .authors
            .get_mut(&id.author)
            .expect("author tracked before insert");
        author.known.insert(id.sequence);
        author.known.fill_lowest_gaps(self.max_ranges);
        author.held.insert(id.sequence);
        author.newest = author.newest.max(timestamp.min(now));
        self.bytes += stored_size(&envelope);
        self.by_age.insert((timestamp, id));
        self.messages.insert(id, envelope);
        while self.bytes > self.max_bytes || self.messages.len() > self.max_messages {
            let Some(&(_, oldest)) = self.by_age.first() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, id: &MessageId) {
        if let Some(envelope) = self.messages.remove(id) {
            self.by_age.remove(&(envelope.timestamp(), *id));
            self.bytes -= stored_size(&envelope);
            if let Some(author) = self.authors.get_mut(&id.author) {
                author.held.remove_range(id.sequence, id.sequence);
            }
        }
    }

    /// Drops every message older than `max_age`.
    pub(crate) fn expire(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.max_age_ms);
        while let Some(&(timestamp, id)) = self.by_age.first() {
            if timestamp >= horizon {
                break;
            }
            self.remove(&id);
        }
    }

    /// When the oldest held message expires.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.by_age
            .first()
            .map(|&(t, _)| t.saturating_add(self.max_age_ms).saturating_add(1))
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn author_count(&self) -> usize {
        self.authors.len()
    }

    /// Panics if the store's own bookkeeping disagrees with itself.
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.by_age.len(), self.messages.len(), "age index size");
        let bytes: usize = self.messages.values().map(stored_size).sum();
        assert_eq!(bytes, self.bytes, "byte count");
        assert!(self.bytes <= self.max_bytes && self.messages.len() <= self.max_messages);
        assert!(self.authors.len() <= self.max_authors.max(1));
        for id in self.messages.keys() {
            let author = &self.authors[&id.author];
            assert!(author.held.contains(id.sequence) && author.known.contains(id.sequence));
        }
        let held: u64 = self.authors.values().map(|a| a.held.len()).sum();
        assert_eq!(
            held,
            self.messages.len() as u64,
            "held ranges match messages"
        );
    }
}
