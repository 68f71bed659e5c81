//! The sans-IO protocol engine: every rule of what a node sends, accepts, keeps and delivers.
//!
//! [`Engine`] has no sockets, no tasks and no clock: `now` (milliseconds since the Unix
//! epoch) comes in with every input, and outputs are drained by the driver.
//!
//! # Call contract
//!
//! Two classes of calls; every input and every command that sends ends with the same step
//! (what the call queued is packed into frames and appended to the outputs):
//!
//! - **Inputs** from the network and the clock, one door: [`Engine::handle`] with an
//!   [`Input`]: a connection up or gone, a frame from a peer (verified here, or by the
//!   driver's handlers as a [`VerifiedFrame`]), a peer's bytes that broke the protocol before
//!   they became a frame, a frame the driver could not send and the queue that drained again,
//!   one round by hand, and the timers ([`Input::Timeout`] once [`Engine::poll_timeout`]'s
//!   time has come). The methods named after the inputs ([`Engine::connect`],
//!   [`Engine::handle_frame`], [`Engine::handle_timeout`], …) are shorthands for them.
//! - **Commands** from the application: [`Engine::publish`],
//!   [`Engine::report_validation`], [`Engine::allow_author`], [`Engine::block_author`],
//!   [`Engine::set_gossip_interval`].
//!
//! After any call, drain [`Engine::poll_output`] until `None`: frames to send, messages to
//! deliver, violations, equivocations, peers caught up or unbanned, clock trouble. The driver
//! never calls back into the engine while draining. Then ask
//! [`Engine::poll_timeout`] again: any call may change it. Before a connection to a peer
//! starts gossiping, ask [`Engine::is_banned`].
//!
//! The libp2p [`Behaviour`](crate::Behaviour) is one driver; the simulator is another.
//!
//! # Where each rule lives
//!
//! Components that own their state, one file each, whose headers list their rules:
//! `tree.rs` (eager and lazy links, grafts, lazy announcements), `tags.rs` (announcements
//! by tag: the index of recent ids, pending tags), `wants.rs` (outstanding
//! wants, backlogs and whom a want goes to next), `round.rs` (rounds and what each peer is
//! announced), `knowledge.rs` (the connected peers and what each is believed to know),
//! `congestion.rs` (peers whose queue overflowed), `resync.rs` (the resync budget),
//! `authors.rs` (tracked authors, known ids, tombstones), `store.rs` (retention),
//! `validation.rs` (messages awaiting the application's verdict), `violators.rs` (bans),
//! `durable.rs` (what outlives the process and how it is restored),
//! `filter.rs` (which authors are accepted), `batch.rs` (packing frames). The engine routes
//! inputs between them: `receive.rs` (the order of checks for a received envelope and what
//! happens to an accepted message) and `pull.rs` (when a `have` draws wants or an answer, how
//! a `want` is answered, when a want is retried or moved).

mod authors;
mod batch;
mod congestion;
mod durable;
mod expiring;
mod filter;
mod ids;
mod input;
mod knowledge;
mod output;
mod pull;
mod receive;
mod record;
mod resync;
mod round;
mod skew;
mod store;
mod tags;
mod tree;
mod validation;
mod violators;
mod wants;

pub use crate::verify::VerifiedFrame;
pub use durable::{AuthorRecord, Changes, Restored, Snapshot};
pub use filter::AuthorFilter;
pub use input::{Input, Timer};
pub use output::{ImportError, Output, PublishError, Stats, Violation, ViolationKind};
pub use validation::Validation;

