//! What of the engine's state outlives the process, and how it comes back.
//!
//! The engine decides what is kept; a durable store (`crate::store`) only writes it down.
//! Rules, all here:
//! - what persists is exactly what stops a second delivery and what a late joiner is served:
//!   every held envelope; per author, every id delivered or accepted (known ids, ids held for
//!   the application's verdict, a tombstone's ids), its newest timestamp and its proven
//!   equivocations; and a reservation of this node's sequences ([`RESERVED_SEQUENCES`] above
//!   the next one, renewed at half, written before the first frame of a restarted node
//!   leaves). Nothing about peers persists (records, bans and beliefs are about connections
//!   that end with the process);
//! - while a driver persists ([`Engine::restore`] was called), the author table and the store
//!   mark what they change ([`Dirty`]); [`Engine::take_changes`] turns the marks into
//!   [`Changes`] (the current state of each marked author and message), so a driver writes
//!   one transaction for everything since its last one. The marks are bounded: past
//!   [`DIRTY_FACTOR`] × the component's own bound they collapse into one "rewrite
//!   everything", so a store that keeps failing costs no memory beyond the engine's state;
//! - a restored author's ids count as known until its newest timestamp leaves the window, in a
//!   table of their own that nothing displaces (`Authors::restore`), so no flood of new
//!   authors after a restart can make an id delivered before it count as new; an id that was
//!   held for a verdict when the process ended is never delivered again (as for a blocked
//!   author, `Authors::settle_held`). Records of authors the filter refuses are kept too (the
//!   filter decides what comes in, not what was delivered). A restored author the table has
//!   room for is tracked again, introduced by `Introducer::Restored`: one group in the fair
//!   shares, as one peer's. Records outside the time window or beyond the table's bounds,
//!   and envelopes outside the window, over `max_payload_size`, of authors not tracked
//!   again, or beyond the store's bounds (a smaller config than the last run's) are not
//!   restored, and the next commit deletes them.

use super::{Engine, Millis};
use crate::envelope::{Envelope, MessageId};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::BTreeSet;

/// Sequences reserved ahead in the store: the store holds a sequence at least this far above
/// the next one this node signs (written again when half is used), so a message published
/// and sent just before the process died never has its sequence signed again, even when the
/// clock went back meanwhile. Each restart skips up to this many (sequences only need to
/// rise).
pub(crate) const RESERVED_SEQUENCES: u64 = 1 << 20;

/// How many marks a component keeps, as a multiple of the entries it holds at most, before
/// it asks for everything to be rewritten instead: a rewrite costs no more than that many
/// entries, and the marks of a store that keeps failing never grow beyond it.
pub(crate) const DIRTY_FACTOR: usize = 2;

/// The keys one component changed since the driver last took them: off unless the driver
/// persists.
#[derive(Debug)]
pub(crate) struct Dirty<K> {
    on: bool,
    keys: BTreeSet<K>,
    /// Too many to list: everything is rewritten.
    everything: bool,
    bound: usize,
}

impl<K: Ord + Copy> Dirty<K> {
    pub(crate) fn new(entries: usize) -> Self {
        Dirty {
            on: false,
            keys: BTreeSet::new(),
            everything: false,
            bound: entries.saturating_mul(DIRTY_FACTOR).max(1),
        }
    }

    pub(crate) fn start(&mut self) {
        self.on = true;
    }

    pub(crate) fn on(&self) -> bool {
        self.on
    }

