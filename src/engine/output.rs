//! What the engine tells its driver: [`Output`], [`Violation`], [`PublishError`], [`Stats`].

use crate::envelope::{Envelope, Message, MessageId};
use crate::frame::{Frame, FrameError};
use std::fmt;

/// What the engine asks its driver to do, or tells it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output<P> {
    /// Send `frame` to `peer`.
    Send {
        /// The peer.
        peer: P,
        /// The frame.
        frame: Frame,
    },
    /// A new message, verified, delivered once per node (never to its own author).
    Deliver {
        /// The message.
        message: Message,
        /// The peer it came from.
        from: P,
    },
    /// `peer` broke the protocol: the engine no longer gossips with it (for `violation_ban`);
    /// the driver closes its gossip. Messages it sent before the violation were kept.
    Violation {
        /// The peer.
        peer: P,
        /// What it did.
        violation: Violation,
    },
    /// `peer`'s ban (after a violation or a stall) is over: if the driver kept its
    /// connection, gossip with it may start again ([`Input::Connected`](super::Input)).
    BanLifted {
        /// The peer.
        peer: P,
    },
    /// A complete digest of `peer`'s has been handled and nothing this node asked of it is
    /// outstanding (ids being pulled from another peer, or given up on, are not waited for).
    /// Reported once per connection; not for a peer whose digest did not fit one frame.
    CaughtUp {
        /// The peer.
        peer: P,
    },
    /// Most fresh envelopes from peers fall outside this node's time window: its clock (or
    /// most peers') is probably wrong. Reported once until it recovers (`skew.rs`).
    ClockSkew {
        /// The median of the peers' timestamps minus this node's time, in milliseconds:
        /// positive when the peers' clocks are ahead.
        estimated_offset_ms: i64,
    },
    /// Proof that an author signed two different messages with one id.
    Equivocation {
        /// The copy this node holds (and delivered).
        first: Envelope,
        /// The conflicting copy, with a valid signature.
        second: Envelope,
        /// The peer that sent the second copy.
        from: P,
    },
}

/// A protocol violation by a peer (`docs/PROTOCOL.md` §1).
#[derive(Debug)]
#[non_exhaustive]
pub enum Violation {
    /// A frame that does not decode or breaks a structural rule or limit.
    Malformed(FrameError),
    /// An envelope whose signature fails strict verification.
    InvalidSignature {
        /// The envelope's id.
        id: MessageId,
    },
}

/// What kind of rule a [`Violation`] broke, for metrics labels and for matching in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ViolationKind {
    /// [`Violation::Malformed`].
    Malformed,
    /// [`Violation::InvalidSignature`].
    InvalidSignature,
}

impl ViolationKind {
    /// Every kind.
    pub const ALL: [ViolationKind; 2] = [ViolationKind::Malformed, ViolationKind::InvalidSignature];

    /// The kind's name in snake case (the `kind` label of the violations metric).
    pub fn as_str(&self) -> &'static str {
        match self {
            ViolationKind::Malformed => "malformed",
            ViolationKind::InvalidSignature => "invalid_signature",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Violation {
    /// What kind of rule this broke.
    pub fn kind(&self) -> ViolationKind {
        match self {
            Violation::Malformed(_) => ViolationKind::Malformed,
            Violation::InvalidSignature { .. } => ViolationKind::InvalidSignature,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Malformed(e) => write!(f, "malformed frame: {e}"),
            Violation::InvalidSignature { id } => write!(f, "invalid signature on {id}"),
        }
    }
}

impl std::error::Error for Violation {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Violation::Malformed(e) => Some(e),
            Violation::InvalidSignature { .. } => None,
        }
    }
}

/// Why [`Engine::import`](super::Engine::import) refused an envelope: the same checks as
/// for one from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportError {
    /// The node knows the id already (received, published, or expired).
    AlreadyKnown,
    /// The timestamp is outside `[now − max_age, now + max_clock_skew]`.
    OutsideWindow {
        /// The envelope's timestamp.
        timestamp: u64,
        /// This node's time.
        now: u64,
    },
    /// The payload is larger than `max_payload_size`.
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The author filter refuses the author.
    Filtered,
    /// The author table has no room for a new author now.
    NoRoomForAuthor,
    /// The id is too far from the author's known ids (`max_ranges_per_author`).
    TooFragmented,
    /// The signature fails strict verification.
    InvalidSignature,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::AlreadyKnown => write!(f, "the message is already known"),
            ImportError::OutsideWindow { timestamp, now } => write!(
                f,
                "timestamp {timestamp} is outside the time window at {now} (max_age, max_clock_skew)"
            ),
            ImportError::PayloadTooLarge { size, max } => {
                write!(f, "payload is {size} bytes, max_payload_size is {max}")
            }
            ImportError::Filtered => write!(f, "the author filter refuses the author"),
            ImportError::NoRoomForAuthor => write!(f, "no room to track a new author"),
            ImportError::TooFragmented => write!(
                f,
                "the id is too far from the author's known ids (max_ranges_per_author)"
            ),
            ImportError::InvalidSignature => write!(f, "the signature fails strict verification"),
        }
    }
}

