//! The sans-IO protocol engine: every rule of what a node sends, accepts, keeps and delivers.
//!
//! [`Engine`] has no sockets, no tasks and no clock. Inputs are method calls with the current
//! time (`now`, milliseconds since the Unix epoch) passed in: [`Engine::connect`],
//! [`Engine::handle_frame`], [`Engine::publish`], [`Engine::gossip`],
//! [`Engine::handle_timeout`]. Outputs are drained with [`Engine::poll_output`]: frames to
//! send, messages to deliver, peers that broke the protocol. [`Engine::poll_timeout`] says
//! when the engine next wants [`Engine::handle_timeout`]. The libp2p
//! [`Behaviour`](crate::Behaviour) is one driver; the test simulator is another.
//!
//! Where each rule lives: the order of checks for a received envelope and what happens to
//! an accepted message in `receive.rs`; the have/want exchange (pushes after a complete
//! digest, wants, answers, retries) in `pull.rs`; rounds in `round.rs`; retention and
//! tracked authors in `store.rs`; per-peer knowledge in `peer.rs`; frame sizes in
//! `outbox.rs`.

mod outbox;
mod peer;
mod pull;
mod receive;
mod round;
mod store;

use crate::config::Config;
use crate::envelope::{Envelope, Message, MessageId};
use crate::frame::{Frame, FrameError};
use crate::keys::{Keypair, PublicKey};
use crate::ranges::RangeSet;
use outbox::Outbox;
use peer::Peer;
use prost::bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::{fmt, time::Duration};
use store::Store;

/// Milliseconds since the Unix epoch: the engine's only notion of time.
pub type Millis = u64;

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
    /// `peer` broke the protocol: close its connection. Messages it sent before the violation
    /// were kept.
    Violation {
        /// The peer.
        peer: P,
        /// What it did.
        violation: Violation,
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

/// A protocol violation by a peer (DESIGN §2).
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

/// Why [`Engine::publish`] refused a message.
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
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::PayloadTooLarge { size, max } => {
                write!(f, "payload is {size} bytes, max_payload_size is {max}")
            }
            PublishError::SequenceExhausted => write!(f, "sequence numbers are exhausted"),
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
    /// Envelopes of new authors dropped because no tracked author could be forgotten.
    pub authors_full: u64,
    /// Equivocations proven.
    pub equivocations: u64,
    /// Signatures verified.
    pub verified: u64,
}

/// The protocol state of one node. `P` names peers (a libp2p `PeerId`, or an index in a
/// simulation); iteration over peers follows `P`'s order, so runs are deterministic.
pub struct Engine<P> {
    config: Config,
    keys: Keypair,
    me: PublicKey,
    next_sequence: Option<u64>,
    store: Store,
    peers: BTreeMap<P, Peer>,
    outbox: Outbox<P>,
    outputs: VecDeque<Output<P>>,
    next_round: Option<Millis>,
    stats: Stats,
}

