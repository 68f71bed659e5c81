//! The [`ConnectionHandler`]: one long-lived outbound substream that carries this node's
//! frames, one inbound substream that carries the peer's (`docs/PROTOCOL.md` §1). It decodes
//! and checks frames on the connection's own task, reads no faster than the peer's inbound
//! budget (`budget.rs`), queues outbound frames within `max_queued_bytes`, reports a peer
//! that does not drain a frame within `write_timeout`, and leaves every protocol decision to
//! the engine.

use crate::budget::InboundBudget;
use crate::codec::{encode_frame, read_frame_sized, write_frame};
use crate::config::Config;
use crate::frame::{Frame, FrameError, FrameLimits};
use crate::verify::AheadChecks;
use futures::future::BoxFuture;
use futures::prelude::*;
use futures_timer::Delay;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol,
};
use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The least a frame is charged against the inbound byte budget: the handler's and the
/// engine's work per frame does not shrink with the frame.
const MIN_FRAME_CHARGE: usize = 64;

/// Consecutive failures to open the outbound substream (other than the peer refusing the
/// protocol) after which the connection is treated as not speaking it.
const MAX_OPEN_FAILURES: u32 = 3;

/// What the behaviour asks a handler to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandlerIn {
    /// Queue a frame for the peer.
    Send(Frame),
    /// Stop reading from the peer (messages wait for the application's verdicts).
    PauseReading,
    /// Read again.
    ResumeReading,
    /// Stop gossiping on this connection (the peer broke the protocol or stalled): close this
    /// protocol's substreams, drop the queue, read and send nothing. The connection stays for
    /// the swarm's other protocols.
    Stop,
    /// Gossip on this connection again (the peer's ban is over).
    Resume,
    /// Charge the peer's inbound budget for this many envelopes more: signatures its
    /// handler verified and the engine then discarded (`verify.rs`).
    Charge {
        /// How many envelopes.
        envelopes: usize,
    },
}

/// What a handler tells the behaviour.
#[derive(Debug)]
pub enum HandlerEvent {
    /// A checked frame from the peer with the handler's signature verdicts on its envelopes
    /// (`verify.rs`), and the bytes it took on the wire.
    Frame(crate::verify::VerifiedFrame, usize),
    /// A frame of this many bytes (prefix included) was written to the peer.
    Written(usize),
    /// The peer broke the protocol; the handler stopped reading.
    Violation(FrameError),
    /// The peer does not speak the protocol on this connection (reported once).
    Unsupported,
    /// This node's substream to the peer is up for the first time on this connection (the
    /// protocol was negotiated).
    Up,
    /// A frame was not sent (queue full or stream failed); the engine re-announces it.
    Dropped(Frame),
    /// The queue is empty again after a frame was dropped.
    Drained,
    /// The peer did not take a frame within `write_timeout`: this node stopped writing to
    /// it (the behaviour stops gossip with the peer for its ban).
    Slow {
        /// How long the frame has been waiting.
        waited: Duration,
        /// Bytes still queued behind it.
        queued_bytes: usize,
    },
}

type ReadFuture = BoxFuture<'static, (Stream, Result<Option<(Frame, usize)>, FrameError>)>;
type WriteFuture = BoxFuture<'static, (Stream, Result<usize, std::io::Error>)>;

enum Outbound {
    /// No substream; one is requested when a frame is queued.
    None,
    /// A substream was requested.
    Opening,
    Idle(Stream),
    /// Writing frames (one write); the peer must take them by the deadline. The deadline's
    /// timer is only set if the write does not complete at once.
    Writing(WriteFuture, Vec<Frame>, usize, Instant, Option<Delay>),
    /// The peer did not drain a frame in time: nothing is sent on this connection again.
    Slow,
    /// Gossip is stopped on this connection (the peer is banned): nothing is read or sent
    /// until [`HandlerIn::Resume`].
    Stopped,
    /// The peer does not speak the protocol: nothing is sent on this connection again.
    Unsupported {
        reported: bool,
    },
}

/// The per-connection handler of [`Behaviour`](crate::Behaviour).
pub struct Handler {
    protocol: StreamProtocol,
    checks: AheadChecks,
    limits: FrameLimits,
    /// The behaviour asked to stop reading.
    paused: bool,
    max_queued_bytes: usize,
    write_timeout: Duration,
    budget: InboundBudget,
    /// Set while the peer is over its inbound budget: reading resumes when it fires.
    budget_wait: Option<Delay>,
    /// Whether this node's substream came up on this connection yet.
    up: bool,
    inbound: Option<ReadFuture>,
    outbound: Outbound,
    queue: VecDeque<(Frame, usize)>,
    queued_bytes: usize,
    /// A frame was dropped since the queue was last empty.
    dropped: bool,
    open_failures: u32,
    events: VecDeque<HandlerEvent>,
}

