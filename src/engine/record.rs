//! Track records: what each peer has done for this node, kept across its reconnects.
//!
//! Rules, all here:
//! - a peer is *useful* when it delivers a message this node did not have (pushed first, or
//!   in answer to a want), and *fails* when a want of it reaches its deadline without
//!   progress, when it leaves with wants of it outstanding (so a liar cannot escape its
//!   deadline by reconnecting), or when the application rejects (or never decides) a
//!   message it sent;
//! - a peer whose probe (`wants.rs`) lapsed unanswered, or that left with one outstanding,
//!   is not probed again for [`FAILED_FOR`], nor takes ids from a failed peer's longer wait
//!   (`pull.rs`) meanwhile; its standing does not change (a probe can go unanswered for
//!   reasons that are not the peer's);
//! - its [`Standing`]: [`Standing::Proven`] if it was useful at least [`FAILED_FOR`] after
//!   its last failure (or never failed), [`Standing::Failed`] otherwise once it has failed,
//!   [`Standing::Unknown`] if neither ever happened (every new peer id). So a peer that
//!   fails and then relays one envelope stays failed for a minute. A Sybil that never delivered anything first
//!   is never better than unknown, however it reconnects; a fresh peer id is unknown, never
//!   proven;
//! - the record of a peer id outlives its connections: a peer that reconnects keeps its
//!   standing;
//! - at most [`MAX_RECORDS`] peer ids are remembered; beyond that, among the
//!   [`EVICTION_SCAN`] whose records changed least recently, one that is not proven is
//!   forgotten first (fresh ids that churn push out each other before honest records).
//!
//! What it does not stop: a message of a peer's own throwaway author is as new as any, so a
//! Sybil that publishes is proven (until its next failure) for the price of a signature and
//! of a message every node accepts (under the author table's and the store's bounds).
//! Crediting only authors another peer introduced was tried: it denies honest authors and
//! the first relay of each author their credit, and in the simulator (100 honest nodes
//! among 400 liars) the liars' p99 went from 442 to 1,189 ms.
//!
//! Who uses it: the want turns rank candidates by standing first (`wants.rs`), an id wanted
//! of a peer that is not proven moves at once to a proven announcer, and a failed peer is
//! given longer to answer in a pull's later rounds (`pull.rs`), so liars that announce
//! everything and never answer hold a pull for at most the time it takes a proven peer to
//! announce the ids, and cost fewer wants the longer they stay; the tree keeps no failed
//! peer's link eager without a delivery (`tree.rs`).

use super::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// How many peer ids' records are kept (about 100 bytes each with a libp2p `PeerId`).
pub(crate) const MAX_RECORDS: usize = 4_096;

/// How long after a failure nothing a peer delivers proves it again: a peer that fails
/// cannot be proven by relaying one envelope after each failure.
pub(crate) const FAILED_FOR: Millis = 60_000;

/// How many of the least recently changed records are looked at for one that is not
/// proven, when one must go.
const EVICTION_SCAN: usize = 64;

/// What a peer's record says of it, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Standing {
    /// Useful since its last failure.
    Proven,
    /// Nothing recorded: a new peer id.
    Unknown,
    /// Failed since it was last useful.
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    /// When it last delivered something new (0: never).
    useful_at: Millis,
    /// When it last failed (0: never).
    failed_at: Millis,
    /// When a probe of it last lapsed unanswered (0: never).
    unprobed_at: Millis,
    /// When the record last changed, in changes made so far (the eviction order).
    touched: u64,
}

/// Every remembered peer's record.
#[derive(Debug)]
pub(crate) struct Records<P> {
    records: BTreeMap<P, Record>,
    by_touch: BTreeSet<(u64, P)>,
    changes: u64,
}

impl<P: Clone + Ord> Records<P> {
    pub(crate) fn new() -> Self {
        Records {
            records: BTreeMap::new(),
            by_touch: BTreeSet::new(),
            changes: 0,
        }
    }

    /// `peer` delivered a message this node did not have, at `now`. A lapsed probe is
    /// forgotten: it answers again.
    pub(crate) fn useful(&mut self, peer: &P, now: Millis) {
        self.update(peer, |r| {
            r.useful_at = r.useful_at.max(now.max(1));
            r.unprobed_at = 0;
        });
    }

    /// A want of `peer` timed out without progress, or the application turned down what it
    /// sent, at `now`.
    pub(crate) fn failed(&mut self, peer: &P, now: Millis) {
        self.update(peer, |r| r.failed_at = r.failed_at.max(now.max(1)));
    }

