//! The order of checks for a received envelope, cheapest first (`docs/PROTOCOL.md` §3.1),
//! and what happens to a message once it is accepted: store, deliver, forward.

use super::authors::Admission;
use super::knowledge::worth_knowing;
use super::{Engine, Millis, Output, Violation};
use crate::envelope::{Envelope, MessageId};
use crate::keys::PublicKey;

impl<P: Clone + Ord> Engine<P> {
    /// The checks for one received envelope, cheapest first. Returns its author if the
    /// envelope was newly accepted and had been asked of `from` (progress on a want).
    pub(super) fn receive(
        &mut self,
        from: &P,
        envelope: Envelope,
        verdict: Option<bool>,
        now: Millis,
    ) -> Result<Option<PublicKey>, Violation> {
        let id = envelope.id();
        self.peer_has(from, &id);
        // 1. Sizes (field lengths were checked when the frame was decoded).
        let oversize = envelope.payload().len() > self.config.max_payload_size;
        // 2. A known id is dropped unverified, unless it proves an equivocation not yet
        //    proven.
        if self.authors.knows(&id.author, id.sequence) || self.pending.contains(&id) {
            self.stats.duplicates += 1;
            // A duplicate that answers this node's own want is no sign of a redundant path.
            if self.wants.received(&id.author, id.sequence).as_ref() != Some(from) {
                self.tree_duplicate_from(from, now);
            }
            return self.duplicate(from, envelope).map(|()| None);
        }
        // 3. The time window (and the payload limit): not a violation, dropped quietly and
        //    unverified. It is not a known id (a relay could censor an author's next message
        //    with a forged copy), only an id not to ask of this peer again.
        let timestamp = envelope.timestamp();
        if !self.config.in_window(timestamp, now) || oversize {
            tracing::trace!(message = %id, timestamp, now, oversize, "dropped: outside the window");
            self.stats.out_of_window += 1;
            self.refused(from, &id);
            return Ok(None);
        }
        // 4. The author filter; room for the author (only a table of this node's own key
        //    alone has none), and
        //    for the id: one that would give its author more than `max_ranges_per_author`
        //    ranges of known ids waits until the gaps around it fill (so a relay cannot
        //    make the node treat an author's unseen ids as known by sending the others out
        //    of order).
        if !self.filter.permits(&id.author) {
            tracing::trace!(message = %id, "dropped: author filtered");
            self.stats.filtered += 1;
            return Ok(None);
        }
        let introducer = Some(from.clone());
        if !self.authors.can_admit(&id.author, &introducer, now) {
            tracing::debug!(message = %id, "dropped: no room to track a new author");
            self.stats.authors_full += 1;
            return Ok(None);
        }
        if self.authors.would_fragment(&id.author, id.sequence) {
            tracing::debug!(message = %id, "dropped for now: too far from the author's known ids");
            self.stats.too_fragmented += 1;
            return Ok(None);
        }
        // 5. The strict signature (checked ahead by the driver, on another core, if it says).
        self.stats.verified += 1;
        let valid = verdict.unwrap_or_else(|| envelope.verify().is_ok());
        if !valid {
            return Err(Violation::InvalidSignature { id });
        }
        // 6. Track the author, then store, deliver, forward.
        if let Ok(Admission::Displaced(author)) = self.authors.admit(&id.author, &introducer, now) {
            self.stats.authors_displaced += 1;
            self.forget_author(&author);
        }
        let author = id.author;
        let asked_of = if self.config.validate_messages {
            // 7. Held for the application's verdict (`validation.rs`).
            let asked_of = self.wants.received(&id.author, id.sequence);
            self.stats.delivered += 1;
            self.outputs.push_back(Output::Deliver {
                message: envelope.to_message(),
                from: from.clone(),
            });
            self.pending.hold(envelope, from.clone(), now);
            asked_of
        } else {
            self.accept(envelope, Some(from), now, true)
        };
        let answered = asked_of.as_ref() == Some(from);
        if !answered {
            // Pushed unasked: the link that delivers first is eager (an answer to a want
            // leaves the link as it is; a graft said so explicitly).
            self.tree_delivered_by(from);
        }
        Ok(answered.then_some(author))
    }