impl Handler {
    pub(crate) fn new(config: &Config, checks: AheadChecks) -> Self {
        let limits = config.frame_limits();
        Handler {
            protocol: config.protocol_name().clone(),
            checks,
            limits,
            paused: false,
            max_queued_bytes: config.max_queued_bytes(),
            write_timeout: config.write_timeout(),
            budget: InboundBudget::new(
                config.inbound_budget(),
                (limits.max_frame_size, limits.max_messages),
                Instant::now(),
            ),
            budget_wait: None,
            up: false,
            inbound: None,
            outbound: Outbound::None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            dropped: false,
            open_failures: 0,
            events: VecDeque::new(),
        }
    }

    /// A handler for a peer that is banned (it broke the protocol or stalled recently): it
    /// reads nothing, sends nothing and does not keep the connection alive, until resumed.
    pub(crate) fn banned(config: &Config, checks: AheadChecks) -> Self {
        let mut handler = Handler::new(config, checks);
        handler.stop();
        handler
    }

    fn stop(&mut self) {
        self.inbound = None;
        // A connection whose peer does not speak the protocol stays so: resuming it would only
        // keep it alive for nothing.
        if !matches!(self.outbound, Outbound::Unsupported { .. }) {
            self.outbound = Outbound::Stopped;
        }
        self.queue.clear();
        self.queued_bytes = 0;
        self.dropped = false;
        self.budget_wait = None;
    }

    /// Whether this connection reads and sends nothing (stopped, or the peer does not speak
    /// the protocol).
    fn stopped(&self) -> bool {
        matches!(
            self.outbound,
            Outbound::Stopped | Outbound::Unsupported { .. }
        )
    }

    fn read(&self, mut stream: Stream) -> ReadFuture {
        let limits = self.limits;
        async move {
            let result = read_frame_sized(&mut stream, &limits).await;
            (stream, result)
        }
        .boxed()
    }

    fn drop_queue(&mut self) {
        self.queued_bytes = 0;
        self.dropped = true;
        for (frame, _) in self.queue.drain(..) {
            self.events.push_back(HandlerEvent::Dropped(frame));
        }
    }

    fn on_dial_upgrade_error(&mut self, error: StreamUpgradeError<std::convert::Infallible>) {
        if self.stopped() {
            return;
        }
        let refused = matches!(error, StreamUpgradeError::NegotiationFailed);
        self.open_failures += 1;
        if refused || self.open_failures >= MAX_OPEN_FAILURES {
            tracing::debug!(%error, protocol = %self.protocol, "peer does not speak the protocol");
            self.outbound = Outbound::Unsupported { reported: false };
            self.queue.clear();
            self.queued_bytes = 0;
        } else {
            tracing::debug!(%error, protocol = %self.protocol, "opening the substream failed");
            self.outbound = Outbound::None;
            self.drop_queue();
        }
    }

    /// Queues a frame, or reports it dropped when the queue is full.
    fn enqueue(&mut self, frame: Frame) {
        if self.stopped() {
            return;
        }
        if matches!(self.outbound, Outbound::Slow) {
            self.events.push_back(HandlerEvent::Dropped(frame));
            return;
        }
        // Counted as the larger of its encoded size and its memory, until it is written; a
        // frame always fits when nothing is queued or being written (a frame may be larger in
        // memory than `max_queued_bytes` allows).
        let len = frame.queued_len();
        if self.queued_bytes > 0 && self.queued_bytes + len > self.max_queued_bytes {
            tracing::debug!(
                queued_bytes = self.queued_bytes,
                max_queued_bytes = self.max_queued_bytes,
                "outbound queue full, frame dropped"
            );
            self.events.push_back(HandlerEvent::Dropped(frame));
            self.dropped = true;
            return;
        }
        self.queued_bytes += len;
        self.queue.push_back((frame, len));
    }

    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Option<HandlerEvent> {
        // Paused by the behaviour, or a connection this node does not gossip on (the peer
        // does not speak the protocol, or was too slow): nothing is read.
        if self.paused
            || matches!(
                self.outbound,
                Outbound::Unsupported { .. } | Outbound::Slow | Outbound::Stopped
            )
        {
            return None;
        }
        let future = self.inbound.as_mut()?;
        // Over budget: do not read (the transport's flow control holds the peer back).
        if let Some(wait) = self.budget_wait.as_mut() {
            if wait.poll_unpin(cx).is_pending() {
                return None;
            }
            self.budget_wait = None;
        }
        let Poll::Ready((stream, result)) = future.poll_unpin(cx) else {
            return None;
        };
        match result {
            Ok(Some((frame, len))) => {
                let now = Instant::now();
                // Every frame costs at least this much, so tiny frames are not free.
                self.budget
                    .charge(len.max(MIN_FRAME_CHARGE), frame.messages.len(), now);
                if let Some(wait) = self.budget.wait(now) {
                    tracing::trace!(?wait, "inbound budget spent, pausing reads");
                    self.budget_wait = Some(Delay::new(wait));
                }
                self.inbound = Some(self.read(stream));
                // Signatures are checked here, on this connection's task.
                Some(HandlerEvent::Frame(self.checks.verify(frame), len))
            }
            Ok(None) => {
                self.inbound = None;
                None
            }
            Err(error) if error.is_violation() => {
                self.inbound = None;
                Some(HandlerEvent::Violation(error))
            }
            Err(error) => {
                tracing::debug!(%error, protocol = %self.protocol, "inbound substream failed");
                self.inbound = None;
                None
            }
        }
    }

