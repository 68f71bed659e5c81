//! The [`NetworkBehaviour`]: drives an [`Engine<PeerId>`](crate::engine::Engine) with the
//! swarm's connections, the handlers' frames and a timer. It makes no protocol decision.

use crate::clock::{Clock, STEP_MS};
use crate::config::Config;
use crate::engine::{
    Engine, Input, Millis, Output, PublishError, SharedFilter, Stats, Validation, Violation,
};
use crate::envelope::{Envelope, Message, MessageId};
use crate::handler::{Handler, HandlerEvent, HandlerIn};
use crate::keys::{Keypair, PublicKey};
use crate::metrics::Metrics;
use crate::verify::AheadChecks;
use crate::writer::Writer;
use bytes::Bytes;
use futures::FutureExt as _;
use futures_timer::Delay;
use libp2p::PeerId;
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionHandler as _, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// What the behaviour reports to the swarm's owner.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new message from another author, verified; delivered once. With
    /// `validate_messages`, it waits for [`Behaviour::report_validation`] before it is
    /// stored or forwarded.
    Message {
        /// The message.
        message: Message,
        /// The peer it arrived from.
        propagation_source: PeerId,
    },
    /// A peer broke the protocol: this node closed its gossip substreams with it and does not
    /// gossip with it for `violation_ban`. Its connections stay open for the swarm's other
    /// protocols; to close them, call `Swarm::disconnect_peer_id` (or block the peer with
    /// `libp2p::allow_block_list`).
    PeerViolation {
        /// The peer.
        peer: PeerId,
        /// What it did.
        violation: Violation,
    },
    /// A connected peer does not speak this node's protocol (`protocol_name`). Reported once
    /// per peer; its connection is left alone (other protocols may use it).
    UnsupportedPeer {
        /// The peer.
        peer: PeerId,
    },
    /// A peer did not take a frame within `write_timeout` (it stopped reading, or its link is
    /// too slow): its queue was dropped, and this node does not gossip with it for
    /// `violation_ban`. Its connections stay open for the swarm's other protocols. Other
    /// peers are unaffected.
    SlowPeer {
        /// The peer.
        peer: PeerId,
        /// How long the frame had been waiting.
        waited: Duration,
        /// Bytes that were still queued for it (dropped; when gossip resumes the two sides
        /// exchange complete digests again and it pulls what it lacks).
        queued_bytes: usize,
    },
    /// This node gossips with `peer` now: the protocol was negotiated on a connection and
    /// this node's substream is up. Followed by [`Event::PeerDown`] when that ends.
    PeerUp {
        /// The peer.
        peer: PeerId,
    },
    /// This node no longer gossips with `peer`: its last connection closed, it turned out
    /// not to speak the protocol, or it broke the protocol or stalled (banned).
    PeerDown {
        /// The peer.
        peer: PeerId,
    },
    /// This node has caught up with `peer`: the peer's complete digest was handled and nothing
    /// this node asked of it is outstanding (ids being pulled from another peer, or given up
    /// on, are not waited for). Once per connection; not for a peer whose digest did not fit
    /// one frame.
    CaughtUp {
        /// The peer.
        peer: PeerId,
    },
    /// Most connected peers send fresh envelopes outside this node's time window
    /// (`max_age`, `max_clock_skew`): this node's clock is probably wrong, and it will not
    /// accept their messages until it is right. Reported once until it recovers. (One peer
    /// counts once however much it sends; a node with a single peer, or many Sybil
    /// connections, can be told so falsely: it is a warning, nothing in the protocol changes.)
    ClockSkew {
        /// The median of the peers' timestamps minus this node's clock, in milliseconds:
        /// positive when the peers are ahead (this node's clock is slow).
        estimated_offset_ms: i64,
    },
    /// An author signed two different messages with one id: `first` was delivered, `second`
    /// is the proof. Reported once per id.
    Equivocation {
        /// The author.
        author: PublicKey,
        /// The copy this node holds.
        first: Box<Envelope>,
        /// The conflicting copy (valid signature).
        second: Box<Envelope>,
        /// The peer that sent `second`.
        propagation_source: PeerId,
    },
    /// The durable store ([`Behaviour::with_store`]) could not write: messages received since
    /// the last write are not reported until a write succeeds (tried again after 100 ms,
    /// doubling to 10 s). While more than `max_stored_messages` (or `max_stored_bytes`) wait,
    /// this node stops reading from its peers.
    StoreFailed {
        /// What went wrong.
        error: crate::store::StoreError,
        /// Messages waiting to be reported.
        unwritten: usize,
    },
}