impl std::error::Error for ImportError {}

/// Why [`Engine::publish`](super::Engine::publish) refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload is larger than `max_payload_size`.
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The author's sequence numbers are used up (`u64::MAX` reached).
    SequenceExhausted,
    /// The durable store has not written a reservation covering the next sequence (its
    /// writes keep failing): publishing now could sign a sequence again after a crash.
    NotWritten,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::PayloadTooLarge { size, max } => {
                write!(f, "payload is {size} bytes, max_payload_size is {max}")
            }
            PublishError::SequenceExhausted => write!(f, "sequence numbers are exhausted"),
            PublishError::NotWritten => write!(
                f,
                "the durable store has not written the sequences ahead: publishing waits for \
                 its next successful write"
            ),
        }
    }
}

impl std::error::Error for PublishError {}

/// Counters of what the engine has done, for tests, metrics and the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages published by this node.
    pub published: u64,
    /// Messages delivered to the application.
    pub delivered: u64,
    /// Envelopes received whose id was already known (dropped without verifying).
    pub duplicates: u64,
    /// Envelopes dropped as outside the time window or over `max_payload_size`.
    pub out_of_window: u64,
    /// Of those, envelopes older than `max_age`…
    pub too_old: u64,
    /// …and envelopes stamped more than `max_clock_skew` ahead of this node's clock.
    pub too_new: u64,
    /// Wants made due at once because another peer announced their ids after the peer
    /// asked had missed a deadline for them.
    pub wants_hurried: u64,
    /// Wants also sent to another peer because the peer they went to after a timeout is
    /// not proven (hedges).
    pub wants_hedged: u64,
    /// Signatures verified by the connection handlers for envelopes the engine then dropped
    /// before its signature step (each is charged to the sender's inbound budget once more).
    pub verified_discarded: u64,
    /// Of `verified`, signatures the engine verified itself, on the driver's task (the
    /// handlers verify the others on their own; the simulator has no handlers).
    pub verified_by_engine: u64,
    /// Envelopes of new authors refused because the author table was full (see
    /// `docs/PROTOCOL.md`, tracked authors).
    pub authors_full: u64,
    /// Envelopes dropped for now because their id would give the author too many ranges of
    /// known ids (sent far out of order).
    pub too_fragmented: u64,
    /// Tracked authors forgotten to make room for a new one before their messages aged out.
    pub authors_displaced: u64,
    /// Equivocations proven (each reported once).
    pub equivocations: u64,
    /// Signatures verified (by the handlers ahead, or by the engine; an envelope verified
    /// before and passed on as such is not counted again).
    pub verified: u64,
    /// Envelopes of authors the filter refuses (dropped before their signature is checked).
    pub filtered: u64,
    /// Messages the application accepted, rejected, or ignored (or did not decide in time).
    pub accepted: u64,
    /// See `accepted`.
    pub rejected: u64,
    /// See `accepted`.
    pub ignored: u64,
    /// Of `ignored`, messages not decided within `validation_timeout` (each counts against
    /// the peer that sent it).
    pub validation_timeouts: u64,
    /// Tree: `prune`s sent (a duplicate came over a link, a link was trimmed or its silent
    /// peer demoted, or a link that was lazy came back; several can share a frame; an author
    /// link ended alone is not counted) and `graft`s sent (an announced id had no eager copy
    /// within `graft_timeout`).
    pub prunes: u64,
    /// See `prunes`.
    pub grafts: u64,
    /// Complete digests answered by pushing what the peer lacks.
    pub resyncs: u64,
    /// Complete digests read as announcements only (within `min_resync_interval` of the
    /// peer's previous one).
    pub resyncs_limited: u64,
}