    /// Drives the outbound side; returns a substream request when one is needed.
    fn poll_outbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<SubstreamProtocol<ReadyUpgrade<StreamProtocol>>> {
        loop {
            match std::mem::replace(&mut self.outbound, Outbound::None) {
                Outbound::None if !self.queue.is_empty() => {
                    self.outbound = Outbound::Opening;
                    let upgrade = ReadyUpgrade::new(self.protocol.clone());
                    return Some(SubstreamProtocol::new(upgrade, ()));
                }
                Outbound::Idle(mut stream) => {
                    if self.queue.is_empty() {
                        self.outbound = Outbound::Idle(stream);
                        return None;
                    }
                    // Everything queued (up to one frame's size) goes in one write: one
                    // transport message instead of one per frame. The future owns the bytes;
                    // the frames stay here in case they must be reported as dropped, and stay
                    // counted in `queued_bytes` until the write completes.
                    let mut framed = Vec::new();
                    let mut frames = Vec::new();
                    let mut charged = 0;
                    while let Some((frame, _)) = self.queue.front() {
                        if !frames.is_empty()
                            && framed.len() + frame.encoded_len() > self.limits.max_frame_size
                        {
                            break;
                        }
                        let (frame, len) = self.queue.pop_front().expect("just looked");
                        charged += len;
                        framed.extend_from_slice(&encode_frame(&frame));
                        frames.push(frame);
                    }
                    let written = framed.len();
                    let write = async move {
                        let result = write_frame(&mut stream, &framed).await;
                        (stream, result.map(|()| written))
                    };
                    self.outbound =
                        Outbound::Writing(write.boxed(), frames, charged, Instant::now(), None);
                }
                Outbound::Writing(mut write, frames, charged, started, mut deadline) => {
                    match write.poll_unpin(cx) {
                        Poll::Ready((stream, Ok(written))) => {
                            self.queued_bytes = self.queued_bytes.saturating_sub(charged);
                            self.outbound = Outbound::Idle(stream);
                            self.events.push_back(HandlerEvent::Written(written));
                        }
                        Poll::Ready((_, Err(error))) => {
                            tracing::debug!(%error, protocol = %self.protocol, "outbound substream failed");
                            self.events
                                .extend(frames.into_iter().map(HandlerEvent::Dropped));
                            self.drop_queue();
                            return None;
                        }
                        Poll::Pending
                            if deadline
                                .get_or_insert_with(|| {
                                    Delay::new(self.write_timeout.saturating_sub(started.elapsed()))
                                })
                                .poll_unpin(cx)
                                .is_ready() =>
                        {
                            let waited = started.elapsed();
                            tracing::debug!(?waited, "peer did not drain a frame in time");
                            self.events.push_back(HandlerEvent::Slow {
                                waited,
                                queued_bytes: self.queued_bytes,
                            });
                            self.events
                                .extend(frames.into_iter().map(HandlerEvent::Dropped));
                            self.drop_queue();
                            self.outbound = Outbound::Slow;
                            return None;
                        }
                        Poll::Pending => {
                            self.outbound =
                                Outbound::Writing(write, frames, charged, started, deadline);
                            return None;
                        }
                    }
                }
                Outbound::Unsupported { reported: false } => {
                    self.outbound = Outbound::Unsupported { reported: true };
                    self.events.push_back(HandlerEvent::Unsupported);
                    return None;
                }
                other => {
                    self.outbound = other;
                    return None;
                }
            }
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = HandlerEvent;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ())
    }

