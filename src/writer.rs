//! The behaviour's side of a durable store: writes the engine's changes on a thread of their
//! own, then lets the deliveries they cover go.
//!
//! True here:
//! - an [`Event::Message`] leaves only after a transaction that includes its id committed:
//!   each write carries the deliveries held when its changes were taken, and releases
//!   exactly those;
//! - the swarm's task never waits for the disk: transactions run on the store's own thread,
//!   one at a time;
//! - at most one transaction per [`WRITE_INTERVAL_MS`], whatever peers send: each holds
//!   everything the engine changed since the last (a write and its disk sync per frame would
//!   let peers set this node's disk load; the interval is the most a delivery waits beyond
//!   the write itself);
//! - a failed write is reported ([`Event::StoreFailed`]) and tried again after a backoff
//!   (100 ms, doubling to 10 s) with its changes merged into the next (or, once they are more
//!   than the engine's own marks would keep, a rewrite of everything); its deliveries wait.
//!   A written transaction's reservation of sequences is handed to the engine
//!   ([`Engine::written`]), which signs nothing above what is on disk;
//! - while deliveries wait, the behaviour's other events wait behind them (`Behaviour::report`),
//!   so the application never sees `CaughtUp` before the messages of the catch-up.
//!   While waiting deliveries hold more than `max_stored_messages` messages or
//!   `max_stored_bytes` of payload, the behaviour stops reading from peers
//!   ([`Writer::full`]), so a disk that keeps failing costs at most that much memory.

use crate::behaviour::Event;
use crate::engine::{Changes, Engine};
use crate::store::{Store, StoreError};
use futures::FutureExt as _;
use futures::channel::oneshot;
use futures_timer::Delay;
use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The least time between the starts of two transactions.
pub(crate) const WRITE_INTERVAL_MS: u64 = 10;
const FIRST_BACKOFF_MS: u64 = 100;
const MAX_BACKOFF_MS: u64 = 10_000;

/// What [`Writer::poll`] did.
pub(crate) enum Written {
    /// Nothing to report now.
    Nothing,
    /// A transaction committed: these deliveries may go.
    Released(VecDeque<Event>),
    /// A transaction failed; it is tried again later.
    Failed(StoreError),
}

/// The changes back: written, or not with why.
type Outcome = Result<Changes, (StoreError, Changes)>;

/// A transaction on the store's thread, and the deliveries it covers.
struct InFlight {
    reply: oneshot::Receiver<Outcome>,
    covers: VecDeque<Event>,
    bytes: usize,
}