/// Signed epidemic broadcast for a libp2p swarm. See the crate docs for an example.
pub struct Behaviour {
    engine: Engine<PeerId>,
    clock: Clock,
    /// Open connections per peer; the first one carries this node's frames.
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Peers already reported as not speaking the protocol.
    unsupported: HashSet<PeerId>,
    /// Peers whose gossip this node stopped (banned) while it keeps their connections.
    stopped: HashSet<PeerId>,
    /// Peers reported with [`Event::PeerUp`] and not yet down.
    up: HashSet<PeerId>,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    timer: Timer,
    waker: Option<Waker>,
    /// Peers not read from: they hold their share of `max_pending_validations` (the engine's
    /// rule, `engine/validation.rs`).
    paused: HashSet<PeerId>,
    /// What `paused` was last brought up to date with: the engine's validation changes, and
    /// connections opened or closed.
    paused_for: (u64, u64),
    connection_changes: u64,
    /// Wall time minus engine time, as the engine was last told.
    wall_offset: i64,
    metrics: Option<Metrics>,
    /// The durable store, if any (`writer.rs`): deliveries wait for its writes.
    writer: Option<Writer>,
    /// Reading from every peer is paused until the store's writes catch up.
    held_by_store: bool,
    /// Shared with every handler, so they verify signatures ahead (`verify.rs`).
    checks: AheadChecks,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour")
            .field("engine", &self.engine)
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl Behaviour {
    /// A behaviour that publishes as `keys`, with its metrics registered in `registry` (see
    /// the README for their names).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn new_with_metrics(
        keys: Keypair,
        config: Config,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let mut behaviour = Behaviour::new(keys, config);
        behaviour.register_metrics(registry);
        behaviour
    }

    /// A behaviour that publishes as `keys`.
    pub fn new(keys: Keypair, config: Config) -> Self {
        let clock = Clock::new();
        let filter = SharedFilter::new(keys.public(), config.author_filter().clone());
        let checks = AheadChecks::new(&config, filter.clone(), clock);
        Behaviour {
            checks,
            engine: Engine::with_filter(keys, config, filter, clock.now()),
            clock,
            connections: HashMap::new(),
            unsupported: HashSet::new(),
            stopped: HashSet::new(),
            up: HashSet::new(),
            events: VecDeque::new(),
            timer: Timer::default(),
            waker: None,
            paused: HashSet::new(),
            paused_for: (0, 0),
            connection_changes: 0,
            wall_offset: 0,
            metrics: None,
            writer: None,
            held_by_store: false,
        }
    }

    /// A behaviour that publishes as `keys` and keeps what it holds in `store` (a
    /// `store::Redb` file, say, feature `redb`): at start it takes back the messages,
    /// the ids it delivered and its next sequence from the store, so after a restart it
    /// reports no message twice, serves its history to peers that lack it, and never reuses
    /// a sequence. A message is reported ([`Event::Message`]) only once the write that
    /// records it is durable. Fails if the store cannot be read.
    pub fn with_store(
        keys: Keypair,
        config: Config,
        mut store: impl crate::store::Store,
    ) -> Result<Self, crate::store::StoreError> {
        let snapshot = store.load()?;
        let mut behaviour = Behaviour::new(keys, config);
        let now = behaviour.now();
        let restored = behaviour.engine.restore(snapshot, now);
        tracing::info!(
            messages = restored.messages,
            authors = restored.authors,
            forgotten = restored.forgotten,
            dropped = restored.dropped,
            "gossip store read"
        );
        // The reservation of sequences and what restoring left out, written before any frame
        // can carry a new message.
        let changes = behaviour.engine.take_changes();
        store.commit(&changes)?;
        behaviour.engine.written(&changes);
        let config = behaviour.engine.config();
        let writer = Writer::new(
            Box::new(store),
            config.max_stored_messages(),
            config.max_stored_bytes(),
        )
        .map_err(|e| crate::store::StoreError::Io {
            path: Default::default(),
            reason: format!("starting the store's thread: {e}"),
        })?;
        behaviour.writer = Some(writer);
        Ok(behaviour)
    }