    pub(crate) fn mark(&mut self, key: K) {
        if !self.on || self.everything {
            return;
        }
        self.keys.insert(key);
        if self.keys.len() > self.bound {
            self.keys = BTreeSet::new();
            self.everything = true;
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.everything || !self.keys.is_empty()
    }

    /// Everything is to be rewritten.
    pub(crate) fn everything(&mut self) {
        if self.on {
            self.keys = BTreeSet::new();
            self.everything = true;
        }
    }

    pub(crate) fn bound(&self) -> usize {
        self.bound
    }

    /// The marks so far (`Err` for everything), cleared.
    pub(crate) fn take(&mut self) -> Result<BTreeSet<K>, ()> {
        let keys = std::mem::take(&mut self.keys);
        if std::mem::take(&mut self.everything) {
            Err(())
        } else {
            Ok(keys)
        }
    }
}

/// What a durable store keeps of one author: everything that stops a second delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AuthorRecord {
    /// Every id of the author this node delivered or accepted (still held or not).
    pub ids: RangeSet,
    /// The largest verified timestamp of its messages, in milliseconds since the Unix epoch:
    /// the record is kept while it is inside the time window.
    pub newest: u64,
    /// Ids whose equivocation was proven and reported (never reported again).
    pub equivocated: RangeSet,
    /// The author is no longer tracked (displaced to make room): only its ids are kept, so
    /// none is delivered twice, until its newest message leaves the window.
    pub forgotten: bool,
}

impl AuthorRecord {
    /// A record of `ids`, the newest timestamp `newest`, no equivocation, tracked.
    pub fn new(ids: RangeSet, newest: u64) -> Self {
        AuthorRecord {
            ids,
            newest,
            equivocated: RangeSet::new(),
            forgotten: false,
        }
    }
}

/// Everything a durable store holds, read once at start-up ([`Engine::restore`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// The held envelopes (any order).
    pub messages: Vec<Envelope>,
    /// The author records.
    pub authors: Vec<(PublicKey, AuthorRecord)>,
    /// The sequence this node's next message gets at least (`None`: none written yet;
    /// `u64::MAX`: every sequence is used).
    pub next_sequence: Option<u64>,
}

/// What changed in the durable state since the last [`Engine::take_changes`]: one
/// transaction's worth. Each entry is the current state (an envelope to put, an author
/// record to put, or a key to delete), so applying changes in order leaves the store equal
/// to the engine's durable state.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub(crate) everything: bool,
    pub(crate) put_messages: Vec<Envelope>,
    pub(crate) delete_messages: Vec<MessageId>,
    pub(crate) put_authors: Vec<(PublicKey, AuthorRecord)>,
    pub(crate) delete_authors: Vec<PublicKey>,
    pub(crate) next_sequence: Option<u64>,
}

impl Changes {
    /// Whether the store is to be emptied first: the changes are the whole state (too many
    /// changes piled up to list them, after failed writes).
    pub fn replaces_everything(&self) -> bool {
        self.everything
    }

    /// Envelopes to put, by id.
    pub fn put_messages(&self) -> &[Envelope] {
        &self.put_messages
    }

    /// Ids whose envelopes go.
    pub fn delete_messages(&self) -> &[MessageId] {
        &self.delete_messages
    }

    /// Author records to put.
    pub fn put_authors(&self) -> &[(PublicKey, AuthorRecord)] {
        &self.put_authors
    }

    /// Authors whose records go.
    pub fn delete_authors(&self) -> &[PublicKey] {
        &self.delete_authors
    }

    /// The sequence this node's next message gets at least, if it changed.
    pub fn next_sequence(&self) -> Option<u64> {
        self.next_sequence
    }

    /// How many entries the changes hold.
    pub fn len(&self) -> usize {
        self.put_messages.len()
            + self.delete_messages.len()
            + self.put_authors.len()
            + self.delete_authors.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.everything
            && self.put_messages.is_empty()
            && self.delete_messages.is_empty()
            && self.put_authors.is_empty()
            && self.delete_authors.is_empty()
            && self.next_sequence.is_none()
    }

