//! What comes into the engine from the network and the clock ([`Input`], through
//! [`Engine::handle`](super::Engine::handle)), and the engine's named timers ([`Timer`]).

use super::Violation;
use crate::frame::Frame;
use crate::verify::VerifiedFrame;

/// An input from the network or the clock ([`Engine::handle`](super::Engine::handle)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<P> {
    /// A connection to `peer` is up (or was replaced): it is sent the complete digest. Any
    /// state about an earlier connection to it is dropped. A banned peer is ignored.
    Connected {
        /// The peer.
        peer: P,
    },
    /// The last connection to `peer` is gone. What was asked of it is asked of other peers
    /// known to have it.
    Disconnected {
        /// The peer.
        peer: P,
    },
    /// A frame from `peer`; the engine verifies the signatures that need it. Envelopes come
    /// first (each through the checks of `docs/PROTOCOL.md` §3.1), then `have`, then `want`. A
    /// violation stops the frame and is reported; what was accepted before it stays.
    Frame {
        /// The peer.
        peer: P,
        /// The frame.
        frame: Frame,
    },
    /// A frame from `peer` whose signatures this crate's connection handlers already checked
    /// (on their own tasks). Only the crate can build a [`VerifiedFrame`].
    Verified {
        /// The peer.
        peer: P,
        /// The frame and its verdicts.
        frame: VerifiedFrame,
    },
    /// `peer`'s bytes broke the protocol before they became a frame (the driver decodes): it
    /// is removed and reported like any other violation.
    Violation {
        /// The peer.
        peer: P,
        /// What it did.
        violation: Violation,
    },
    /// `peer` did not take a frame within `write_timeout` (the driver stopped writing to it):
    /// it is removed like a peer that left, and not gossiped with for `violation_ban`.
    Stalled {
        /// The peer.
        peer: P,
    },
    /// A frame the driver could not send to `peer` (its connection's queue was full, or its
    /// write failed): what it carried is no longer assumed known there and is announced again.
    /// (A frame for a peer that has no connection any more is not an input: the peer's
    /// [`Input::Disconnected`] came first, and a later connection starts afresh.)
    /// Wants it carried stay outstanding and are asked again at their deadline. Until
    /// [`Input::QueueDrained`], the peer is only sent announcements and wants.
    FrameNotSent {
        /// The peer.
        peer: P,
        /// The frame.
        frame: Frame,
    },
    /// The driver's queue to `peer` is empty again after a frame was not sent: it is sent
    /// messages again, starting with announcements of what it missed.
    QueueDrained {
        /// The peer.
        peer: P,
    },
    /// Run one gossip round now (as the round timer would).
    Round,
    /// Whatever timer is due at `now` fires ([`Engine::poll_timeout`](super::Engine::poll_timeout)).
    Timeout,
}

/// The engine's timers, in the order in which those due fire. Each is owned by one
/// component, which reports its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// The next gossip round (`round.rs`).
    Round,
    /// Announcements queued for lazy links (`tree.rs`, `announce_delay`).
    LazyAnnounce,
    /// The earliest want deadline (`wants.rs`).
    Want,
    /// The earliest graft deadline of a lazy peer's deferred announcements (`tree.rs`).
    Graft,
    /// The next step of a tag announced to this node whose id it lacks (`tags.rs`).
    Tag,
    /// The next held message to age out (`store.rs`).
    Expiry,
    /// The next verdict past `validation_timeout` (`validation.rs`).
    Validation,
    /// The next ban to end (`violators.rs`).
    Ban,
}

impl Timer {
    /// Every timer, in firing order.
    pub const ALL: [Timer; 8] = [
        Timer::Round,
        Timer::LazyAnnounce,
        Timer::Want,
        Timer::Graft,
        Timer::Tag,
        Timer::Expiry,
        Timer::Validation,
        Timer::Ban,
    ];
}