    fn connection_keep_alive(&self) -> bool {
        // Gossip needs standing connections; a peer without the protocol (or banned, or too
        // slow) is left to the other behaviours to keep or close.
        !matches!(
            self.outbound,
            Outbound::Unsupported { .. } | Outbound::Slow | Outbound::Stopped
        )
    }

    fn on_behaviour_event(&mut self, event: HandlerIn) {
        match event {
            HandlerIn::Send(frame) => self.enqueue(frame),
            HandlerIn::PauseReading => self.paused = true,
            HandlerIn::ResumeReading => self.paused = false,
            HandlerIn::Stop => self.stop(),
            HandlerIn::Charge { envelopes } => {
                let now = Instant::now();
                self.budget.charge(0, envelopes, now);
                if self.budget_wait.is_none()
                    && let Some(wait) = self.budget.wait(now)
                {
                    self.budget_wait = Some(Delay::new(wait));
                }
            }
            HandlerIn::Resume => {
                if matches!(self.outbound, Outbound::Stopped) {
                    self.outbound = Outbound::None;
                    self.up = false;
                }
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(event) = self.poll_inbound(cx) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        if let Some(protocol) = self.poll_outbound(cx) {
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { protocol });
        }
        // After a drop, an empty queue with nothing in flight is drained, whatever state the
        // substream is in (it may have failed and not been reopened).
        if self.dropped
            && self.queue.is_empty()
            && matches!(self.outbound, Outbound::None | Outbound::Idle(_))
        {
            self.dropped = false;
            self.events.push_back(HandlerEvent::Drained);
        }
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut stream,
                ..
            }) => {
                if self.stopped() {
                    return; // Dropped unread.
                }
                // One inbound substream per connection: a new one replaces the old.
                stream.ignore_for_keep_alive();
                self.inbound = Some(self.read(stream));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                if self.stopped() {
                    return; // Opened before the stop: dropped.
                }
                stream.ignore_for_keep_alive();
                self.open_failures = 0;
                self.outbound = Outbound::Idle(stream);
                if !std::mem::replace(&mut self.up, true) {
                    self.events.push_back(HandlerEvent::Up);
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.on_dial_upgrade_error(error)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::frame::Frame;
    use crate::keys::Keypair;

    #[test]
    fn frames_beyond_the_queue_limit_are_reported_dropped() {
        let envelope =
            Envelope::sign(&Keypair::from_seed(&[1; 32]), 1, 1, vec![0u8; 1000]).unwrap();
        let frame = Frame {
            messages: vec![envelope],
            ..Frame::default()
        };
        let len = frame.queued_len();
        let config = crate::Config::builder()
            .max_frame_size(2 * len)
            .max_payload_size(1000)
            .max_queued_bytes(3 * len)
            .build()
            .unwrap();
        let me = Keypair::generate().public();
        let filter = crate::engine::SharedFilter::new(me, Default::default());
        let checks = AheadChecks::new(&config, filter, crate::clock::Clock::new());
        let mut handler = Handler::new(&config, checks);
        for _ in 0..5 {
            handler.on_behaviour_event(HandlerIn::Send(frame.clone()));
        }
        assert_eq!(handler.queue.len(), 3);
        assert_eq!(handler.queued_bytes, 3 * len);
        let dropped = handler
            .events
            .iter()
            .filter(|e| matches!(e, HandlerEvent::Dropped(_)))
            .count();
        assert_eq!(dropped, 2, "the two frames over the limit are reported");
    }

    #[test]
    fn a_stop_and_resume_keep_a_connection_that_does_not_speak_the_protocol_so() {
        let config = crate::Config::default();
        let filter =
            crate::engine::SharedFilter::new(Keypair::generate().public(), Default::default());
        let checks = AheadChecks::new(&config, filter, crate::clock::Clock::new());
        let mut handler = Handler::new(&config, checks);
        handler.on_dial_upgrade_error(StreamUpgradeError::NegotiationFailed);
        assert!(!handler.connection_keep_alive());
        handler.on_behaviour_event(HandlerIn::Stop);
        handler.on_behaviour_event(HandlerIn::Resume);
        assert!(
            !handler.connection_keep_alive(),
            "resumed into a gossip connection the peer cannot speak"
        );
        let mut stopped = Handler::new(&config, handler.checks.clone());
        stopped.on_behaviour_event(HandlerIn::Stop);
        assert!(!stopped.connection_keep_alive());
        stopped.on_behaviour_event(HandlerIn::Resume);
        assert!(
            stopped.connection_keep_alive(),
            "a stopped connection resumes"
        );
    }
}
