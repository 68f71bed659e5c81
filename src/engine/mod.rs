//! The sans-IO protocol engine: every rule of what a node sends, accepts, keeps and delivers.
//!
//! [`Engine`] has no sockets, no tasks and no clock: `now` (milliseconds since the Unix
//! epoch) comes in with every input, and outputs are drained by the driver.
//!
//! # Call contract
//!
//! - Inputs: [`Engine::connect`] when a connection to a peer is up (or replaced),
//!   [`Engine::disconnect`] when the last one is gone, [`Engine::handle_frame`] for each
//!   checked frame from a peer, [`Engine::handle_violation`] when a peer's bytes broke the
//!   protocol before they became a frame, [`Engine::frame_dropped`] when the driver could not
//!   send a frame, [`Engine::peer_drained`] when its queue is empty again,
//!   [`Engine::publish`], [`Engine::gossip`] (one round by hand), and
//!   [`Engine::handle_timeout`] once [`Engine::poll_timeout`]'s time has come.
//! - After any input, drain [`Engine::poll_output`] until `None`: frames to send, messages to
//!   deliver, violations (close the peer's connections), equivocations. Then ask
//!   [`Engine::poll_timeout`] again: any input may change it.
//! - Before a connection to a peer starts gossiping, ask [`Engine::is_banned`]: a peer that
//!   just broke the protocol is not gossiped with for `violation_ban`.
//!
//! The libp2p [`Behaviour`](crate::Behaviour) is one driver; the simulator is another.
//!
//! # Where each rule lives
//!
//! `receive.rs`: the order of checks for a received envelope and what happens to an accepted
//! message. `pull.rs`: the have/want exchange (answers to complete digests, wants, answers,
//! retries). `round.rs`: rounds. `authors.rs`: which authors are tracked and which ids are
//! known. `store.rs`: retention. `knowledge.rs`: what a peer is believed to know.
//! `wants.rs`: outstanding wants. `violators.rs`: peers that broke the protocol.
//! `outbox.rs`: frame sizes.

mod authors;
mod filter;
mod knowledge;
mod outbox;
mod output;
mod peer;
mod pull;
mod receive;
mod round;
mod store;
mod tree;
mod validation;
mod violators;
mod wants;

pub use filter::AuthorFilter;
pub use output::{Output, PublishError, Stats, Violation};
pub use validation::Validation;

use crate::config::Config;
use crate::envelope::{Envelope, MessageId};
use crate::frame::Frame;
use crate::keys::{Keypair, PublicKey};
use crate::ranges::RangeSet;
use authors::Authors;
pub(crate) use filter::Filter;
use knowledge::KnowledgeLimits;
use outbox::Outbox;
use peer::{Ids, Peer};
use prost::bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::{fmt, time::Duration};
use store::{Retention, Store};
use validation::Pending;
use violators::Violators;
use wants::Wants;

/// Milliseconds since the Unix epoch: the engine's only notion of time.
pub type Millis = u64;

/// Outputs the queue keeps room for once drained.
const IDLE_OUTPUT_CAPACITY: usize = 64;

/// The protocol state of one node. `P` names peers (a libp2p `PeerId`, or an index in a
/// simulation); iteration over peers follows `P`'s order, so runs are deterministic.
pub struct Engine<P> {
    config: Config,
    keys: Keypair,
    me: PublicKey,
    next_sequence: Option<u64>,
    authors: Authors<P>,
    store: Store<P>,
    peers: BTreeMap<P, Peer>,
    wants: Wants<P>,
    violators: Violators<P>,
    filter: Filter,
    pending: Pending<P>,
    /// `(when, peer)`: deferred announcements of lazy peers (`tree.rs`).
    graft_timers: std::collections::BTreeSet<(Millis, P)>,
    /// Lazy peers with announcements queued, and when they are sent (`tree.rs`).
    lazy_due: std::collections::BTreeSet<P>,
    next_announce: Option<Millis>,
    outbox: Outbox<P>,
    outputs: VecDeque<Output<P>>,
    next_round: Option<Millis>,
    stats: Stats,
}

