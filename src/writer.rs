//! The behaviour's side of a durable store: writes the engine's changes, then lets the
//! deliveries they cover go.
//!
//! True here:
//! - an [`Event::Message`] leaves only after a transaction that includes its id committed:
//!   deliveries wait in [`Writer`] until the write that follows them succeeds;
//! - one transaction per poll at most while writes succeed (everything the engine changed
//!   since the last one), never one per message;
//! - a failed write is reported ([`Event::StoreFailed`]) and tried again after a backoff
//!   (100 ms, doubling to 10 s), with its changes merged into the next; the deliveries wait
//!   meanwhile. While they hold more than `max_stored_messages` messages or
//!   `max_stored_bytes` of payload, the behaviour stops reading from peers
//!   ([`Writer::full`]), so a disk that keeps failing costs at most that much memory.

use crate::behaviour::Event;
use crate::engine::{Changes, Engine, Millis};
use crate::store::{Store, StoreError};
use futures::FutureExt as _;
use futures_timer::Delay;
use std::collections::VecDeque;
use std::task::Context;
use std::time::Duration;

const FIRST_BACKOFF_MS: u64 = 100;
const MAX_BACKOFF_MS: u64 = 10_000;

/// What [`Writer::poll`] did.
pub(crate) enum Written {
    /// Nothing to do now.
    Nothing,
    /// A transaction committed: these deliveries may go.
    Released(VecDeque<Event>),
    /// A transaction failed; it is tried again later.
    Failed(StoreError),
}

pub(crate) struct Writer {
    store: Box<dyn Store>,
    /// Deliveries waiting for the next successful write, with their payload bytes.
    unwritten: VecDeque<Event>,
    unwritten_bytes: usize,
    /// Changes of a failed write, merged into the next.
    failed: Option<Changes>,
    backoff_ms: u64,
    retry: Option<Delay>,
    max_messages: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("unwritten", &self.unwritten.len())
            .field("failing", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(store: Box<dyn Store>, max_messages: usize, max_bytes: usize) -> Self {
        Writer {
            store,
            unwritten: VecDeque::new(),
            unwritten_bytes: 0,
            failed: None,
            backoff_ms: FIRST_BACKOFF_MS,
            retry: None,
            max_messages,
            max_bytes,
        }
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
        self.unwritten.len()
    }

    /// Whether the waiting deliveries are at their bound: read nothing more until written.
    pub(crate) fn full(&self) -> bool {
        self.unwritten.len() >= self.max_messages.max(1) || self.unwritten_bytes >= self.max_bytes
    }

    /// Writes what the engine changed, if anything (or retries a failed write once its
    /// backoff is over).
    pub(crate) fn poll<P: Clone + Ord>(
        &mut self,
        engine: &mut Engine<P>,
        cx: &mut Context<'_>,
        now: Millis,
    ) -> Written {
        if !engine.has_changes() && self.failed.is_none() {
            if self.unwritten.is_empty() {
                return Written::Nothing;
            }
            return self.release();
        }
        if let Some(delay) = &mut self.retry {
            if delay.poll_unpin(cx).is_pending() {
                return Written::Nothing;
            }
            self.retry = None;
        }
        let mut changes = self.failed.take().unwrap_or_default();
        changes.merge(engine.take_changes());
        match self.store.commit(&changes) {
            Ok(()) => {
                if self.backoff_ms != FIRST_BACKOFF_MS {
                    tracing::info!(at = now, "gossip store written again");
                }
                self.backoff_ms = FIRST_BACKOFF_MS;
                self.release()
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    unwritten = self.unwritten.len(),
                    retry_ms = self.backoff_ms,
                    "gossip store write failed: deliveries wait until it succeeds"
                );
                self.failed = Some(changes);
                self.retry = Some(Delay::new(Duration::from_millis(self.backoff_ms)));
                self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
                // Registered with `cx`, so the retry wakes the task.
                if let Some(delay) = &mut self.retry {
                    let _ = delay.poll_unpin(cx);
                }
                Written::Failed(error)
            }
        }
    }

    fn release(&mut self) -> Written {
        self.unwritten_bytes = 0;
        Written::Released(std::mem::take(&mut self.unwritten))
    }
}
