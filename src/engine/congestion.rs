//! Peers whose outbound queue overflowed: the driver dropped a frame to them and has not yet
//! reported the queue drained.
//!
//! Rules, all here (the engine applies them where it sends):
//! - a congested peer is pushed nothing and its wants are not answered: what would have gone
//!   is queued for announcement instead (it goes with the next round or lazy announcement,
//!   and at the latest when the queue drains), and it asks again. So a peer that reads slowly
//!   costs one frame's work per drained queue, however many wants it sends;
//! - a dropped complete digest, and dropped tree control, are sent again once the queue
//!   drains (the tree control for the link's role by then);
//! - what a dropped frame carried is no longer believed known there and is announced again
//!   (the engine's `frame_dropped`).
//!
//! Bounds: one entry per congested connected peer.

use std::collections::BTreeMap;

/// What to send again once a congested peer's queue drains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resend {
    /// A complete digest was dropped.
    pub(crate) complete: bool,
    /// Tree control was dropped.
    pub(crate) tree: bool,
}

#[derive(Debug)]
pub(crate) struct Congestion<P> {
    congested: BTreeMap<P, Resend>,
}

impl<P: Clone + Ord> Congestion<P> {
    pub(crate) fn new() -> Self {
        Congestion {
            congested: BTreeMap::new(),
        }
    }

    pub(crate) fn is_congested(&self, peer: &P) -> bool {
        self.congested.contains_key(peer)
    }

    /// A frame to `peer` was dropped; `complete` and `tree` say what it carried that must be
    /// sent again.
    pub(crate) fn dropped(&mut self, peer: &P, complete: bool, tree: bool) {
        let resend = self.congested.entry(peer.clone()).or_default();
        resend.complete |= complete;
        resend.tree |= tree;
    }

    /// `peer`'s queue drained: what to send again, if it was congested.
    pub(crate) fn drained(&mut self, peer: &P) -> Option<Resend> {
        self.congested.remove(peer)
    }

    /// `peer` is gone (or replaced: a new connection starts uncongested).
    pub(crate) fn disconnected(&mut self, peer: &P) {
        self.congested.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_dropped_is_resent_once_when_the_queue_drains() {
        let mut c = Congestion::new();
        // (dropped complete, dropped tree) per frame → what the drain resends
        c.dropped(&1u8, false, true);
        c.dropped(&1, true, false);
        assert!(c.is_congested(&1) && !c.is_congested(&2));
        assert_eq!(
            c.drained(&1),
            Some(Resend {
                complete: true,
                tree: true
            })
        );
        assert_eq!(c.drained(&1), None, "once");
        c.dropped(&2, false, false);
        c.disconnected(&2);
        assert_eq!(c.drained(&2), None, "a new connection starts uncongested");
    }
}
