//! What a node keeps about one connected peer. Everything here is bounded in bytes:
//! knowledge and refusals by [`Knowledge`]'s limits, announcements by what the node holds.

use super::Millis;
use super::knowledge::{Knowledge, KnowledgeLimits};
use super::store::Store;
use super::wants::IdSets;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;

/// One id or ranges of them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ids<'a> {
    One(u64),
    Ranges(&'a RangeSet),
}

#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// Ids the peer has: announced by it, sent by it, or sent to it.
    pub(crate) has: Knowledge,
    /// Ids the peer sent and this node dropped unverified (outside the time window, too
    /// large): not asked of this peer again. Kept per peer, so one peer's unverified claim
    /// never stops the node from pulling a valid copy from another.
    pub(crate) refused: Knowledge,
    /// Ids wanted of the peer whose want failed and went to another peer: it is not asked
    /// for them again until every peer known to have them has had its turn (so peers that
    /// announce and never answer cannot pass a want between them, `pull.rs` `reroute`).
    /// Only for authors the node tracks or pulls, bounded as `has`.
    pub(crate) tried: Knowledge,
    /// Ids accepted since the peer's last round that it may lack: the next round's `have`.
    pub(crate) announce: IdSets,
    announce_ranges: usize,
    /// When the queue is next cut down to what is held (it doubles each time, so cutting
    /// costs O(1) per id queued).
    announce_limit: usize,
    /// Ids the peer announced that this node lacks, beyond the peer's want budget: asked as
    /// room frees up. At most `max_ranges_per_peer` ranges (whole authors go beyond it).
    backlog: IdSets,
    backlog_ranges: usize,
    /// When the connection came up.
    pub(crate) connected_at: Millis,
    /// Whether the peer's first frame has arrived (before it, rounds skip the peer: its
    /// complete digest is on its way and would make announcements redundant).
    pub(crate) synced: bool,
    /// A round was skipped because the peer was not synced: run it when it syncs.
    pub(crate) round_due: bool,
    /// When a complete digest of the peer's was last answered.
    pub(crate) last_resync: Option<Millis>,
    /// A frame to the peer was dropped (its queue was full) and the driver has not yet
    /// reported the queue drained: nothing is pushed to it and its wants are not answered
    /// (what they name is announced instead); new messages are only announced.
    pub(crate) congested: bool,
    /// A complete digest to the peer was dropped: send another when the queue drains.
    pub(crate) resend_complete: bool,
    /// The tree: whether new messages are pushed to this peer (else announced).
    pub(crate) eager: bool,
    /// Until then a duplicate from this peer does not prune it (a catch-up or an answer to a
    /// graft may still be in flight).
    pub(crate) tree_grace_until: Millis,
    /// Ids the peer announced while lazy, waiting `graft_timeout` for an eager copy.
    deferred: IdSets,
    deferred_ranges: usize,
    /// When the deferred ids are due.
    pub(crate) graft_at: Option<Millis>,
    /// Tree control in a frame to the peer that was dropped: sent again (for the link's
    /// role by then) when the queue drains.
    pub(crate) resend_tree: bool,
}

impl Peer {
    /// Queues ids of `author` for the next round's announcement. If the queue grows past
    /// `max_ranges` (rounds are stopped, or far apart), it is cut down to what the node still
    /// holds, which the store bounds.
    pub(crate) fn queue_announce<P: Clone + Ord>(
        &mut self,
        author: &PublicKey,
        ids: Ids<'_>,
        store: &Store<P>,
        max_ranges: usize,
    ) {
        let set = self.announce.entry(*author).or_default();
        self.announce_ranges -= set.range_count();
        match ids {
            Ids::One(sequence) => {
                set.insert(sequence);
            }
            Ids::Ranges(ranges) => set.union_with(ranges),
        }
        self.announce_ranges += set.range_count();
        if self.announce_ranges > self.announce_limit.max(max_ranges) {
            self.announce
                .retain(|author, set| match store.held(author) {
                    Some(held) => {
                        *set = set.intersection(held);
                        !set.is_empty()
                    }
                    None => false,
                });
            self.announce_ranges = self.announce.values().map(|s| s.range_count()).sum();
            self.announce_limit = self.announce_ranges.saturating_mul(2);
        }
    }

    /// Keeps announced ids of `author` to ask for when there is room, within `max_ranges`.
    pub(crate) fn add_backlog(&mut self, author: &PublicKey, ids: &RangeSet, max_ranges: usize) {
        let set = self.backlog.entry(*author).or_default();
        self.backlog_ranges -= set.range_count();
        set.union_with(ids);
        set.forget_lowest(max_ranges);
        self.backlog_ranges += set.range_count();
        while self.backlog_ranges > max_ranges {
            let Some((_, dropped)) = self.backlog.pop_first() else {
                break;
            };
            self.backlog_ranges -= dropped.range_count();
        }
    }

    /// Keeps announced ids of `author` for the graft timer, within `max_ranges`.
    pub(crate) fn defer(&mut self, author: &PublicKey, ids: &RangeSet, max_ranges: usize) {
        let set = self.deferred.entry(*author).or_default();
        self.deferred_ranges -= set.range_count();
        set.union_with(ids);
        set.forget_lowest(max_ranges);
        self.deferred_ranges += set.range_count();
        while self.deferred_ranges > max_ranges {
            let Some((_, dropped)) = self.deferred.pop_first() else {
                break;
            };
            self.deferred_ranges -= dropped.range_count();
        }
    }

    /// Takes the deferred announcements.
    pub(crate) fn take_deferred(&mut self) -> IdSets {
        self.deferred_ranges = 0;
        std::mem::take(&mut self.deferred)
    }

    /// Takes the backlog.
    pub(crate) fn take_backlog(&mut self) -> IdSets {
        self.backlog_ranges = 0;
        std::mem::take(&mut self.backlog)
    }

    /// Forgets everything about `author` (no longer tracked, or blocked).
    pub(crate) fn forget_author(&mut self, author: &PublicKey) {
        self.has.remove_author(author);
        self.refused.remove_author(author);
        self.tried.remove_author(author);
        if let Some(set) = self.announce.remove(author) {
            self.announce_ranges -= set.range_count();
        }
        if let Some(set) = self.backlog.remove(author) {
            self.backlog_ranges -= set.range_count();
        }
        if let Some(set) = self.deferred.remove(author) {
            self.deferred_ranges -= set.range_count();
        }
    }

    /// Takes the queued announcements.
    pub(crate) fn take_announce(&mut self) -> IdSets {
        self.announce_ranges = 0;
        std::mem::take(&mut self.announce)
    }

    pub(crate) fn check_invariants(&self, limits: KnowledgeLimits) {
        self.has.check_invariants(limits);
        self.refused.check_invariants(limits);
        self.tried.check_invariants(limits);
        let ranges: usize = self.announce.values().map(|s| s.range_count()).sum();
        assert_eq!(ranges, self.announce_ranges);
        let ranges: usize = self.backlog.values().map(|s| s.range_count()).sum();
        assert_eq!(ranges, self.backlog_ranges);
        assert!(
            self.backlog_ranges <= limits.per_peer.max(1),
            "backlog bound"
        );
    }
}