impl<P: Clone + Ord> fmt::Debug for Engine<P> {
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
    /// `now` in microseconds (`docs/PROTOCOL.md` §1), so a restarted author never reuses a
    /// number.
    pub fn new(keys: Keypair, config: Config, now: Millis) -> Self {
        let me = keys.public();
        let next_sequence = Some(
            config
                .start_sequence
                .unwrap_or_else(|| now.saturating_mul(1000).max(1)),
        );
        let max_age_ms = millis(config.max_age);
        let mut engine = Engine {
            authors: Authors::new(
                me,
                config.max_tracked_authors,
                config.max_ranges_per_author,
                max_age_ms,
            ),
            store: Store::new(Retention {
                max_age_ms,
                max_bytes: config.max_stored_bytes,
                max_messages: config.max_stored_messages,
                max_ranges: config.max_ranges_per_author,
            }),
            wants: Wants::new(config.max_want_ranges_per_frame),
            violators: Violators::new(millis(config.violation_ban)),
            filter: Filter::new(me, config.author_filter.clone()),
            graft_timers: std::collections::BTreeSet::new(),
            lazy_due: std::collections::BTreeSet::new(),
            next_announce: None,
            pending: Pending::new(
                config.max_pending_validations,
                millis(config.validation_timeout),
            ),
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
        self.authors.knows(&id.author, id.sequence)
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
        self.authors.len()
    }

    /// How many ranges of ids are wanted from peers and not yet received.
    pub fn outstanding_wants(&self) -> usize {
        self.wants.total()
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    /// Whether `peer` broke the protocol within the last `violation_ban`: it is not gossiped
    /// with until then.
    pub fn is_banned(&self, peer: &P, now: Millis) -> bool {
        self.violators.banned(peer, now)
    }

    /// The application's verdict on a message held for validation (`validate_messages`).
    /// Returns `false` if no message with this id is waiting (unknown, decided, or timed
    /// out).
    pub fn report_validation(
        &mut self,
        id: &MessageId,
        validation: Validation,
        now: Millis,
    ) -> bool {
        let decided = self.decide(id, validation, now);
        self.flush();
        decided
    }

    fn decide(&mut self, id: &MessageId, validation: Validation, now: Millis) -> bool {
        let Some((envelope, from)) = self.pending.take(id) else {
            return false;
        };
        match validation {
            Validation::Accept => {
                self.stats.accepted += 1;
                self.accept(envelope, Some(&from), now, false);
            }
            Validation::Reject | Validation::Ignore => {
                if validation == Validation::Reject {
                    self.stats.rejected += 1;
                    self.wants.strike(&from);
                } else {
                    self.stats.ignored += 1;
                }
                // Known, so never delivered again; not stored, so never forwarded.
                self.authors
                    .accepted(&id.author, id.sequence, envelope.timestamp(), now);
            }
        }
        true
    }

    /// How many messages wait for the application's verdict.
    pub fn pending_validations(&self) -> usize {
        self.pending.len()
    }

    /// Whether `max_pending_validations` messages wait: the driver should stop reading from
    /// peers until verdicts come.
    pub fn validation_full(&self) -> bool {
        self.pending.is_full()
    }

    /// Accepts `author`'s messages from now on (unblocks it; adds it to an allow-list).
    pub fn allow_author(&mut self, author: PublicKey) {
        self.filter.allow(author);
    }

    /// Refuses `author`'s messages from now on, and drops what is held of it. Its ids already
    /// known stay known.
    pub fn block_author(&mut self, author: PublicKey) {
        if self.filter.block(author) {
            self.forget_author(&author);
            for peer in self.peers.keys().cloned().collect::<Vec<_>>() {
                self.wants.take_author(&peer, &author);
            }
        }
    }

    /// Changes the round interval; `None` stops periodic rounds ([`Engine::gossip`] still
    /// runs one). An interval under a millisecond is taken as one millisecond.
    pub fn set_gossip_interval(&mut self, interval: Option<Duration>, now: Millis) {
        self.config.gossip_interval = interval.map(|i| i.max(Duration::from_millis(1)));
        self.schedule_round(now);
    }

    /// The earliest time at which [`Engine::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [
            self.next_round,
            self.wants.next_deadline(),
            self.store.next_expiry(),
            self.pending.next_deadline(),
            self.next_graft(),
            self.next_announce,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        let output = self.outputs.pop_front();
        if output.is_none() && self.outputs.capacity() > IDLE_OUTPUT_CAPACITY {
            // A burst (a frame of thousands of messages) does not pin its queue's memory.
            self.outputs.shrink_to(IDLE_OUTPUT_CAPACITY);
        }
        output
    }

    /// A connection to `peer` is up (or was replaced): send it the complete digest. Any state
    /// about an earlier connection to it is dropped. A banned peer is ignored.
    pub fn connect(&mut self, peer: P, now: Millis) {
        self.remove_peer(&peer, now);
        if self.violators.banned(&peer, now) {
            return;
        }
        let mut state = Peer::default();
        state.connected_at = now;
        state.eager = true;
        state.tree_grace_until = now.saturating_add(millis(self.config.want_timeout));
        self.peers.insert(peer.clone(), state);
        self.wants.add_peer(&peer);
        self.outbox.complete(&peer, self.digest());
        self.flush();
    }

    /// The connection to `peer` is gone. What was asked of it is asked of other peers known
    /// to have it.
    pub fn disconnect(&mut self, peer: &P, now: Millis) {
        self.remove_peer(peer, now);
        self.flush();
    }

    /// `peer`'s bytes broke the protocol before they became a frame (the driver decodes):
    /// the peer is removed and reported like any other violation.
    pub fn handle_violation(&mut self, peer: P, violation: Violation, now: Millis) {
        self.violation(peer, violation, now);
        self.flush();
    }

    fn violation(&mut self, peer: P, violation: Violation, now: Millis) {
        self.remove_peer(&peer, now);
        self.violators.record(&peer, now);
        self.outputs
            .push_back(Output::Violation { peer, violation });
    }

    /// Forgets `peer` (gone, replaced, or in violation); its outstanding wants are asked of
    /// the other peers known to have the ids.
    fn remove_peer(&mut self, peer: &P, now: Millis) {
        // What this input queued for it (a prune for a duplicate before the frame's forged
        // envelope, say) is not sent.
        self.outbox.forget(peer);
        if let Some(state) = self.peers.remove(peer) {
            if let Some(at) = state.graft_at {
                self.graft_timers.remove(&(at, peer.clone()));
            }
            self.lazy_due.remove(peer);
            let asked = self.wants.remove_peer(peer);
            self.move_wants(asked, peer, now);
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
        self.accept(envelope, None, now, true);
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
        if self.next_announce.is_some_and(|t| t <= now) {
            self.announce_to_lazy();
        }
        self.retry_wants(now);
        self.graft_due(now);
        for id in self.store.expire(now) {
            self.authors.aged_out(&id.author, id.sequence);
        }
        for id in self.pending.overdue(now) {
            self.decide(&id, Validation::Ignore, now);
        }
        self.flush();
    }

    /// A frame the driver could not deliver to `peer` (its queue was full): what it carried
    /// is no longer assumed known there, and the next round announces it again. Wants it
    /// carried stay outstanding and are asked again when their retry deadline passes. Until
    /// [`Engine::peer_drained`], the peer is only sent announcements and wants.
    ///
    /// A peer that reads slowly therefore costs one frame's work per drained queue, however
    /// many wants it sends.
    pub fn frame_dropped(&mut self, peer: &P, frame: &Frame) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.congested = true;
        // A lost complete digest, and lost tree control, are sent again once the queue drains.
        state.resend_complete |= frame.complete;
        state.resend_tree |= frame.prune || frame.graft;
        let limits = self.config.max_have_ranges_per_frame;
        for envelope in &frame.messages {
            let (author, s) = (envelope.author(), envelope.sequence());
            state.has.forget(author, &RangeSet::from_range(s, s));
            if self.store.holds(author, s) {
                state.queue_announce(author, Ids::One(s), &self.store, limits);
            }
        }
        for digest in &frame.have {
            if let Some(held) = self.store.held(&digest.author) {
                let again = digest.ranges.intersection(held);
                state.queue_announce(&digest.author, Ids::Ranges(&again), &self.store, limits);
            }
        }
    }

    /// The driver's queue to `peer` is empty again after a dropped frame: it is sent
    /// messages again, starting with announcements of what it missed.
    pub fn peer_drained(&mut self, peer: &P) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if !std::mem::take(&mut state.congested) {
            return;
        }
        let complete = std::mem::take(&mut state.resend_complete);
        let tree = std::mem::take(&mut state.resend_tree).then_some(state.eager);
        if complete {
            self.outbox.complete(peer, self.digest());
        }
        match tree {
            Some(true) => self.outbox.graft(peer),
            Some(false) => self.outbox.prune(peer),
            None => {}
        }
        self.round_peer(peer);
        self.flush();
    }