use crate::config::Config;
use crate::envelope::{Envelope, MessageId};
use crate::frame::Frame;
use crate::keys::{Keypair, PublicKey};
use authors::Authors;
use batch::Batcher;
use bytes::Bytes;
use congestion::Congestion;
pub(crate) use filter::SharedFilter;
use knowledge::{Beliefs, KnowledgeLimits};
pub(crate) use receive::check_before_signature;
use resync::Resyncs;
use round::Rounds;
use skew::Skew;
use std::collections::VecDeque;
use std::{fmt, time::Duration};
use store::{Retention, Store};
use tree::{Tree, TreeConfig};
use validation::Validations;
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
    /// The reservation of sequences as last taken for a durable store (`durable.rs`).
    persisted_sequence: Option<u64>,
    /// The reservation the durable store has written (`durable.rs`): no sequence at or above
    /// it is signed.
    durable_sequence: Option<u64>,
    /// Wall-clock time minus engine time, in milliseconds ([`Engine::set_wall_clock`]).
    wall_offset: i64,
    // What the node knows and holds.
    authors: Authors<P>,
    store: Store<P>,
    validations: Validations<P>,
    filter: SharedFilter,
    violators: Violators<P>,
    /// What each peer has done for this node, across its reconnects (`record.rs`).
    records: record::Records<P>,
    skew: Skew<P>,
    // The connected peers, one component per concern.
    beliefs: Beliefs<P>,
    wants: Wants<P>,
    tree: Tree<P>,
    /// Announcements by tag: the index of recent ids, readers, pending tags (`tags.rs`).
    tags: tags::Tags<P>,
    rounds: Rounds<P>,
    congestion: Congestion<P>,
    resyncs: Resyncs<P>,
    // What goes out.
    batcher: Batcher<P>,
    outputs: VecDeque<Output<P>>,
    stats: Stats,
}