    /// Folds `later` (taken after `self`) into `self`: one transaction for both.
    pub fn merge(&mut self, later: Changes) {
        if later.everything {
            *self = Changes {
                next_sequence: later.next_sequence.or(self.next_sequence),
                ..later
            };
            return;
        }
        let put: BTreeSet<MessageId> = later.put_messages.iter().map(Envelope::id).collect();
        let gone: BTreeSet<MessageId> = later.delete_messages.iter().copied().collect();
        self.put_messages
            .retain(|e| !put.contains(&e.id()) && !gone.contains(&e.id()));
        self.delete_messages
            .retain(|id| !put.contains(id) && !gone.contains(id));
        self.put_messages.extend(later.put_messages);
        self.delete_messages.extend(later.delete_messages);
        let put: BTreeSet<PublicKey> = later.put_authors.iter().map(|(a, _)| *a).collect();
        let gone: BTreeSet<PublicKey> = later.delete_authors.iter().copied().collect();
        self.put_authors
            .retain(|(a, _)| !put.contains(a) && !gone.contains(a));
        self.delete_authors
            .retain(|a| !put.contains(a) && !gone.contains(a));
        self.put_authors.extend(later.put_authors);
        self.delete_authors.extend(later.delete_authors);
        self.next_sequence = later.next_sequence.or(self.next_sequence);
    }
}

/// What [`Engine::restore`] took back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Envelopes held again.
    pub messages: usize,
    /// Authors tracked again.
    pub authors: usize,
    /// Authors not tracked again whose ids still count as known.
    pub forgotten: usize,
    /// Envelopes and records left out (outside the window, filtered, over the bounds): the
    /// next commit deletes them.
    pub dropped: usize,
}

impl<P: Clone + Ord> Engine<P> {
    /// Rebuilds this node's durable state from `snapshot` (what a durable store read at
    /// start-up) and from then on records what changes, for [`Engine::take_changes`]. Call it
    /// once, on a new engine, before any peer connects (an empty snapshot for a new store).
    pub fn restore(&mut self, snapshot: Snapshot, now: Millis) -> Restored {
        let wall = self.wall(now);
        let horizon = wall.saturating_sub(super::millis(self.config.max_age));
        let mut restored = Restored::default();
        // What the store holds and the engine does not: deleted by the first commit.
        let mut gone_authors = Vec::new();
        let mut gone_messages = Vec::new();
        // Most recent first, so a smaller table than the last run's keeps the newest.
        let mut records = snapshot.authors;
        records.sort_by(|(a, x), (b, y)| y.newest.cmp(&x.newest).then(a.cmp(b)));
        for (author, record) in records {
            if author == self.me
                && let Some(next) = record.ids.last().and_then(|s| s.checked_add(1))
            {
                self.raise_next_sequence(next);
            }
            // Filtered authors too: the filter decides what comes in, not what was delivered
            // (allowed again, none of theirs is delivered twice).
            let outcome = (author == self.me || record.newest >= horizon)
                .then(|| {
                    self.authors
                        .restore(&author, &record, self.filter.permits(&author))
                })
                .flatten();
            match outcome {
                None => {
                    restored.dropped += 1;
                    gone_authors.push(author);
                }
                Some(false) => restored.forgotten += 1,
                Some(true) => restored.authors += 1,
            }
        }
        match snapshot.next_sequence {
            // Every sequence was used.
            Some(u64::MAX) => self.next_sequence = None,
            Some(reserved) => self.raise_next_sequence(reserved),
            None => {}
        }
        self.persisted_sequence = snapshot.next_sequence;
        for envelope in snapshot.messages {
            let id = envelope.id();
            let fresh = envelope.timestamp() >= horizon;
            let fits = envelope.payload().len() <= self.config.max_payload_size;
            if fresh && fits && self.authors.is_tracked(&id.author) {
                self.authors
                    .accepted(&id.author, id.sequence, envelope.timestamp());
                let group = self.authors.introducer(&id.author);
                self.store.insert(envelope, &group);
                gone_messages.push(id);
            } else {
                gone_messages.push(id);
            }
        }
        // Marks start here: what was read back is on disk already.
        self.authors.marks().start();
        self.store.marks().start();
        for author in gone_authors {
            self.authors.marks().mark(author);
        }
        for id in gone_messages {
            // Left out, or evicted again by smaller bounds than the last run's.
            if self.store.get(&id).is_some() {
                restored.messages += 1;
            } else {
                restored.dropped += 1;
                self.store.marks().mark(id);
            }
        }
        restored
    }