    /// A copy of a known id. If it differs from the held copy and this id's equivocation is
    /// not yet proven, its signature decides: valid, an equivocation (reported once); invalid,
    /// a violation.
    fn duplicate(&mut self, from: &P, envelope: Envelope) -> Result<(), Violation> {
        let id = envelope.id();
        let Some(held) = self.store.get(&id) else {
            return Ok(());
        };
        if held.same_signed_content(&envelope) || self.authors.equivocated(&id.author, id.sequence)
        {
            return Ok(());
        }
        self.stats.verified += 1;
        envelope
            .verify()
            .map_err(|_| Violation::InvalidSignature { id })?;
        self.stats.equivocations += 1;
        self.authors.record_equivocation(&id.author, id.sequence);
        self.outputs.push_back(Output::Equivocation {
            first: held.clone(),
            second: envelope,
            from: from.clone(),
        });
        Ok(())
    }

    /// `from` sent `id` unverified and dropped: it is not asked of `from` again. If it was
    /// asked of `from`, it stays asked until its deadline, then goes to other peers.
    fn refused(&mut self, from: &P, id: &MessageId) {
        if !worth_knowing(&self.filter, &self.authors, &self.wants, &id.author) {
            return;
        }
        let limits = self.knowledge_limits();
        if let Some(state) = self.peers.get_mut(from) {
            state.refused.learn_one(&id.author, id.sequence, limits);
        }
    }

    /// Records that `peer` has `id`, if its author is one this node tracks or is pulling
    /// (nothing is kept for other authors).
    fn peer_has(&mut self, peer: &P, id: &MessageId) {
        if !worth_knowing(&self.filter, &self.authors, &self.wants, &id.author) {
            return;
        }
        let limits = self.knowledge_limits();
        if let Some(state) = self.peers.get_mut(peer) {
            state.has.learn_one(&id.author, id.sequence, limits);
        }
    }

    /// An author no longer tracked: its messages and every peer's knowledge of it go.
    pub(super) fn forget_author(&mut self, author: &PublicKey) {
        self.store.remove_author(author);
        for state in self.peers.values_mut() {
            state.forget_author(author);
        }
    }

    /// Stores a new verified message (its author tracked), delivers it (if `deliver`, and
    /// unless this node wrote it) and pushes it to the peers not known to have it. Returns
    /// the peer it had been asked of, if any.
    pub(super) fn accept(
        &mut self,
        envelope: Envelope,
        from: Option<&P>,
        now: Millis,
        deliver: bool,
    ) -> Option<P> {
        let id = envelope.id();
        self.authors
            .accepted(&id.author, id.sequence, envelope.timestamp(), now);
        let asked_of = self.wants.received(&id.author, id.sequence);
        if id.author == self.me {
            // Our own message from an earlier run: never reuse its sequence.
            if self.next_sequence.is_some_and(|n| n <= id.sequence) {
                self.next_sequence = id.sequence.checked_add(1);
            }
        } else if let Some(from) = from
            && deliver
        {
            self.stats.delivered += 1;
            self.outputs.push_back(Output::Deliver {
                message: envelope.to_message(),
                from: from.clone(),
            });
        }
        if let Some(from) = from {
            self.peer_has(from, &id);
        }
        let group = self.authors.introducer(&id.author);
        self.store.insert(envelope.clone(), &group);
        let limits = self.knowledge_limits();
        let eager_push = self.config.eager_push;
        let mut lazy = Vec::new();
        for (peer, state) in &mut self.peers {
            if from == Some(peer) || state.has.knows(&id.author, id.sequence) {
                continue;
            }
            if eager_push && state.eager && !state.congested {
                state.has.learn_one(&id.author, id.sequence, limits);
                self.outbox.message(peer, envelope.clone());
            } else {
                lazy.push(peer.clone());
            }
        }
        for peer in lazy {
            self.announce_new(&peer, &id.author, id.sequence, now);
        }
        asked_of
    }
}