    /// A frame from `peer`. Envelopes come first (each through the checks in `receive`),
    /// then `have`, then `want`. A violation stops the frame and is reported; what was
    /// accepted before it stays accepted.
    pub fn handle_frame(&mut self, peer: P, frame: Frame, now: Millis) {
        self.handle_checked_frame(peer, frame, &[], now);
    }

    /// A frame from `peer` whose envelopes' signatures the driver already checked where
    /// `verdicts` says (`Some(valid)`, by `verify_strict`, in the order of `messages`; a
    /// missing or `None` entry is verified here if it gets that far). A driver that verifies
    /// on other cores uses this; the order of checks and what is accepted are unchanged.
    /// The verdicts are trusted: only a driver that ran `verify_strict` on exactly these
    /// envelopes may pass them.
    pub fn handle_checked_frame(
        &mut self,
        peer: P,
        frame: Frame,
        verdicts: &[Option<bool>],
        now: Millis,
    ) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        let Frame {
            messages,
            have,
            want,
            complete,
            prune,
            graft,
        } = frame;
        self.on_tree_control(&peer, prune, graft);
        // What this frame delivered of what was asked of the peer: its authors, and how much.
        let (mut progress, mut count, mut bytes) = (Vec::new(), 0, 0);
        for (i, envelope) in messages.into_iter().enumerate() {
            let len = crate::frame::envelope_len(&envelope);
            let verdict = verdicts.get(i).copied().flatten();
            match self.receive(&peer, envelope, verdict, now) {
                Ok(Some(author)) => {
                    count += 1;
                    bytes += len;
                    self.wants.progress(&peer, &author, len);
                    if progress.last() != Some(&author) {
                        progress.push(author);
                    }
                }
                Ok(None) => {}
                Err(violation) => {
                    self.violation(peer, violation, now);
                    self.flush();
                    return;
                }
            }
        }
        if pull::is_full_answer(count, bytes, &self.config) {
            progress.sort();
            progress.dedup();
            self.ask_rest(&peer, &progress);
        }
        self.on_have(&peer, have, complete, now);
        self.on_want(&peer, want);
        self.top_up(&peer, now);
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

