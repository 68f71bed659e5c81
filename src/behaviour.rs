//! The [`NetworkBehaviour`]: drives an [`Engine<PeerId>`](crate::engine::Engine) with the
//! swarm's connections, the handlers' frames and a timer. It makes no protocol decision.

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{
    Engine, Input, Millis, Output, PublishError, SharedFilter, Stats, Validation, Violation,
};
use crate::envelope::{Envelope, Message, MessageId};
use crate::handler::{Handler, HandlerEvent, HandlerIn};
use crate::keys::{Keypair, PublicKey};
use crate::metrics::Metrics;
use crate::verify::AheadChecks;
use futures::FutureExt as _;
use futures_timer::Delay;
use libp2p::PeerId;
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionHandler as _, ConnectionId,
    FromSwarm, NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm,
};
use prost::bytes::Bytes;
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
    /// A peer broke the protocol; its connections are being closed, and it is not gossiped
    /// with for `violation_ban`.
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
    /// too slow): the connection is being closed. Other peers are unaffected.
    SlowPeer {
        /// The peer.
        peer: PeerId,
        /// How long the frame had been waiting.
        waited: Duration,
        /// Bytes that were still queued for it (re-announced to it if it reconnects).
        queued_bytes: usize,
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
}

/// Signed epidemic broadcast for a libp2p swarm. See the crate docs for an example.
pub struct Behaviour {
    engine: Engine<PeerId>,
    clock: Clock,
    /// Open connections per peer; the first one carries this node's frames.
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Peers already reported as not speaking the protocol.
    unsupported: HashSet<PeerId>,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    /// Frames the engine asked to send to a peer with no connection: handed back to it as
    /// inputs once its outputs are drained.
    not_sent: Vec<(PeerId, crate::frame::Frame)>,
    timer: Timer,
    waker: Option<Waker>,
    /// Reading from peers is paused: `max_pending_validations` messages wait for verdicts.
    reading_paused: bool,
    metrics: Option<Metrics>,
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
    pub fn new_with_metrics(
        keys: Keypair,
        config: Config,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let mut behaviour = Behaviour::new(keys, config);
        behaviour.metrics = Some(Metrics::new(registry));
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
            events: VecDeque::new(),
            not_sent: Vec::new(),
            timer: Timer::default(),
            waker: None,
            reading_paused: false,
            metrics: None,
        }
    }

    /// The application's verdict on a message delivered while `validate_messages` is on:
    /// [`Validation::Accept`] stores and forwards it; `Reject` and `Ignore` drop it for good
    /// (`Reject` also counts against the peer it came from). Returns `false` if no message
    /// with this id waits (unknown, decided already, or past `validation_timeout`, after
    /// which it was ignored).
    pub fn report_validation(&mut self, id: &MessageId, validation: Validation) -> bool {
        let decided = self
            .engine
            .report_validation(id, validation, self.clock.now());
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
        let id = self.engine.publish(payload, self.clock.now())?;
        self.checks.known(id);
        tracing::debug!(message = %id, "published");
        self.wake();
        Ok(id)
    }

    /// Runs one gossip round now.
    pub fn gossip(&mut self) {
        self.engine.gossip(self.clock.now());
        self.wake();
    }

    /// Stops periodic rounds; [`Behaviour::gossip`] still runs one by hand.
    pub fn stop(&mut self) {
        self.engine.set_gossip_interval(None, self.clock.now());
        self.wake();
    }

    /// Starts (or changes) periodic rounds.
    pub fn start(&mut self, interval: Duration) {
        self.engine
            .set_gossip_interval(Some(interval), self.clock.now());
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

    fn new_handler(&self, peer: &PeerId) -> Handler {
        let config = self.engine.config();
        if self.engine.is_banned(peer, self.clock.now()) {
            tracing::debug!(%peer, "peer broke the protocol recently: not gossiping with it");
            return Handler::banned(config, self.checks.clone());
        }
        let mut handler = Handler::new(config, self.checks.clone());
        if self.reading_paused {
            handler.on_behaviour_event(HandlerIn::PauseReading);
        }
        handler
    }

    /// Pauses or resumes reading from every peer as the validation queue fills or empties.
    fn sync_reading(&mut self) {
        let full = self.engine.validation_full();
        if full == self.reading_paused {
            return;
        }
        self.reading_paused = full;
        tracing::debug!(
            paused = full,
            "reading from peers while verdicts are pending"
        );
        for (peer, connections) in &self.connections {
            for connection in connections {
                self.events.push_back(ToSwarm::NotifyHandler {
                    peer_id: *peer,
                    handler: NotifyHandler::One(*connection),
                    event: if full {
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
        if connections.is_empty() {
            self.connections.remove(&peer_id);
            self.unsupported.remove(&peer_id);
            self.engine.disconnect(&peer_id, self.clock.now());
        } else if was_active && !self.unsupported.contains(&peer_id) {
            // The next connection carries on, starting with a complete digest.
            self.engine.connect(peer_id, self.clock.now());
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
                    None => self.not_sent.push((peer, frame)),
                }
            }
            Output::Deliver { message, from } => {
                self.checks.known(message.id);
                if let Some(metrics) = &self.metrics {
                    metrics.delivered(self.clock.now() as i64 - message.timestamp as i64);
                }
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::Message {
                        message,
                        propagation_source: from,
                    }));
            }
            Output::Violation { peer, violation } => self.report_violation(peer, violation),
            Output::Equivocation {
                first,
                second,
                from,
            } => {
                tracing::warn!(message = %first.id(), peer = %from, "equivocation");
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::Equivocation {
                        author: *first.author(),
                        first: Box::new(first),
                        second: Box::new(second),
                        propagation_source: from,
                    }));
            }
        }
    }

    fn report_violation(&mut self, peer: PeerId, violation: Violation) {
        tracing::warn!(%peer, %violation, "protocol violation, closing connection");
        if let Some(metrics) = &self.metrics {
            metrics.violation(&violation);
        }
        self.events.push_back(ToSwarm::CloseConnection {
            peer_id: peer,
            connection: CloseConnection::All,
        });
        self.events
            .push_back(ToSwarm::GenerateEvent(Event::PeerViolation {
                peer,
                violation,
            }));
    }

    /// Polls the engine's timer; runs the engine's timeout and returns `true` when it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.engine.poll_timeout() else {
            return false;
        };
        loop {
            let now = self.clock.now();
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
                if connections.len() == 1 {
                    self.engine.connect(established.peer_id, self.clock.now());
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
                self.engine
                    .handle(Input::Verified { peer, frame }, self.clock.now());
            }
            HandlerEvent::Written(len) => {
                if let Some(metrics) = &self.metrics {
                    metrics.bytes_written(len);
                }
            }
            HandlerEvent::Violation(error) => {
                self.engine
                    .handle_violation(peer, Violation::Malformed(error), self.clock.now());
            }
            HandlerEvent::Slow {
                waited,
                queued_bytes,
            } => {
                tracing::warn!(%peer, ?waited, queued_bytes, "slow peer, closing connection");
                self.events.push_back(ToSwarm::CloseConnection {
                    peer_id: peer,
                    connection: CloseConnection::One(connection),
                });
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::SlowPeer {
                        peer,
                        waited,
                        queued_bytes,
                    }));
            }
            HandlerEvent::Unsupported => {
                let active = self
                    .connections
                    .get(&peer)
                    .and_then(|c| c.first())
                    .is_some_and(|c| *c == connection);
                if active {
                    self.engine.disconnect(&peer, self.clock.now());
                }
                if self.unsupported.insert(peer) {
                    tracing::debug!(%peer, "peer does not speak the protocol");
                    self.events
                        .push_back(ToSwarm::GenerateEvent(Event::UnsupportedPeer { peer }));
                }
            }
            HandlerEvent::Dropped(frame) => {
                if let Some(metrics) = &self.metrics {
                    metrics.frame_dropped();
                }
                self.engine.frame_dropped(&peer, &frame);
            }
            HandlerEvent::Drained => self.engine.peer_drained(&peer),
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
            if !self.not_sent.is_empty() {
                let now = self.clock.now();
                for (peer, frame) in std::mem::take(&mut self.not_sent) {
                    self.engine.handle(Input::FrameNotSent { peer, frame }, now);
                }
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
