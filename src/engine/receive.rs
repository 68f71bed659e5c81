//! The order of checks for a received envelope (DESIGN §3), cheapest first, and what
//! happens to a message once it is accepted: store, deliver, forward.

use super::{Engine, Millis, Output, Violation, millis};
use crate::envelope::{Envelope, MessageId};

impl<P: Clone + Ord> Engine<P> {
    /// The checks for one received envelope, cheapest first (DESIGN §3). Returns whether
    /// the envelope was one this node had asked `from` for.
    pub(super) fn receive(
        &mut self,
        from: &P,
        envelope: Envelope,
        now: Millis,
    ) -> Result<bool, Violation> {
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
        //    unverified, and remembered so it is not asked for again. It is not counted as a
        //    known id: that would let a relay censor an author's future message by sending a
        //    forged, out-of-window envelope with its id first.
        let timestamp = envelope.timestamp();
        let too_old = timestamp.saturating_add(millis(self.config.max_age)) < now;
        let too_new = timestamp > now.saturating_add(millis(self.config.max_clock_skew));
        if too_old || too_new || oversize {
            tracing::trace!(message = %id, timestamp, now, oversize, "dropped: outside the window");
            self.stats.out_of_window += 1;
            self.store.mark_dropped(id);
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
    pub(super) fn fulfil(&mut self, from: &P, id: &MessageId) -> bool {
        let mut asked_of_sender = false;
        for (peer, state) in &mut self.peers {
            let was = state.received(&id.author, id.sequence);
            asked_of_sender |= was && peer == from;
        }
        asked_of_sender
    }

    /// Stores a new verified message, delivers it (unless this node wrote it) and pushes it
    /// to the peers not known to have it.
    pub(super) fn accept(&mut self, envelope: Envelope, from: Option<&P>, now: Millis) {
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
}