impl<P: Clone + Ord> fmt::Debug for Engine<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("peers", &self.beliefs.len())
            .field("stored", &self.store.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The first sequence of an author that starts at `now` with no `start_sequence` configured:
/// the Unix time in microseconds (`docs/PROTOCOL.md` §1), so a restarted author never reuses
/// a number.
pub(crate) fn start_sequence(now: Millis) -> u64 {
    now.saturating_mul(1000).max(1)
}

impl<P: Clone + Ord> Engine<P> {
    /// A node signing with `keys`. Its first sequence is `config`'s `start_sequence`, or
    /// `now` in microseconds (`docs/PROTOCOL.md` §1), so a restarted author never reuses a
    /// number.
    pub fn new(keys: Keypair, config: Config, now: Millis) -> Self {
        let filter = SharedFilter::new(keys.public(), config.author_filter.clone());
        Self::with_filter(keys, config, filter, now)
    }

    /// A node whose author filter is `filter` (shared with the driver's handlers).
    pub(crate) fn with_filter(
        keys: Keypair,
        config: Config,
        filter: SharedFilter,
        now: Millis,
    ) -> Self {
        let me = keys.public();
        let next_sequence = Some(config.start_sequence.unwrap_or_else(|| start_sequence(now)));
        let max_age_ms = millis(config.max_age);
        let limits = KnowledgeLimits {
            per_author: config.max_ranges_per_author,
            per_peer: config.max_ranges_per_peer,
        };
        Engine {
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
            validations: Validations::new(
                config.max_pending_validations,
                millis(config.validation_timeout),
                config.max_messages_per_frame,
            ),
            filter,
            violators: Violators::new(millis(config.violation_ban)),
            records: record::Records::new(),
            skew: Skew::new(),
            beliefs: Beliefs::new(limits),
            wants: Wants::new(config.max_want_ranges_per_frame, limits),
            tree: Tree::new(TreeConfig {
                eager_push: config.eager_push,
                broadcast_tree: config.broadcast_tree,
                grace: millis(config.want_timeout),
                graft_timeout: millis(config.graft_timeout),
                announce_delay: millis(config.announce_delay),
                max_deferred_ranges: config.max_ranges_per_peer,
            }),
            tags: tags::Tags::new(millis(config.graft_timeout), millis(config.want_timeout)),
            rounds: Rounds::new(
                config.gossip_interval.map(millis),
                config.max_have_ranges_per_frame,
                now,
            ),
            congestion: Congestion::new(),
            resyncs: Resyncs::new(millis(config.min_resync_interval)),
            batcher: Batcher::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            config,
            keys,
            me,
            next_sequence,
            persisted_sequence: None,
            durable_sequence: None,
            wall_offset: 0,
        }
    }

    /// Wall-clock time is `wall` at engine time `now` (a driver whose clock for deadlines is
    /// monotonic tells the engine where wall time is, after a suspend or a clock step). The
    /// time window, the age of messages and of authors, and this node's own timestamps follow
    /// wall time; deadlines follow `now`. Without it the two are the same (the simulator).
    pub fn set_wall_clock(&mut self, wall: Millis, now: Millis) {
        self.wall_offset = i64::try_from(i128::from(wall) - i128::from(now)).unwrap_or(0);
    }

    /// Wall-clock time at engine time `now`.
    pub(crate) fn wall(&self, now: Millis) -> Millis {
        now.saturating_add_signed(self.wall_offset)
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
        self.beliefs.len()
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.beliefs.peers()
    }

    /// Whether `peer` broke the protocol within the last `violation_ban`: it is not gossiped
    /// with until then.
    pub fn is_banned(&self, peer: &P, now: Millis) -> bool {
        self.violators.banned(peer, now)
    }

    /// Whether `peer`'s track record says it failed (`record.rs`): a want of it lapsed, it
    /// left with wants outstanding, or the application turned down its message, and it has
    /// delivered nothing new since that came at least a minute after the failure. For tests.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn has_failed(&self, peer: &P) -> bool {
        self.records.standing(peer) == record::Standing::Failed
    }

    /// Signatures the connection handlers verified for envelopes this engine then dropped
    /// before its signature step, so far ([`Stats::verified_discarded`]): the driver charges
    /// each to the sender.
    pub fn verified_discarded(&self) -> u64 {
        self.stats.verified_discarded
    }

    /// A count that changes whenever who should be paused for validation may have
    /// ([`Engine::validation_pauses`]): a message held or released, or a peer come or gone.
    pub fn validation_changes(&self) -> u64 {
        (self.validations.changes() << 24) ^ self.beliefs.len() as u64
    }

    /// How many messages wait for the application's verdict.
    pub fn pending_validations(&self) -> usize {
        self.validations.len()
    }

    /// Whether the driver should stop reading from `peer` until verdicts come: it holds its
    /// share of `max_pending_validations` (see `validation.rs`).
    pub fn validation_pauses(&self, peer: &P) -> bool {
        self.validations.pauses(peer, self.beliefs.len())
    }

    /// When `timer` is next due, if it is armed.
    pub fn timer(&self, timer: Timer) -> Option<Millis> {
        match timer {
            Timer::Round => self.rounds.next_round(),
            Timer::LazyAnnounce => self.tree.next_announce(),
            Timer::Want => self.wants.next_deadline(),
            Timer::Graft => self.tree.next_graft(),
            Timer::Tag => self.tags.next_timer(),
            // Messages age by wall time: the store's deadline, in engine time.
            Timer::Expiry => self
                .store
                .next_expiry()
                .map(|wall| wall.saturating_add_signed(self.wall_offset.saturating_neg())),
            Timer::Validation => self.validations.next_deadline(),
            Timer::Ban => self.violators.next_expiry(),
        }
    }

    /// The earliest armed timer, and when it is due.
    pub fn next_timer(&self) -> Option<(Millis, Timer)> {
        Timer::ALL
            .into_iter()
            .filter_map(|t| Some((self.timer(t)?, t)))
            .min()
    }

    /// The earliest time at which [`Input::Timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.next_timer().map(|(at, _)| at)
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

    /// Takes one input at `now`. See the call contract in the module docs.
    pub fn handle(&mut self, input: Input<P>, now: Millis) {
        self.rounds.seen(now);
        match input {
            Input::Connected { peer } => self.on_connected(peer, now),
            Input::Disconnected { peer } => self.remove_peer(&peer, now),
            Input::Frame { peer, frame } => self.on_frame(peer, frame, &[], now),
            Input::Verified { peer, frame } => {
                let (frame, verdicts) = frame.into_parts();
                self.on_frame(peer, frame, &verdicts, now);
            }
            Input::Violation { peer, violation } => self.violation(peer, violation, now),
            Input::Stalled { peer } => self.ban(peer, now),
            Input::FrameNotSent { peer, frame } => self.on_frame_not_sent(&peer, &frame),
            Input::QueueDrained { peer } => self.on_queue_drained(&peer),
            Input::Round => self.round(),
            Input::Timeout => self.on_timeout(now),
        }
        // Held from peers that left (not a replaced connection: it is back by now), beyond
        // the bound: ignored now (`validation.rs`).
        for id in self.validations.excess_departed() {
            self.decide(&id, Validation::Ignore, now);
            self.stats.validation_timeouts += 1;
        }
        self.end_of_input();
    }

    /// [`Input::Connected`].
    pub fn connect(&mut self, peer: P, now: Millis) {
        self.handle(Input::Connected { peer }, now);
    }

    /// [`Input::Disconnected`].
    pub fn disconnect(&mut self, peer: &P, now: Millis) {
        self.handle(Input::Disconnected { peer: peer.clone() }, now);
    }

    /// [`Input::Frame`].
    pub fn handle_frame(&mut self, peer: P, frame: Frame, now: Millis) {
        self.handle(Input::Frame { peer, frame }, now);
    }

    /// [`Input::Violation`].
    pub fn handle_violation(&mut self, peer: P, violation: Violation, now: Millis) {
        self.handle(Input::Violation { peer, violation }, now);
    }

    /// [`Input::FrameNotSent`] (which needs no time).
    pub fn frame_dropped(&mut self, peer: &P, frame: &Frame) {
        self.on_frame_not_sent(peer, frame);
        self.end_of_input();
    }

    /// [`Input::QueueDrained`] (which needs no time).
    pub fn peer_drained(&mut self, peer: &P) {
        self.on_queue_drained(peer);
        self.end_of_input();
    }

    /// [`Input::Round`].
    pub fn gossip(&mut self, now: Millis) {
        self.handle(Input::Round, now);
    }

    /// [`Input::Timeout`].
    pub fn handle_timeout(&mut self, now: Millis) {
        self.handle(Input::Timeout, now);
    }

    /// The end of every input and command: lazy announcements that go at once, then what
    /// was queued for each peer, packed into frames.
    fn end_of_input(&mut self) {
        if self.tree.announces_at_once() {
            self.announce_to_lazy();
        }
        self.batcher
            .flush(&self.config.frame_limits(), &mut self.outputs);
    }

    /// Fires every timer due at `now`, in [`Timer::ALL`]'s order.
    fn on_timeout(&mut self, now: Millis) {
        self.tags.expire(now);
        for timer in Timer::ALL {
            if self.timer(timer).is_some_and(|t| t <= now) {
                self.fire(timer, now);
            }
        }
    }

    fn fire(&mut self, timer: Timer, now: Millis) {
        match timer {
            Timer::Round => {
                self.round();
                self.rounds.ran(now);
            }
            Timer::LazyAnnounce => self.announce_to_lazy(),
            Timer::Want => self.retry_wants(now),
            Timer::Graft => self.graft_due(now),
            Timer::Tag => self.tags_due(now),
            Timer::Expiry => {
                for id in self.store.expire(self.wall(now)) {
                    self.authors.aged_out(&id.author, id.sequence);
                }
            }
            Timer::Validation => {
                for id in self.validations.overdue(now) {
                    self.decide(&id, Validation::Ignore, now);
                    self.stats.validation_timeouts += 1;
                }
            }
            Timer::Ban => {
                for peer in self.violators.expire(now) {
                    self.outputs.push_back(Output::BanLifted { peer });
                }
            }
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
        self.rounds.seen(now);
        let payload = payload.into();
        if payload.len() > self.config.max_payload_size {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                max: self.config.max_payload_size,
            });
        }
        let sequence = self.next_sequence.ok_or(PublishError::SequenceExhausted)?;
        if !self.sequence_durable(sequence) {
            return Err(PublishError::NotWritten);
        }
        self.next_sequence = sequence.checked_add(1);
        let envelope = Envelope::sign(&self.keys, sequence, self.wall(now), payload)
            .expect("sequence is at least 1");
        let id = envelope.id();
        self.stats.published += 1;
        self.store_and_forward(envelope, None, now);
        self.end_of_input();
        Ok(id)
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
        self.rounds.seen(now);
        let decided = self.decide(id, validation, now);
        self.end_of_input();
        decided
    }

    fn decide(&mut self, id: &MessageId, validation: Validation, now: Millis) -> bool {
        let Some((envelope, from, deadline)) = self.validations.take(id) else {
            return false;
        };
        match validation {
            Validation::Accept => {
                self.stats.accepted += 1;
                self.useful(&from, now);
                self.tree.proved(&from, now);
                // The sender has it (what was believed of it may have been forgotten since).
                self.peer_has(&from, id);
                self.store_and_forward(envelope, Some(&from), now);
            }
            Validation::Reject | Validation::Ignore => {
                if validation == Validation::Reject {
                    self.stats.rejected += 1;
                } else {
                    self.stats.ignored += 1;
                }
                // A timed-out verdict counts against the sender like a rejection.
                if validation == Validation::Reject || now >= deadline {
                    self.wants.strike(&from);
                    self.records.failed(&from, now);
                }
                // Known, so never delivered again; not stored, so never forwarded.
                self.authors
                    .accepted(&id.author, id.sequence, envelope.timestamp());
            }
        }
        true
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
            for peer in self.beliefs.peers().cloned().collect::<Vec<_>>() {
                self.wants.take_author(&peer, &author);
            }
        }
        self.end_of_input();
    }

    /// Changes the round interval; `None` stops periodic rounds ([`Input::Round`] still
    /// runs one). An interval under a millisecond is taken as one millisecond.
    pub fn set_gossip_interval(&mut self, interval: Option<Duration>, now: Millis) {
        self.config.gossip_interval = interval.map(|i| i.max(Duration::from_millis(1)));
        self.rounds
            .set_interval(self.config.gossip_interval.map(millis), now);
    }

    fn on_connected(&mut self, peer: P, now: Millis) {
        self.remove_peer(&peer, now);
        if self.violators.banned(&peer, now) {
            return;
        }
        self.beliefs.connected(&peer);
        self.authors.set_peers(self.beliefs.len());
        self.validations.returned(&peer);
        self.wants.add_peer(&peer, now);
        let role = self.tree.connected(&peer, now);
        self.rounds.connected(&peer);
        self.batcher.complete(&peer, self.digest());
        if role == tree::Role::Lazy {
            // Its link was lazy before it broke: the peer is told at once, so neither end
            // pushes over it again (`tree.rs`).
            self.send_prune(&peer, None);
        }
    }

    /// Sends `prune` to `peer`, with `author` in `prune_authors` if given (the peer may be
    /// pushing it by an author link, `tree.rs`).
    pub(super) fn send_prune(&mut self, peer: &P, author: Option<&PublicKey>) {
        self.stats.prunes += 1;
        self.batcher.prune(peer, author);
    }

    fn violation(&mut self, peer: P, violation: Violation, now: Millis) {
        self.remove_peer(&peer, now);
        // Reported before the ban is recorded: a ban that ends at once (zero) or lifts another
        // comes after the stop it undoes.
        self.outputs.push_back(Output::Violation {
            peer: peer.clone(),
            violation,
        });
        self.ban(peer, now);
    }

    /// `peer` is removed and not gossiped with for `violation_ban`.
    fn ban(&mut self, peer: P, now: Millis) {
        self.remove_peer(&peer, now);
        for lifted in self.violators.record(&peer, now) {
            self.outputs.push_back(Output::BanLifted { peer: lifted });
        }
    }

    /// Forgets `peer` (gone, replaced, or in violation); its outstanding wants are asked of
    /// the other peers known to have the ids.
    fn remove_peer(&mut self, peer: &P, now: Millis) {
        // What this input queued for it (a prune for a duplicate before the frame's forged
        // envelope, say) is not sent.
        self.batcher.forget(peer);
        if self.beliefs.disconnected(peer) {
            self.authors.set_peers(self.beliefs.len());
            self.tree.disconnected(peer, now);
            if self.tags.disconnected(peer, now) {
                // It left with a want by tag of it outstanding: as one that lapsed.
                self.records.failed(peer, now);
            }
            self.rounds.disconnected(peer);
            self.congestion.disconnected(peer);
            self.skew.disconnected(peer);
            self.validations.departed(peer);
            if self.wants.take_probe(peer).is_some() {
                self.records.probe_lapsed(peer, now);
            }
            let asked = self.wants.remove_peer(peer);
            if !asked.is_empty() {
                // It left with wants of it unanswered: as a want that timed out.
                self.records.failed(peer, now);
            }
            self.move_wants(asked, peer, now);
        }
    }

    fn on_frame_not_sent(&mut self, peer: &P, frame: &Frame) {
        if !self.beliefs.contains(peer) {
            return;
        }
        self.congestion
            .dropped(peer, frame.complete, frame.prune || frame.graft);
        // A probe that never left is no probe, and a longer wait for a want that never left
        // is one `want_timeout` (`wants.rs`).
        let now = self.rounds.clock();
        let deadline = now.saturating_add(millis(self.config.want_timeout));
        self.wants.wants_dropped(peer, &frame.want, deadline);
        self.tags.want_dropped(peer, &frame.want_tags);
        let Some(state) = self.beliefs.get_mut(peer) else {
            return;
        };
        for envelope in &frame.messages {
            let (author, s) = (envelope.author(), envelope.sequence());
            state
                .has
                .forget(author, &crate::ranges::RangeSet::from_range(s, s));
            if self.store.holds(author, s) {
                self.rounds
                    .queue(peer, author, ids::Ids::One(s), &self.store);
            }
        }
        for id in frame.have_tags.iter().filter_map(|t| self.tags.resolve(*t)) {
            if self.store.holds(&id.author, id.sequence) {
                self.rounds
                    .queue(peer, &id.author, ids::Ids::One(id.sequence), &self.store);
            }
        }
        for digest in &frame.have {
            if let Some(held) = self.store.held(&digest.author) {
                let again = digest.ranges.intersection(held);
                self.rounds
                    .queue(peer, &digest.author, ids::Ids::Ranges(&again), &self.store);
            }
        }
    }

    fn on_queue_drained(&mut self, peer: &P) {
        let Some(resend) = self.congestion.drained(peer) else {
            return;
        };
        if resend.complete {
            self.batcher.complete(peer, self.digest());
        }
        if resend.tree {
            match self.tree.role(peer) {
                // The flags only: an author list that was dropped is asked again when needed.
                Some(tree::Role::Eager) => {
                    self.batcher.graft(peer, None);
                }
                Some(tree::Role::Lazy) => self.batcher.prune(peer, None),
                None => {}
            }
        }
        self.round_peer(peer);
    }

    /// Every id this node knows, of every author it accepts: the body of a complete `have`.
    fn digest(&self) -> Vec<crate::frame::Digest> {
        let filter = self.filter.read();
        self.authors
            .all_known()
            .filter(|(author, _)| filter.permits(author))
            .map(|(author, known)| crate::frame::Digest {
                author: *author,
                ranges: known.clone(),
            })
            .collect()
    }

    /// One round: every peer is announced what was queued for it ([`Engine::round_peer`]).
    fn round(&mut self) {
        let peers: Vec<P> = self.beliefs.peers().cloned().collect();
        for peer in peers {
            self.round_peer(&peer);
        }
    }

    /// `peer`'s round (`round.rs`): a `have` of the queued ids it is not known to have and
    /// that are still held.
    fn round_peer(&mut self, peer: &P) {
        if let Some(state) = self.beliefs.get(peer) {
            self.rounds
                .run(peer, &self.store, &state.has, &self.tags, &mut self.batcher);
        }
    }

    /// Sends the announcements queued for lazy peers (`tree.rs`).
    fn announce_to_lazy(&mut self) {
        for peer in self.tree.take_announcements() {
            self.round_peer(&peer);
        }
    }

    /// Panics if the engine's bookkeeping disagrees with itself. For tests, fuzzing and
    /// simulations (feature `test-utils`).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn check_invariants(&self) {
        self.authors.check_invariants();
        self.store.check_invariants();
        self.wants.check_invariants();
        self.violators.check_invariants();
        self.records.check_invariants();
        self.resyncs.check_invariants();
        self.validations.check_invariants();
        self.beliefs.check_invariants();
        self.tree.check_invariants();
        self.tags.check_invariants();
        self.rounds.check_invariants();
        self.skew.check_invariants(self.beliefs.len());
        for author in self.store.authors_holding() {
            assert!(self.authors.is_tracked(author), "held but not tracked");
        }
        assert_eq!(
            self.wants.peer_count(),
            self.beliefs.len(),
            "wants kept for exactly the connected peers"
        );
    }
}

/// Milliseconds in `d`, rounded up, so a positive duration is never 0 ms. The crate's one
/// conversion of a duration to the engine's time.
pub(crate) fn millis(d: Duration) -> Millis {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    ms.min(u128::from(u64::MAX)) as u64
}
