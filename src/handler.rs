//! The [`ConnectionHandler`]: one long-lived outbound substream that carries this node's
//! frames, one inbound substream that carries the peer's (DESIGN §2). It decodes and checks
//! frames on the connection's own task, queues outbound frames within `max_queued_bytes`,
//! and leaves every protocol decision to the engine.

use crate::codec::{encode_frame, read_frame, write_frame};
use crate::frame::{Frame, FrameError, FrameLimits};
use futures::future::BoxFuture;
use futures::prelude::*;
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

/// The protocol id of wire protocol v1.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/secure-gossip/1.0.0");

/// Consecutive failures to open the outbound substream (other than the peer refusing the
/// protocol) after which the connection is treated as not speaking it.
const MAX_OPEN_FAILURES: u32 = 3;

/// What the behaviour asks a handler to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandlerIn {
    /// Queue a frame for the peer.
    Send(Frame),
}

/// What a handler tells the behaviour.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandlerEvent {
    /// A checked frame from the peer.
    Frame(Frame),
    /// The peer broke the protocol; the handler stopped reading.
    Violation(FrameError),
    /// The peer does not speak the protocol on this connection (reported once).
    Unsupported,
    /// A frame was not sent (queue full or stream failed); the engine re-announces it.
    Dropped(Frame),
}

type ReadFuture = BoxFuture<'static, (Stream, Result<Option<Frame>, FrameError>)>;
type WriteFuture = BoxFuture<'static, (Stream, Result<(), std::io::Error>)>;

enum Outbound {
    /// No substream; one is requested when a frame is queued.
    None,
    /// A substream was requested.
    Opening,
    Idle(Stream),
    Writing(WriteFuture, Frame),
    /// The peer does not speak the protocol: nothing is sent on this connection again.
    Unsupported {
        reported: bool,
    },
}

/// The per-connection handler of [`Behaviour`](crate::Behaviour).
pub struct Handler {
    limits: FrameLimits,
    max_queued_bytes: usize,
    inbound: Option<ReadFuture>,
    outbound: Outbound,
    queue: VecDeque<(Frame, usize)>,
    queued_bytes: usize,
    open_failures: u32,
    events: VecDeque<HandlerEvent>,
}

impl Handler {
    pub(crate) fn new(limits: FrameLimits, max_queued_bytes: usize) -> Self {
        Handler {
            limits,
            max_queued_bytes,
            inbound: None,
            outbound: Outbound::None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            open_failures: 0,
            events: VecDeque::new(),
        }
    }

    fn read(&self, mut stream: Stream) -> ReadFuture {
        let limits = self.limits;
        async move {
            let result = read_frame(&mut stream, &limits).await;
            (stream, result)
        }
        .boxed()
    }

    fn drop_queue(&mut self) {
        self.queued_bytes = 0;
        for (frame, _) in self.queue.drain(..) {
            self.events.push_back(HandlerEvent::Dropped(frame));
        }
    }

    fn on_dial_upgrade_error(&mut self, error: StreamUpgradeError<std::convert::Infallible>) {
        let refused = matches!(error, StreamUpgradeError::NegotiationFailed);
        self.open_failures += 1;
        if refused || self.open_failures >= MAX_OPEN_FAILURES {
            tracing::debug!(%error, "peer does not speak {PROTOCOL_NAME}");
            self.outbound = Outbound::Unsupported { reported: false };
            self.queue.clear();
            self.queued_bytes = 0;
        } else {
            tracing::debug!(%error, "opening the {PROTOCOL_NAME} substream failed");
            self.outbound = Outbound::None;
            self.drop_queue();
        }
    }

    /// Queues a frame, or reports it dropped when the queue is full.
    fn enqueue(&mut self, frame: Frame) {
        if matches!(self.outbound, Outbound::Unsupported { .. }) {
            return;
        }
        let len = frame.encoded_len();
        if self.queued_bytes + len > self.max_queued_bytes {
            tracing::debug!(
                queued_bytes = self.queued_bytes,
                max_queued_bytes = self.max_queued_bytes,
                "outbound queue full, frame dropped"
            );
            self.events.push_back(HandlerEvent::Dropped(frame));
            return;
        }
        self.queued_bytes += len;
        self.queue.push_back((frame, len));
    }

    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Option<HandlerEvent> {
        let future = self.inbound.as_mut()?;
        let Poll::Ready((stream, result)) = future.poll_unpin(cx) else {
            return None;
        };
        match result {
            Ok(Some(frame)) => {
                self.inbound = Some(self.read(stream));
                Some(HandlerEvent::Frame(frame))
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
                tracing::debug!(%error, "inbound {PROTOCOL_NAME} substream failed");
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
                    return Some(SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL_NAME), ()));
                }
                Outbound::Idle(mut stream) => match self.queue.pop_front() {
                    Some((frame, len)) => {
                        self.queued_bytes -= len;
                        // The future owns the bytes; the frame stays here in case it must be
                        // reported as dropped.
                        let framed = encode_frame(&frame);
                        let write = async move {
                            let result = write_frame(&mut stream, &framed).await;
                            (stream, result)
                        };
                        self.outbound = Outbound::Writing(write.boxed(), frame);
                    }
                    None => {
                        self.outbound = Outbound::Idle(stream);
                        return None;
                    }
                },
                Outbound::Writing(mut write, frame) => match write.poll_unpin(cx) {
                    Poll::Pending => {
                        self.outbound = Outbound::Writing(write, frame);
                        return None;
                    }
                    Poll::Ready((stream, Ok(()))) => self.outbound = Outbound::Idle(stream),
                    Poll::Ready((_, Err(error))) => {
                        tracing::debug!(%error, "outbound {PROTOCOL_NAME} substream failed");
                        self.events.push_back(HandlerEvent::Dropped(frame));
                        self.drop_queue();
                        return None;
                    }
                },
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
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL_NAME), ())
    }

    fn connection_keep_alive(&self) -> bool {
        // Gossip needs standing connections; a peer without the protocol is left to the
        // other behaviours to keep or close.
        !matches!(self.outbound, Outbound::Unsupported { .. })
    }

    fn on_behaviour_event(&mut self, event: HandlerIn) {
        let HandlerIn::Send(frame) = event;
        self.enqueue(frame);
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
                // One inbound substream per connection: a new one replaces the old.
                stream.ignore_for_keep_alive();
                self.inbound = Some(self.read(stream));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.open_failures = 0;
                self.outbound = Outbound::Idle(stream);
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
        let limits = crate::Config::default().frame_limits();
        let envelope =
            Envelope::sign(&Keypair::from_seed(&[1; 32]), 1, 1, vec![0u8; 1000]).unwrap();
        let frame = Frame {
            messages: vec![envelope],
            ..Frame::default()
        };
        let len = frame.encoded_len();
        let mut handler = Handler::new(limits, 3 * len);
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
}