    /// Registers this behaviour's metrics in `registry` (see the README for their names).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register_metrics(&mut self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics = Some(Metrics::new(registry));
    }

    /// The application's verdict on a message delivered while `validate_messages` is on:
    /// [`Validation::Accept`] stores and forwards it; `Reject` and `Ignore` drop it for good
    /// (`Reject` also counts against the peer it came from). Returns `false` if no message
    /// with this id waits (unknown, decided already, or past `validation_timeout`, after
    /// which it was ignored).
    pub fn report_validation(&mut self, id: &MessageId, validation: Validation) -> bool {
        let now = self.now();
        let decided = self.engine.report_validation(id, validation, now);
        self.wake();
        decided
    }

    /// Accepts `author`'s messages from now on: unblocks it, and adds it to an allow-list.
    pub fn allow_author(&mut self, author: PublicKey) {
        self.engine.allow_author(author);
    }

    /// Refuses `author`'s messages from now on (before their signature is checked), and
    /// drops what this node held of it.
    pub fn block_author(&mut self, author: &PublicKey) {
        self.engine.block_author(*author);
        self.wake();
    }

    /// Publishes a message: signs it, keeps it for peers that come later, and pushes it to
    /// the connected peers (at once with `eager_push`, else in the next round).
    pub fn publish(&mut self, payload: impl Into<Bytes>) -> Result<MessageId, PublishError> {
        let now = self.now();
        let id = self.engine.publish(payload, now)?;
        self.checks.known(id);
        tracing::debug!(message = %id, "published");
        self.wake();
        Ok(id)
    }

    /// Takes in a signed envelope the application got elsewhere (a backup, another transport,
    /// [`Message::envelope`] of another node): checked exactly as one from a peer (strict
    /// signature included), then stored and gossiped. It is not delivered as an
    /// [`Event::Message`]. Everything imported is one group in the fair shares of the author
    /// table and the store, like one peer's.
    pub fn import(&mut self, envelope: Envelope) -> Result<MessageId, crate::ImportError> {
        let now = self.now();
        let id = self.engine.import(envelope, now)?;
        self.checks.known(id);
        self.wake();
        Ok(id)
    }

    /// A held message's signed envelope (stored for peers; `None` once it aged out or was
    /// displaced, and while it waits for a verdict).
    pub fn message(&self, id: &MessageId) -> Option<&Envelope> {
        self.engine.message(id)
    }

    /// How many messages are held for peers, and their accounted size in bytes
    /// (`max_stored_messages`, `max_stored_bytes`).
    pub fn stored(&self) -> (usize, usize) {
        self.engine.stored()
    }

    /// How many authors are tracked (this node's own included; `max_tracked_authors`).
    pub fn tracked_authors(&self) -> usize {
        self.engine.tracked_authors()
    }

    /// How many messages wait for [`Behaviour::report_validation`].
    pub fn pending_validations(&self) -> usize {
        self.engine.pending_validations()
    }

    /// How many ranges of ids are wanted from peers and not yet received.
    pub fn outstanding_wants(&self) -> usize {
        self.engine.outstanding_wants()
    }

    /// Runs one gossip round now.
    pub fn gossip(&mut self) {
        let now = self.now();
        self.engine.gossip(now);
        self.wake();
    }

    /// Stops periodic rounds; [`Behaviour::gossip`] still runs one by hand.
    pub fn stop(&mut self) {
        let now = self.now();
        self.engine.set_gossip_interval(None, now);
        self.wake();
    }

    /// Starts (or changes) periodic rounds.
    pub fn start(&mut self, interval: Duration) {
        let now = self.now();
        self.engine.set_gossip_interval(Some(interval), now);
        self.wake();
    }

    /// The author key this node signs with.
    pub fn public_key(&self) -> PublicKey {
        self.engine.public_key()
    }

    /// The config in use.
    pub fn config(&self) -> &Config {
        self.engine.config()
    }

    /// Counters of what the node has done.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Whether this node knows the message `id` (received, published or expired).
    pub fn knows(&self, id: &MessageId) -> bool {
        self.engine.knows(id)
    }

    /// The peers this node gossips with.
    pub fn gossip_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.engine.peers()
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The engine's time, now, with the engine told where wall time is: after a suspend or
    /// a step of the system clock the time window and this node's timestamps follow wall
    /// time, while deadlines keep to monotonic time (`clock.rs`).
    fn now(&mut self) -> Millis {
        let (offset, now) = self.clock.offset();
        if offset != self.wall_offset {
            let change = offset.saturating_sub(self.wall_offset);
            if change.abs() > STEP_MS {
                tracing::warn!(
                    change_ms = change,
                    "the wall clock moved against monotonic time (a suspend, or the system \
                     clock was set): the time window follows the wall clock"
                );
            }
            self.wall_offset = offset;
            self.engine
                .set_wall_clock(now.saturating_add_signed(offset), now);
        }
        now
    }

    /// Whether `connection` is the one that carries this node's frames to `peer`.
    fn is_active(&self, peer: &PeerId, connection: ConnectionId) -> bool {
        self.connections
            .get(peer)
            .and_then(|c| c.first())
            .is_some_and(|c| *c == connection)
    }

    fn new_handler(&self, peer: &PeerId) -> Handler {
        let config = self.engine.config();
        let mut handler = if self.engine.is_banned(peer, self.clock.now()) {
            tracing::debug!(%peer, "peer broke the protocol recently: not gossiping with it");
            Handler::banned(config, self.checks.clone())
        } else {
            Handler::new(config, self.checks.clone())
        };
        // Also for a banned one: it reads again when its ban ends, and must then respect the
        // pause like every other connection.
        if self.paused.contains(peer) {
            handler.on_behaviour_event(HandlerIn::PauseReading);
        }
        handler
    }

    /// Pauses or resumes reading from each peer as its share of the validation queue fills
    /// or empties.
    fn sync_reading(&mut self) {
        let state = (self.engine.validation_changes(), self.connection_changes);
        if state == self.paused_for {
            return;
        }
        self.paused_for = state;
        self.paused
            .retain(|peer| self.connections.contains_key(peer));
        for (peer, connections) in &self.connections {
            let pause = self.held_by_store || self.engine.validation_pauses(peer);
            if pause == self.paused.contains(peer) {
                continue;
            }
            if pause {
                self.paused.insert(*peer);
            } else {
                self.paused.remove(peer);
            }
            tracing::debug!(
                %peer,
                paused = pause,
                "reading from the peer while its messages wait for verdicts"
            );
            for connection in connections {
                self.events.push_back(ToSwarm::NotifyHandler {
                    peer_id: *peer,
                    handler: NotifyHandler::One(*connection),
                    event: if pause {
                        HandlerIn::PauseReading
                    } else {
                        HandlerIn::ResumeReading
                    },
                });
            }
        }
    }

    fn on_connection_closed(&mut self, closed: ConnectionClosed<'_>) {
        let ConnectionClosed {
            peer_id,
            connection_id,
            ..
        } = closed;
        let Some(connections) = self.connections.get_mut(&peer_id) else {
            return;
        };
        let was_active = connections.first() == Some(&connection_id);
        connections.retain(|c| *c != connection_id);
        self.connection_changes += 1;
        if connections.is_empty() {
            self.connections.remove(&peer_id);
            self.unsupported.remove(&peer_id);
            self.stopped.remove(&peer_id);
            let now = self.now();
            self.engine.disconnect(&peer_id, now);
            self.peer_down(peer_id);
        } else if was_active
            && !self.unsupported.contains(&peer_id)
            && !self.stopped.contains(&peer_id)
        {
            // The next connection carries on, starting with a complete digest.
            let now = self.now();
            self.engine.connect(peer_id, now);
        }
    }

    fn peer_down(&mut self, peer: PeerId) {
        if self.up.remove(&peer) {
            self.report(Event::PeerDown { peer });
        }
    }

    /// Stops gossip with `peer` on every connection (it is banned): its substreams close,
    /// the connections stay for the other behaviours.
    fn stop_gossip(&mut self, peer: PeerId) {
        self.stopped.insert(peer);
        for connection in self.connections.get(&peer).into_iter().flatten() {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*connection),
                event: HandlerIn::Stop,
            });
        }
        self.peer_down(peer);
    }

    /// `peer`'s ban is over: gossip resumes on its connections, if it kept any.
    fn resume_gossip(&mut self, peer: PeerId) {
        self.stopped.remove(&peer);
        let Some(connections) = self.connections.get(&peer) else {
            return;
        };
        for connection in connections {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*connection),
                event: HandlerIn::Resume,
            });
        }
        if !self.unsupported.contains(&peer) {
            tracing::debug!(%peer, "ban over, gossiping again");
            let now = self.now();
            self.engine.connect(peer, now);
        }
    }

    fn on_output(&mut self, output: Output<PeerId>) {
        match output {
            Output::Send { peer, frame } => {
                match self.connections.get(&peer).and_then(|c| c.first()) {
                    Some(&connection) => self.events.push_back(ToSwarm::NotifyHandler {
                        peer_id: peer,
                        handler: NotifyHandler::One(connection),
                        event: HandlerIn::Send(frame),
                    }),
                    // The peer's last connection closed after the engine queued the frame; the
                    // engine already forgot the peer (a new connection starts afresh).
                    None => tracing::trace!(%peer, "frame for a peer with no connection"),
                }
            }
            Output::Deliver { message, from } => {
                self.checks.known(message.id);
                if let Some(metrics) = &self.metrics {
                    metrics.delivered(self.clock.wall() as i64 - message.timestamp as i64);
                }
                let event = Event::Message {
                    message,
                    propagation_source: from,
                };
                match &mut self.writer {
                    Some(writer) => writer.hold(event),
                    None => self.events.push_back(ToSwarm::GenerateEvent(event)),
                }
            }
            Output::Violation { peer, violation } => self.report_violation(peer, violation),
            Output::BanLifted { peer } => self.resume_gossip(peer),
            Output::CaughtUp { peer } => {
                tracing::debug!(%peer, "caught up");
                self.report(Event::CaughtUp { peer });
            }
            Output::ClockSkew {
                estimated_offset_ms,
            } => {
                tracing::warn!(
                    estimated_offset_ms,
                    max_age = ?self.engine.config().max_age(),
                    max_clock_skew = ?self.engine.config().max_clock_skew(),
                    "most envelopes from peers are outside this node's time window: check the \
                     system clock (peers' clocks minus this node's, median)"
                );
                self.report(Event::ClockSkew {
                    estimated_offset_ms,
                });
            }
            Output::Equivocation {
                first,
                second,
                from,
            } => {
                tracing::warn!(message = %first.id(), peer = %from, "equivocation");
                self.report(Event::Equivocation {
                    author: *first.author(),
                    first: Box::new(first),
                    second: Box::new(second),
                    propagation_source: from,
                });
            }
        }
    }

    /// Reports `event` to the application: behind the deliveries that wait for the durable
    /// store, if any, so events keep their order.
    fn report(&mut self, event: Event) {
        match &mut self.writer {
            Some(writer) if writer.unwritten() > 0 => writer.hold(event),
            _ => self.events.push_back(ToSwarm::GenerateEvent(event)),
        }
    }

    fn report_violation(&mut self, peer: PeerId, violation: Violation) {
        tracing::warn!(%peer, %violation, kind = %violation.kind(), "protocol violation, gossip with the peer stopped");
        if let Some(metrics) = &self.metrics {
            metrics.violation(&violation);
        }
        self.stop_gossip(peer);
        self.report(Event::PeerViolation { peer, violation });
    }

    /// Writes what the engine changed to the durable store, if there is one; returns `true`
    /// when that queued events (deliveries released, or a failure reported).
    fn write_store(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(writer) = &mut self.writer else {
            return false;
        };
        let written = writer.poll(&mut self.engine, cx);
        let full = writer.full();
        let unwritten = writer.unwritten();
        if let Some(metrics) = &self.metrics {
            metrics.store_unwritten(unwritten);
        }
        let queued = match written {
            crate::writer::Written::Nothing => false,
            crate::writer::Written::Released(events) => {
                if let Some(metrics) = &self.metrics {
                    metrics.store_write(true);
                }
                self.events
                    .extend(events.into_iter().map(ToSwarm::GenerateEvent));
                true
            }
            crate::writer::Written::Failed(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics.store_write(false);
                }
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::StoreFailed {
                        error,
                        unwritten,
                    }));
                true
            }
        };
        if full != self.held_by_store {
            self.held_by_store = full;
            self.connection_changes += 1;
            tracing::warn!(
                paused = full,
                unwritten,
                "reading from peers while deliveries wait for the gossip store"
            );
        }
        queued
    }

    /// Polls the engine's timer; runs the engine's timeout and returns `true` when it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.engine.poll_timeout() else {
            return false;
        };
        loop {
            let now = self.now();
            if deadline <= now {
                self.engine.handle_timeout(now);
                return true;
            }
            if !self.timer.wait(deadline, now, cx) {
                return false;
            }
        }
    }
}

