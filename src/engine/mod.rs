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
//! The order of checks for a received envelope (DESIGN §3) is in `receive`; what a round
//! sends is in `round`; what a new connection sends is in `connect` and `on_have`.

mod outbox;
mod peer;
mod store;

use crate::config::Config;
use crate::envelope::{Envelope, Message, MessageId};
use crate::frame::{Digest, Frame, FrameError};
use crate::keys::{Keypair, PublicKey};
use crate::ranges::RangeSet;
use outbox::{Outbox, envelope_len};
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
        Engine {
            store: Store::new(me, &config),
            next_round: config
                .gossip_interval
                .map(|i| now.saturating_add(millis(i))),
            config,
            keys,
            me,
            next_sequence,
            peers: BTreeMap::new(),
            outbox: Outbox::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
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

    /// Whether the node knows `id` (delivered, published, expired or dropped as out of
    /// window).
    pub fn knows(&self, id: &MessageId) -> bool {
        self.store.knows(id)
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
        self.next_round = interval.map(|i| now.saturating_add(millis(i)));
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
        let mut state = Peer::default();
        state.dirty.extend(self.store.authors_holding().copied());
        let earlier = self.peers.insert(peer.clone(), state);
        self.outbox.complete(&peer, self.store.digest());
        if let Some(earlier) = earlier {
            // Wants of the old connection: ask whoever is known to have the ids.
            self.ask_elsewhere(earlier.asked, now);
        }
        self.flush();
    }

    /// The connection to `peer` is gone. What was asked of it is asked of other peers known
    /// to have it.
    pub fn disconnect(&mut self, peer: &P, now: Millis) {
        if let Some(state) = self.peers.remove(peer) {
            self.ask_elsewhere(state.asked, now);
            self.flush();
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
            let interval = self.config.gossip_interval.map(millis).unwrap_or(0);
            self.next_round = self
                .config
                .gossip_interval
                .map(|_| now.saturating_add(interval));
        }
        self.retry_wants(now);
        self.store.expire(now);
        self.flush();
    }

    /// A frame the driver could not deliver to `peer` (its queue was full): what it carried
    /// is no longer assumed known there, so later rounds announce it again.
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
        if !frame.want.is_empty() {
            // Ask again at the next timeout.
            state.ask_deadline = Some(0);
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
                    self.peers.remove(&peer);
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

    /// The checks for one received envelope, cheapest first (DESIGN §3). Returns whether
    /// the envelope was one this node had asked `from` for.
    fn receive(&mut self, from: &P, envelope: Envelope, now: Millis) -> Result<bool, Violation> {
        let id = envelope.id();
        let limits = self.peer_limits();
        if let Some(state) = self.peers.get_mut(from) {
            state.learn_one(&id.author, id.sequence, limits);
        }
        // 1. Sizes (field lengths were checked when the frame was decoded).
        let oversize = envelope.payload().len() > self.config.max_payload_size;
        // 2. A known id is dropped unverified, unless it proves an equivocation.
        if self.store.knows(&id) {
            self.stats.duplicates += 1;
            if let Some(held) = self.store.get(&id)
                && !held.same_signed_content(&envelope)
            {
                self.stats.verified += 1;
                envelope
                    .verify()
                    .map_err(|_| Violation::InvalidSignature { id })?;
                self.stats.equivocations += 1;
                self.outputs.push_back(Output::Equivocation {
                    first: held.clone(),
                    second: envelope,
                    from: from.clone(),
                });
            }
            return Ok(self.fulfil(from, &id));
        }
        // 3. The time window (and the payload limit): not a violation, dropped quietly and
        //    remembered so it is neither asked for nor pushed again.
        let timestamp = envelope.timestamp();
        let too_old = timestamp.saturating_add(millis(self.config.max_age)) < now;
        let too_new = timestamp > now.saturating_add(millis(self.config.max_clock_skew));
        if too_old || too_new || oversize {
            tracing::trace!(message = %id, timestamp, now, oversize, "dropped: outside the window");
            self.stats.out_of_window += 1;
            self.store.mark_known(id, timestamp, now);
            return Ok(self.fulfil(from, &id));
        }
        // 4. Author filter: room to track a new author.
        if self.store.track(&id.author, now).is_err() {
            tracing::debug!(message = %id, "dropped: no room to track a new author");
            self.stats.authors_full += 1;
            return Ok(false);
        }
        // 5. The strict signature.
        self.stats.verified += 1;
        envelope
            .verify()
            .map_err(|_| Violation::InvalidSignature { id })?;
        // 6. Store, deliver, forward.
        let was_asked = self.fulfil(from, &id);
        self.accept(envelope, Some(from), now);
        Ok(was_asked)
    }

    /// Takes `id` off every peer's outstanding wants; returns whether `from` had it asked.
    fn fulfil(&mut self, from: &P, id: &MessageId) -> bool {
        let mut asked_of_sender = false;
        for (peer, state) in &mut self.peers {
            let was = state.received(&id.author, id.sequence);
            asked_of_sender |= was && peer == from;
        }
        asked_of_sender
    }

    /// Stores a new verified message, delivers it (unless this node wrote it) and pushes it
    /// to the peers not known to have it.
    fn accept(&mut self, envelope: Envelope, from: Option<&P>, now: Millis) {
        let id = envelope.id();
        if id.author == self.me {
            // Our own message from an earlier run: never reuse its sequence.
            if self.next_sequence.is_some_and(|n| n <= id.sequence) {
                self.next_sequence = id.sequence.checked_add(1);
            }
        } else if let Some(from) = from {
            self.stats.delivered += 1;
            self.outputs.push_back(Output::Deliver {
                message: envelope.to_message(),
                from: from.clone(),
            });
        }
        self.store.insert(envelope.clone(), now);
        let limits = self.peer_limits();
        let eager = self.config.eager_push;
        for (peer, state) in &mut self.peers {
            state.dirty.insert(id.author);
            if eager && !state.knows(&id.author, id.sequence) {
                state.learn_one(&id.author, id.sequence, limits);
                self.outbox.message(peer, envelope.clone());
            }
        }
    }

    /// A `have` from `peer`. Its ids are recorded as known there. A complete `have` is
    /// answered by pushing what the peer lacks (eager mode; at most one frame, the rest
    /// announced so the peer pulls it at its own pace). An incomplete one is answered by
    /// a `want` for the ids this node lacks and has not asked anyone for.
    fn on_have(&mut self, peer: &P, have: Vec<Digest>, complete: bool, now: Millis) {
        let (max_authors, max_ranges) = self.peer_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        for d in &have {
            state.learn(&d.author, &d.ranges, max_authors, max_ranges);
        }
        if complete {
            if self.config.eager_push {
                self.push_missing(peer);
            }
            return;
        }
        let mut budget = self
            .config
            .max_want_ranges_per_frame
            .saturating_sub(state.asked_ranges());
        let mut wanted = Vec::new();
        for d in have {
            if budget == 0 {
                break;
            }
            let mut missing = match self.store.known(&d.author) {
                Some(known) => d.ranges.difference(known),
                None => d.ranges,
            };
            for (other, s) in &self.peers {
                if let Some(asked) = s.asked.get(&d.author)
                    && other != peer
                {
                    missing = missing.difference(asked);
                }
            }
            missing.forget_lowest(budget);
            if !missing.is_empty() {
                budget -= missing.range_count();
                wanted.push((d.author, missing));
            }
        }
        if wanted.is_empty() {
            return;
        }
        let timeout = millis(self.config.want_timeout);
        let state = self.peers.get_mut(peer).expect("checked above");
        for (author, missing) in wanted {
            self.outbox.want(peer, &author, &missing);
            state.asked.entry(author).or_default().union_with(&missing);
        }
        if state.ask_deadline.is_none() {
            state.ask_deadline = Some(now.saturating_add(timeout));
            state.ask_attempts = 1;
        }
    }

    /// After a complete digest: pushes up to one frame of held messages the peer lacks and
    /// announces the rest.
    fn push_missing(&mut self, peer: &P) {
        let limits = self.peer_limits();
        let frame_limits = self.config.frame_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let mut room = frame_limits.max_frame_size / 2;
        let mut count = frame_limits.max_messages;
        let authors: Vec<PublicKey> = state.dirty.iter().copied().collect();
        state.dirty.clear();
        for author in authors {
            let Some(held) = self.store.held(&author) else {
                continue;
            };
            let mut lacking = match state.has.get(&author) {
                Some(has) => held.difference(has),
                None => held.clone(),
            };
            for envelope in self.store.held_in(&author, &lacking.clone()) {
                let len = envelope_len(envelope);
                if len > room || count == 0 {
                    break;
                }
                room -= len;
                count -= 1;
                let s = envelope.sequence();
                lacking.remove_range(s, s);
                state.learn_one(&author, s, limits);
                self.outbox.message(peer, envelope.clone());
            }
            if !lacking.is_empty() {
                self.outbox.have(peer, &author, &lacking);
                state.announce(&author, &lacking, limits.0, limits.1);
            }
        }
    }

    /// A `want` from `peer`: answered with the held envelopes it names, up to one frame
    /// (the peer asks again for the rest when this frame arrives).
    fn on_want(&mut self, peer: &P, want: Vec<Digest>) {
        let limits = self.peer_limits();
        let frame_limits = self.config.frame_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let mut room = frame_limits.max_frame_size.saturating_sub(64);
        let mut count = frame_limits.max_messages;
        'digests: for d in want {
            for envelope in self.store.held_in(&d.author, &d.ranges) {
                let len = envelope_len(envelope);
                if len > room || count == 0 {
                    break 'digests;
                }
                room -= len;
                count -= 1;
                state.learn_one(&d.author, envelope.sequence(), limits);
                self.outbox.message(peer, envelope.clone());
            }
        }
    }

    /// `peer` just delivered some of what it was asked for: ask at once for the rest (a
    /// want is answered with at most one frame, so this paces a large catch-up).
    fn ask_rest(&mut self, peer: &P, now: Millis) {
        let timeout = millis(self.config.want_timeout);
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let store = &self.store;
        if !state.prune_asked(|author| store.known(author)) {
            return;
        }
        for (author, asked) in &state.asked {
            self.outbox.want(peer, author, asked);
        }
        state.ask_deadline = Some(now.saturating_add(timeout));
        state.ask_attempts = 1;
    }

    /// Wants whose deadline passed are asked again with a doubled timeout; after
    /// `max_want_attempts` they are asked of other peers known to have them.
    fn retry_wants(&mut self, now: Millis) {
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, s)| s.ask_deadline.is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        let timeout = millis(self.config.want_timeout);
        for peer in due {
            let state = self.peers.get_mut(&peer).expect("collected above");
            let store = &self.store;
            if !state.prune_asked(|author| store.known(author)) {
                continue;
            }
            if state.ask_attempts < self.config.max_want_attempts {
                for (author, asked) in &state.asked {
                    self.outbox.want(&peer, author, asked);
                }
                let backoff = timeout.saturating_mul(1 << state.ask_attempts.min(16));
                state.ask_attempts += 1;
                state.ask_deadline = Some(now.saturating_add(backoff));
                continue;
            }
            // Give up on this peer: ask whoever else is known to have the ids.
            let abandoned = std::mem::take(&mut state.asked);
            state.ask_deadline = None;
            state.ask_attempts = 0;
            self.ask_elsewhere(abandoned, now);
        }
    }

    /// Asks the ids of `abandoned` of the connected peers known to have them.
    fn ask_elsewhere(&mut self, abandoned: peer::IdSets, now: Millis) {
        let timeout = millis(self.config.want_timeout);
        for (author, mut ids) in abandoned {
            if let Some(known) = self.store.known(&author) {
                ids = ids.difference(known);
            }
            for (peer, state) in &mut self.peers {
                if ids.is_empty() {
                    break;
                }
                let Some(has) = state.has.get(&author) else {
                    continue;
                };
                let take = ids.intersection(has);
                if take.is_empty() {
                    continue;
                }
                ids = ids.difference(&take);
                self.outbox.want(peer, &author, &take);
                state.asked.entry(author).or_default().union_with(&take);
                if state.ask_deadline.is_none() {
                    state.ask_deadline = Some(now.saturating_add(timeout));
                    state.ask_attempts = 1;
                }
            }
        }
    }

    /// One round: to every peer, a `have` of the held ids it is not known to have and was
    /// not told of. Nothing new, nothing sent. A peer whose first frame (its complete digest)
    /// has not arrived gets its round when that frame arrives.
    fn round(&mut self) {
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.round_peer(&peer);
        }
    }

    fn round_peer(&mut self, peer: &P) {
        let limits = self.peer_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if !state.synced {
            state.round_due = true;
            return;
        }
        for author in std::mem::take(&mut state.dirty) {
            let Some(held) = self.store.held(&author) else {
                continue;
            };
            let mut lacking = held.clone();
            for sets in [&state.has, &state.announced] {
                if let Some(set) = sets.get(&author) {
                    lacking = lacking.difference(set);
                }
            }
            if !lacking.is_empty() {
                self.outbox.have(peer, &author, &lacking);
                state.announce(&author, &lacking, limits.0, limits.1);
            }
        }
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