impl<P> fmt::Debug for Engine<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .field("stored", &self.store.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P: Clone + Ord> Engine<P> {
    /// A node signing with `keys`. Its first sequence is `config`'s `start_sequence`, or
    /// `now` in microseconds (DESIGN §2), so a restarted author never reuses a number.
    pub fn new(keys: Keypair, config: Config, now: Millis) -> Self {
        let me = keys.public();
        let next_sequence = Some(
            config
                .start_sequence
                .unwrap_or_else(|| now.saturating_mul(1000).max(1)),
        );
        let mut engine = Engine {
            store: Store::new(me, &config),
            next_round: None,
            config,
            keys,
            me,
            next_sequence,
            peers: BTreeMap::new(),
            outbox: Outbox::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        };
        engine.schedule_round(now);
        engine
    }

    /// The next round is one interval from `now` (none without an interval).
    fn schedule_round(&mut self, now: Millis) {
        self.next_round = self
            .config
            .gossip_interval
            .map(|i| now.saturating_add(millis(i)));
    }

    /// The author key this node signs with.
    pub fn public_key(&self) -> PublicKey {
        self.me
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the node knows `id`: it verified and accepted the message (delivered or
    /// published, held or expired since).
    pub fn knows(&self, id: &MessageId) -> bool {
        self.store.knows(id)
    }

    /// Whether an envelope with `id` was dropped unverified (outside the time window or too
    /// large). Such an id is not asked for again, but a later valid copy is still accepted.
    pub fn dropped(&self, id: &MessageId) -> bool {
        self.store.was_dropped(id)
    }

    /// A held message.
    pub fn message(&self, id: &MessageId) -> Option<&Envelope> {
        self.store.get(id)
    }

    /// How many messages are held, and their accounted size in bytes.
    pub fn stored(&self) -> (usize, usize) {
        (self.store.len(), self.store.bytes())
    }

    /// How many authors are tracked (this node's own included).
    pub fn tracked_authors(&self) -> usize {
        self.store.author_count()
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    /// Changes the round interval; `None` stops periodic rounds ([`Engine::gossip`] still
    /// runs one).
    pub fn set_gossip_interval(&mut self, interval: Option<Duration>, now: Millis) {
        self.config.gossip_interval = interval;
        self.schedule_round(now);
    }

    /// The earliest time at which [`Engine::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let wants = self.peers.values().filter_map(|p| p.ask_deadline).min();
        [self.next_round, wants, self.store.next_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// A connection to `peer` is up (or was replaced): send it the complete digest. Any state
    /// about an earlier connection to it is dropped.
    pub fn connect(&mut self, peer: P, now: Millis) {
        self.remove_peer(&peer, now);
        let mut state = Peer::default();
        state.dirty.extend(self.store.authors_holding().copied());
        self.peers.insert(peer.clone(), state);
        self.outbox.complete(&peer, self.store.digest());
        self.flush();
    }

    /// The connection to `peer` is gone. What was asked of it is asked of other peers known
    /// to have it.
    pub fn disconnect(&mut self, peer: &P, now: Millis) {
        self.remove_peer(peer, now);
        self.flush();
    }

    /// Forgets `peer` (gone, replaced, or in violation); its outstanding wants are asked of
    /// the other peers known to have the ids.
    fn remove_peer(&mut self, peer: &P, now: Millis) {
        if let Some(state) = self.peers.remove(peer) {
            self.ask_elsewhere(state.asked, None, now);
        }
    }

    /// Signs and stores a new message, and pushes it to every peer at once when
    /// `eager_push` is on. Succeeds with no peer connected: the message goes out when
    /// peers come (within retention).
    pub fn publish(
        &mut self,
        payload: impl Into<Bytes>,
        now: Millis,
    ) -> Result<MessageId, PublishError> {
        let payload = payload.into();
        if payload.len() > self.config.max_payload_size {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                max: self.config.max_payload_size,
            });
        }
        let sequence = self.next_sequence.ok_or(PublishError::SequenceExhausted)?;
        self.next_sequence = sequence.checked_add(1);
        let envelope =
            Envelope::sign(&self.keys, sequence, now, payload).expect("sequence is at least 1");
        let id = envelope.id();
        self.stats.published += 1;
        self.accept(envelope, None, now);
        self.flush();
        Ok(id)
    }

    /// Runs one gossip round now (as the timer would).
    pub fn gossip(&mut self, now: Millis) {
        let _ = now; // A round needs no time; kept for symmetry with every other input.
        self.round();
        self.flush();
    }

    /// Does whatever is due at `now`: a round, wants to ask again, messages to expire.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.next_round.is_some_and(|t| t <= now) {
            self.round();
            self.schedule_round(now);
        }
        self.retry_wants(now);
        self.store.expire(now);
        self.flush();
    }

    /// A frame the driver could not deliver to `peer` (its queue was full): what it carried
    /// is no longer assumed known there, so later rounds announce it again. Wants it carried
    /// stay outstanding and are asked again when their retry deadline passes.
    pub fn frame_dropped(&mut self, peer: &P, frame: &Frame) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        for envelope in &frame.messages {
            let s = envelope.sequence();
            state.forget(envelope.author(), &RangeSet::from_range(s, s));
        }
        for digest in &frame.have {
            state.forget(&digest.author, &digest.ranges);
        }
    }

    /// A frame from `peer`. Envelopes come first (each through the checks in `receive`),
    /// then `have`, then `want`. A violation stops the frame and is reported; what was
    /// accepted before it stays accepted.
    pub fn handle_frame(&mut self, peer: P, frame: Frame, now: Millis) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        let Frame {
            messages,
            have,
            want,
            complete,
        } = frame;
        let mut fulfilled = false;
        for envelope in messages {
            match self.receive(&peer, envelope, now) {
                Ok(was_asked) => fulfilled |= was_asked,
                Err(violation) => {
                    self.remove_peer(&peer, now);
                    self.flush();
                    self.outputs
                        .push_back(Output::Violation { peer, violation });
                    return;
                }
            }
        }
        if fulfilled {
            self.ask_rest(&peer, now);
        }
        self.on_have(&peer, have, complete, now);
        self.on_want(&peer, want);
        if let Some(state) = self.peers.get_mut(&peer)
            && !state.synced
        {
            state.synced = true;
            if std::mem::take(&mut state.round_due) {
                self.round_peer(&peer);
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        self.outbox
            .flush(&self.config.frame_limits(), &mut self.outputs);
    }

    fn peer_limits(&self) -> (usize, usize) {
        (
            self.config.max_tracked_authors,
            self.config.max_ranges_per_author,
        )
    }

    /// Panics if the engine's bookkeeping disagrees with itself. For tests and simulations.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        self.store.check_invariants();
        for state in self.peers.values() {
            assert!(state.asked.values().all(|r| !r.is_empty()));
            assert_eq!(
                state.asked.is_empty(),
                state.ask_deadline.is_none() && state.asked.is_empty()
            );
        }
    }
}

fn millis(d: Duration) -> Millis {
    d.as_millis().min(u64::MAX as u128) as u64
}