    /// A probe of `peer` (`wants.rs`) lapsed unanswered at `now` ([`Records::answers`]). Its
    /// standing does not change: a probe can go unanswered for reasons that are not the
    /// peer's (an id that expired there, a frame dropped on the way, a full queue), and a
    /// failed standing costs a peer its tree places and its turn.
    pub(crate) fn probe_lapsed(&mut self, peer: &P, now: Millis) {
        self.update(peer, |r| r.unprobed_at = r.unprobed_at.max(now.max(1)));
    }

    /// Whether `peer` was not caught leaving a request unanswered lately: it has not failed,
    /// and no probe of it lapsed within [`FAILED_FOR`]. Only such a peer is probed, and takes
    /// ids from a failed peer's longer wait (`pull.rs`).
    pub(crate) fn answers(&self, peer: &P, now: Millis) -> bool {
        self.standing(peer) != Standing::Failed
            && self.records.get(peer).is_none_or(|r| {
                r.unprobed_at == 0 || now >= r.unprobed_at.saturating_add(FAILED_FOR)
            })
    }

    /// `peer`'s standing.
    pub(crate) fn standing(&self, peer: &P) -> Standing {
        match self.records.get(peer) {
            None => Standing::Unknown,
            Some(r) if r.failed_at == 0 && r.useful_at > 0 => Standing::Proven,
            Some(r) if r.failed_at > 0 && r.useful_at >= r.failed_at.saturating_add(FAILED_FOR) => {
                Standing::Proven
            }
            Some(r) if r.failed_at > 0 => Standing::Failed,
            Some(_) => Standing::Unknown,
        }
    }

    fn update(&mut self, peer: &P, change: impl FnOnce(&mut Record)) {
        self.changes += 1;
        let touched = self.changes;
        let record = match self.records.get_mut(peer) {
            Some(r) => {
                self.by_touch.remove(&(r.touched, peer.clone()));
                r
            }
            None => {
                if self.records.len() >= MAX_RECORDS {
                    let victim = self
                        .by_touch
                        .iter()
                        .take(EVICTION_SCAN)
                        .find(|(_, p)| self.standing(p) != Standing::Proven)
                        .or_else(|| self.by_touch.first())
                        .cloned();
                    if let Some((touched, peer)) = victim {
                        self.by_touch.remove(&(touched, peer.clone()));
                        self.records.remove(&peer);
                    }
                }
                self.records.entry(peer.clone()).or_insert(Record {
                    useful_at: 0,
                    failed_at: 0,
                    unprobed_at: 0,
                    touched,
                })
            }
        };
        change(record);
        record.touched = touched;
        self.by_touch.insert((touched, peer.clone()));
    }

    /// How many peers are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Panics if the eviction order and the records disagree, or the bound is broken.
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        assert!(self.records.len() <= MAX_RECORDS);
        assert_eq!(self.records.len(), self.by_touch.len());
        for (touched, peer) in &self.by_touch {
            assert_eq!(self.records[peer].touched, *touched);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_follows_the_latest_of_useful_and_failed() {
        let mut r: Records<u32> = Records::new();
        assert_eq!(r.standing(&1), Standing::Unknown);
        r.failed(&1, 10);
        assert_eq!(r.standing(&1), Standing::Failed);
        r.useful(&1, 20);
        assert_eq!(
            r.standing(&1),
            Standing::Failed,
            "within a minute of failing"
        );
        r.useful(&1, 10 + FAILED_FOR);
        assert_eq!(r.standing(&1), Standing::Proven);
        r.failed(&1, 20 + FAILED_FOR);
        assert_eq!(r.standing(&1), Standing::Failed);
        r.useful(&2, 5);
        assert_eq!(r.standing(&2), Standing::Proven);
        assert!(Standing::Proven < Standing::Unknown && Standing::Unknown < Standing::Failed);
        r.check_invariants();
    }

    #[test]
    fn at_the_bound_an_old_record_that_is_not_proven_goes_first() {
        let mut r: Records<u32> = Records::new();
        for p in 0..MAX_RECORDS as u32 {
            if p == 5 {
                r.failed(&p, 1);
            } else {
                r.useful(&p, 1);
            }
        }
        r.failed(&(MAX_RECORDS as u32), 3);
        assert_eq!(r.len(), MAX_RECORDS);
        assert_eq!(
            r.standing(&5),
            Standing::Unknown,
            "the failed old record went"
        );
        assert_eq!(
            r.standing(&0),
            Standing::Proven,
            "the oldest, proven, stayed"
        );
        // With no record that is not proven among the oldest, the oldest goes.
        r.useful(&(MAX_RECORDS as u32 + 1), 4);
        assert_eq!(r.standing(&0), Standing::Unknown);
        assert_eq!(r.len(), MAX_RECORDS);
        r.check_invariants();
    }
}