pub(crate) struct Writer {
    /// To the store's thread (which ends, closing the store, when this is dropped).
    jobs: std::sync::mpsc::Sender<(Changes, oneshot::Sender<Outcome>)>,
    in_flight: Option<InFlight>,
    /// Deliveries not yet part of a transaction, with their payload bytes.
    unwritten: VecDeque<Event>,
    unwritten_bytes: usize,
    /// Changes of a failed write, merged into the next.
    failed: Option<Changes>,
    backoff_ms: u64,
    /// When the next transaction may start (the interval, or a backoff), armed.
    wait: Option<Delay>,
    last_start: Option<Instant>,
    max_messages: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("unwritten", &self.unwritten())
            .field("failing", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the store's thread.
    pub(crate) fn new(
        mut store: Box<dyn Store>,
        max_messages: usize,
        max_bytes: usize,
    ) -> std::io::Result<Self> {
        let (jobs, incoming) = std::sync::mpsc::channel::<(Changes, oneshot::Sender<Outcome>)>();
        std::thread::Builder::new()
            .name("secure-gossip-store".into())
            .spawn(move || {
                while let Ok((changes, reply)) = incoming.recv() {
                    let outcome = match store.commit(&changes) {
                        Ok(()) => Ok(changes),
                        Err(e) => Err((e, changes)),
                    };
                    let _ = reply.send(outcome);
                }
            })?;
        Ok(Writer {
            jobs,
            in_flight: None,
            unwritten: VecDeque::new(),
            unwritten_bytes: 0,
            failed: None,
            backoff_ms: FIRST_BACKOFF_MS,
            wait: None,
            last_start: None,
            max_messages,
            max_bytes,
        })
    }

    /// A delivery waits for the next write.
    pub(crate) fn hold(&mut self, event: Event) {
        if let Event::Message { message, .. } = &event {
            self.unwritten_bytes += message.payload.len();
        }
        self.unwritten.push_back(event);
    }

    /// How many deliveries wait.
    pub(crate) fn unwritten(&self) -> usize {
        self.unwritten.len() + self.in_flight.as_ref().map_or(0, |f| f.covers.len())
    }

    fn unwritten_bytes(&self) -> usize {
        self.unwritten_bytes + self.in_flight.as_ref().map_or(0, |f| f.bytes)
    }

    /// Whether the waiting deliveries are at their bound: read nothing more until written.
    pub(crate) fn full(&self) -> bool {
        self.unwritten() >= self.max_messages.max(1) || self.unwritten_bytes() >= self.max_bytes
    }

    /// Collects a finished transaction, or starts the next one when one is due.
    pub(crate) fn poll<P: Clone + Ord>(
        &mut self,
        engine: &mut Engine<P>,
        cx: &mut Context<'_>,
    ) -> Written {
        if let Some(flight) = &mut self.in_flight {
            let outcome = match flight.reply.poll_unpin(cx) {
                Poll::Pending => return Written::Nothing,
                Poll::Ready(Ok(outcome)) => outcome,
                // The thread is gone (it panicked in the store): as a failed write.
                Poll::Ready(Err(_)) => Err((
                    StoreError::Io {
                        path: Default::default(),
                        reason: "the store's thread ended".into(),
                    },
                    Changes::default(),
                )),
            };
            let flight = self.in_flight.take().expect("in flight");
            return match outcome {
                Ok(written) => {
                    engine.written(&written);
                    if self.backoff_ms != FIRST_BACKOFF_MS {
                        tracing::info!("gossip store written again");
                    }
                    self.backoff_ms = FIRST_BACKOFF_MS;
                    Written::Released(flight.covers)
                }
                Err((error, changes)) => {
                    tracing::error!(
                        %error,
                        unwritten = self.unwritten() + flight.covers.len(),
                        retry_ms = self.backoff_ms,
                        "gossip store write failed: deliveries wait until it succeeds"
                    );
                    // Back in front, in order; the changes go into the next write.
                    for event in flight.covers.into_iter().rev() {
                        self.unwritten.push_front(event);
                    }
                    self.unwritten_bytes += flight.bytes;
                    let mut failed = changes;
                    if let Some(newer) = self.failed.take() {
                        failed.merge(newer);
                    }
                    if failed.len() > engine.max_pending_changes() {
                        // Kept no longer than the engine's own marks would be: the next write
                        // is everything.
                        engine.rewrite_everything();
                    } else {
                        self.failed = Some(failed);
                    }
                    self.wait = Some(Delay::new(Duration::from_millis(self.backoff_ms)));
                    self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
                    Written::Failed(error)
                }
            };
        }
        if !engine.has_changes() && self.failed.is_none() {
            // Nothing to write for what waits: events held behind deliveries that a
            // transaction already covered (a delivery always marks its id).
            if self.unwritten.is_empty() {
                return Written::Nothing;
            }
            self.unwritten_bytes = 0;
            return Written::Released(std::mem::take(&mut self.unwritten));
        }
        if self.wait.is_none()
            && let Some(last) = self.last_start
        {
            let since = last.elapsed();
            let interval = Duration::from_millis(WRITE_INTERVAL_MS);
            if since < interval {
                self.wait = Some(Delay::new(interval - since));
            }
        }
        if let Some(wait) = &mut self.wait {
            if wait.poll_unpin(cx).is_pending() {
                return Written::Nothing;
            }
            self.wait = None;
        }
        let mut changes = self.failed.take().unwrap_or_default();
        changes.merge(engine.take_changes());
        let (reply, receiver) = oneshot::channel();
        if let Err(returned) = self.jobs.send((changes, reply)) {
            // The thread is gone: keep the changes; reported as the reply's failure above.
            self.failed = Some(returned.0.0);
        }
        self.last_start = Some(Instant::now());
        self.in_flight = Some(InFlight {
            reply: receiver,
            covers: std::mem::take(&mut self.unwritten),
            bytes: std::mem::take(&mut self.unwritten_bytes),
        });
        // Registers the reply's waker.
        self.poll(engine, cx)
    }
}