    /// Every id this node knows, of every author it accepts: the body of a complete `have`.
    fn digest(&self) -> Vec<crate::frame::Digest> {
        self.authors
            .all_known()
            .filter(|(author, _)| self.filter.permits(author))
            .map(|(author, known)| crate::frame::Digest {
                author: *author,
                ranges: known.clone(),
            })
            .collect()
    }

    fn flush(&mut self) {
        if self.next_announce.is_some() && self.config.announce_delay.is_zero() {
            self.announce_to_lazy();
        }
        self.outbox
            .flush(&self.config.frame_limits(), &mut self.outputs);
    }

    fn knowledge_limits(&self) -> KnowledgeLimits {
        KnowledgeLimits {
            per_author: self.config.max_ranges_per_author,
            per_peer: self.config.max_ranges_per_peer,
        }
    }

    /// Panics if the engine's bookkeeping disagrees with itself. For tests, fuzzing and
    /// simulations.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        self.authors.check_invariants();
        self.store.check_invariants();
        self.wants.check_invariants();
        self.violators.check_invariants();
        self.pending.check_invariants();
        let limits = self.knowledge_limits();
        for state in self.peers.values() {
            state.check_invariants(limits);
        }
        for author in self.store.authors_holding() {
            assert!(self.authors.is_tracked(author), "held but not tracked");
        }
        assert_eq!(
            self.wants.peers().count(),
            self.peers.len(),
            "wants kept for exactly the connected peers"
        );
    }
}

/// Milliseconds in `d`, rounded up, so a positive duration is never 0 ms.
fn millis(d: Duration) -> Millis {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    ms.min(u128::from(u64::MAX)) as u64
}