    /// This node's next sequence is at least `next`.
    fn raise_next_sequence(&mut self, next: u64) {
        if let Some(current) = self.next_sequence {
            self.next_sequence = Some(current.max(next));
        }
    }

    /// The durable store has written `changes` (taken with [`Engine::take_changes`]): the
    /// reservation of sequences they carry now bounds what this node signs.
    pub fn written(&mut self, changes: &Changes) {
        if let Some(reserved) = changes.next_sequence {
            self.durable_sequence = Some(self.durable_sequence.unwrap_or(0).max(reserved));
        }
    }

    /// Whether `sequence` may be signed: always without a durable store; with one, only
    /// below the reservation it has written.
    pub(crate) fn sequence_durable(&self, sequence: u64) -> bool {
        !self.authors.marks_ref().on() || self.durable_sequence.is_some_and(|r| sequence < r)
    }

    /// The next [`Engine::take_changes`] returns everything (a driver whose pending changes
    /// grew past what it keeps, after failed writes).
    pub fn rewrite_everything(&mut self) {
        self.authors.marks().everything();
        self.store.marks().everything();
    }

    /// How many changes a driver may keep pending at most before it asks for
    /// [`Engine::rewrite_everything`]: the bound of the engine's own marks.
    pub fn max_pending_changes(&self) -> usize {
        self.authors.marks_ref().bound() + self.store.marks_ref().bound()
    }

    /// Whether anything changed since the last [`Engine::take_changes`].
    pub fn has_changes(&self) -> bool {
        self.authors.marks_ref().any() || self.store.marks_ref().any() || self.sequence_changed()
    }

    /// Whether the store's reservation of sequences must move: less than half of
    /// [`RESERVED_SEQUENCES`] is left above the next one (or every sequence is used now).
    fn sequence_changed(&self) -> bool {
        self.authors.marks_ref().on() && self.persisted_sequence != self.reservation()
    }

    /// What the store should hold as the next sequence: this node's next one plus
    /// [`RESERVED_SEQUENCES`], kept while at least half of that is left; `u64::MAX` once
    /// every sequence is used.
    fn reservation(&self) -> Option<u64> {
        let Some(next) = self.next_sequence else {
            return Some(u64::MAX);
        };
        match self.persisted_sequence {
            Some(reserved) if next.saturating_add(RESERVED_SEQUENCES / 2) <= reserved => {
                Some(reserved)
            }
            _ => Some(next.saturating_add(RESERVED_SEQUENCES)),
        }
    }

    /// What changed in the durable state since the last call (everything, the first time
    /// after a restore that dropped something), for a durable store to write in one
    /// transaction. Empty unless [`Engine::restore`] was called.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        if self.sequence_changed() {
            self.persisted_sequence = self.reservation();
            changes.next_sequence = self.persisted_sequence;
        }
        let authors = self.authors.marks().take();
        let messages = self.store.marks().take();
        let (Ok(authors), Ok(messages)) = (authors, messages) else {
            changes.everything = true;
            changes.put_authors = self.authors.records().collect();
            changes.put_messages = self.store.envelopes().cloned().collect();
            self.persisted_sequence = self.reservation();
            changes.next_sequence = self.persisted_sequence;
            return changes;
        };
        for author in authors {
            match self.authors.record(&author) {
                Some(record) => changes.put_authors.push((author, record)),
                None => changes.delete_authors.push(author),
            }
        }
        for id in messages {
            match self.store.get(&id) {
                Some(envelope) => changes.put_messages.push(envelope.clone()),
                None => changes.delete_messages.push(id),
            }
        }
        changes
    }
}