/// The driver's one timer, armed for the engine's next deadline.
#[derive(Default)]
struct Timer {
    /// The deadline the delay is set for, until it fires.
    armed: Option<(Millis, Delay)>,
}

impl Timer {
    /// Waits for `deadline` (later than `now`): returns whether the delay fired (the caller
    /// checks the clock again), else it is registered with `cx`.
    fn wait(&mut self, deadline: Millis, now: Millis, cx: &mut Context<'_>) -> bool {
        let wait = Duration::from_millis(deadline - now);
        match &mut self.armed {
            // A delay that fires at or before the deadline stays: setting one costs a round
            // trip to the timer thread, and deadlines move often. If it fires early, nothing
            // is due yet and it is set again.
            Some((at, _)) if *at <= deadline => {}
            Some((at, delay)) => {
                delay.reset(wait);
                *at = deadline;
            }
            None => self.armed = Some((deadline, Delay::new(wait))),
        }
        let (_, delay) = self.armed.as_mut().expect("armed above");
        if delay.poll_unpin(cx).is_pending() {
            return false;
        }
        self.armed = None;
        true
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(&peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(&peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(established) => {
                let connections = self.connections.entry(established.peer_id).or_default();
                connections.push(established.connection_id);
                self.connection_changes += 1;
                // A banned peer's new connection starts with a stopped handler, and the engine
                // ignores it until the ban ends.
                if connections.len() == 1 {
                    let now = self.now();
                    self.engine.connect(established.peer_id, now);
                }
            }
            FromSwarm::ConnectionClosed(closed) => self.on_connection_closed(closed),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            HandlerEvent::Frame(frame, len) => {
                if let Some(metrics) = &self.metrics {
                    metrics.bytes_read(len);
                }
                let discarded = self.engine.verified_discarded();
                let now = self.now();
                self.engine.handle(Input::Verified { peer, frame }, now);
                // Verification work the engine threw away is charged to the peer once more.
                let wasted = self.engine.verified_discarded() - discarded;
                if wasted > 0 {
                    self.events.push_back(ToSwarm::NotifyHandler {
                        peer_id: peer,
                        handler: NotifyHandler::One(connection),
                        event: HandlerIn::Charge {
                            envelopes: wasted as usize,
                        },
                    });
                }
            }
            HandlerEvent::Written(len) => {
                if let Some(metrics) = &self.metrics {
                    metrics.bytes_written(len);
                }
            }
            HandlerEvent::Violation(error) => {
                let now = self.now();
                self.engine
                    .handle_violation(peer, Violation::Malformed(error), now);
            }
            HandlerEvent::Slow {
                waited,
                queued_bytes,
            } => {
                tracing::warn!(%peer, ?waited, queued_bytes, "slow peer, gossip with it stopped");
                let now = self.now();
                self.engine.handle(Input::Stalled { peer }, now);
                self.stop_gossip(peer);
                self.report(Event::SlowPeer {
                    peer,
                    waited,
                    queued_bytes,
                });
            }
            HandlerEvent::Unsupported => {
                if self.is_active(&peer, connection) {
                    let now = self.now();
                    self.engine.disconnect(&peer, now);
                    self.peer_down(peer);
                }
                if self.unsupported.insert(peer) {
                    tracing::debug!(%peer, "peer does not speak the protocol");
                    self.report(Event::UnsupportedPeer { peer });
                }
            }
            HandlerEvent::Dropped(frame) => {
                if let Some(metrics) = &self.metrics {
                    metrics.frame_dropped();
                }
                self.engine.frame_dropped(&peer, &frame);
            }
            HandlerEvent::Drained => self.engine.peer_drained(&peer),
            HandlerEvent::Up => {
                if self.is_active(&peer, connection)
                    && !self.stopped.contains(&peer)
                    && self.up.insert(peer)
                {
                    self.report(Event::PeerUp { peer });
                }
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        // Every input has reached the engine by now (O(1) to read).
        if let Some(metrics) = &mut self.metrics {
            metrics.update(&self.engine);
        }
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            if let Some(output) = self.engine.poll_output() {
                self.on_output(output);
                continue;
            }

            if self.write_store(cx) {
                continue;
            }
            if self.poll_timer(cx) {
                continue;
            }
            self.sync_reading();
            if !self.events.is_empty() {
                continue;
            }
            self.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }
}
