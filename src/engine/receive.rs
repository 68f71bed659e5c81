//! The order of checks for a received envelope, cheapest first (`docs/PROTOCOL.md` §3.1),
//! and what happens to a message once it is accepted: deliver, store, forward.
//!
//! The checks that need nothing but the config, the author filter and the time are one
//! function, [`check_before_signature`], which the connection handlers also call before they
//! verify signatures ahead (`verify.rs`), so both apply the same rule.

use super::authors::{Admission, Introducer};
use super::filter::Filter;
use super::ids::Ids;
use super::knowledge::worth_knowing;
use super::tree::{Control, Redundant, Route};
use super::{Engine, ImportError, Millis, Output, Violation};
use crate::config::Config;
use crate::envelope::{Envelope, MessageId};
use crate::frame::{Frame, FrameBudget, envelope_len};
use crate::keys::PublicKey;
use crate::verify::Verdict;

/// What became of a received envelope that broke no rule.
enum Received {
    /// Its signature was checked (or its verdict used): accepted, or a proven equivocation.
    /// The author if it was newly accepted and had been asked of the sender.
    Checked(Option<PublicKey>),
    /// Dropped before its signature step.
    Dropped,
}

/// Why an envelope is dropped before its signature is checked, by [`check_before_signature`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Its timestamp is more than `max_age` before `now`.
    TooOld,
    /// Its timestamp is more than `max_clock_skew` after `now`.
    TooNew,
    /// Its payload is over `max_payload_size`.
    Oversize,
    /// The author filter refuses its author.
    Filtered,
    /// The author table has no room for a new author now (only a table of this node's own
    /// key alone has none).
    NoRoomForAuthor,
    /// The id would give its author more than `max_ranges_per_author` ranges of known ids.
    TooFragmented,
}

/// The checks of an envelope received at `now` that need no state but the config and the
/// filter (`docs/PROTOCOL.md` §3.1: step 3, the time window and payload size, then the filter
/// of step 4; step 2, the known-id check, needs the node's tables and comes first in the
/// engine).
pub(crate) fn check_before_signature(
    config: &Config,
    filter: &Filter,
    envelope: &Envelope,
    now: Millis,
) -> Result<(), Skip> {
    let timestamp = envelope.timestamp();
    if timestamp.saturating_add(super::millis(config.max_age)) < now {
        return Err(Skip::TooOld);
    }
    if timestamp > now.saturating_add(super::millis(config.max_clock_skew)) {
        return Err(Skip::TooNew);
    }
    if envelope.payload().len() > config.max_payload_size {
        return Err(Skip::Oversize);
    }
    if !filter.permits(envelope.author()) {
        return Err(Skip::Filtered);
    }
    Ok(())
}

impl<P: Clone + Ord> Engine<P> {
    /// A frame from `peer`, with the handlers' signature verdicts where they checked.
    pub(super) fn on_frame(&mut self, peer: P, frame: Frame, verdicts: &[Verdict], now: Millis) {
        if !self.beliefs.contains(&peer) {
            return;
        }
        let Frame {
            messages,
            have,
            want,
            complete,
            prune,
            graft,
            graft_authors,
            prune_authors,
            have_tags,
            want_tags,
            reads_tags,
        } = frame;
        if reads_tags {
            self.tags.reads(&peer);
        }
        let control = Control {
            prune,
            graft,
            graft_authors: &graft_authors,
            prune_authors: &prune_authors,
        };
        self.tree.on_control(&peer, &control, now);
        // What this frame delivered of what was asked of the peer: its authors, and how much.
        let (mut progress, mut count, mut bytes) = (Vec::new(), 0, 0);
        for (i, envelope) in messages.into_iter().enumerate() {
            let (id, len) = (envelope.id(), envelope_len(&envelope));
            let verdict = verdicts.get(i).copied().unwrap_or(Verdict::Unchecked);
            let received = self.receive(&peer, envelope, verdict, now);
            if received.is_ok() {
                // Whatever the outcome short of a violation, the sender has the id (recorded
                // if its author is one the node keeps knowledge of, by then).
                self.peer_has(&peer, &id);
            }
            match received {
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
                    return;
                }
            }
        }
        if self.is_full_answer(count, bytes) {
            progress.sort();
            progress.dedup();
            self.ask_rest(&peer, &progress);
        }
        self.on_have(&peer, have, complete, now);
        self.on_have_tags(&peer, &have_tags, now);
        let want = self.with_tag_wants(want, &want_tags);
        self.on_want(&peer, want);
        self.top_up(&peer, now);
        if self.rounds.first_frame(&peer) {
            self.round_peer(&peer);
        }
        if complete {
            self.wants.digest_handled(&peer);
        }
        self.report_caught_up(&peer);
    }

    /// Reports `peer` caught up with, once, when its first frame was handled and nothing asked
    /// of it is outstanding (`wants.rs`).
    pub(super) fn report_caught_up(&mut self, peer: &P) {
        if self.wants.caught_up(peer) {
            self.outputs
                .push_back(Output::CaughtUp { peer: peer.clone() });
        }
    }

    /// Whether `count` asked envelopes in `bytes` fill an answer (see [`FrameBudget`]).
    pub(super) fn is_full_answer(&self, count: usize, bytes: usize) -> bool {
        let largest = self.config.max_payload_size + crate::config::ENVELOPE_OVERHEAD;
        FrameBudget::is_full_answer(&self.config.frame_limits(), largest, count, bytes)
    }

    /// One received envelope: the checks, cheapest first, then what an accepted one does.
    /// Returns its author if it was newly accepted and had been asked of `from` (progress on
    /// a want).
    fn receive(
        &mut self,
        from: &P,
        envelope: Envelope,
        verdict: Verdict,
        now: Millis,
    ) -> Result<Option<PublicKey>, Violation> {
        let id = envelope.id();
        // 0. A signature a handler found invalid is a violation, whatever the checks below
        //    would have dropped the envelope for (the handler verified nothing after it).
        if verdict == Verdict::Invalid {
            return Err(Violation::InvalidSignature { id });
        }
        let received = self.check_and_accept(from, envelope, verdict, now);
        if verdict == Verdict::Valid && matches!(received, Ok(Received::Dropped)) {
            // A handler verified what the engine then dropped before its signature step:
            // counted, and charged to the peer by the driver (`verify.rs`).
            self.stats.verified_discarded += 1;
        }
        received.map(|r| match r {
            Received::Checked(answered) => answered,
            Received::Dropped => None,
        })
    }

    /// [`Engine::receive`]'s checks, cheapest first, then what an accepted message does.
    fn check_and_accept(
        &mut self,
        from: &P,
        envelope: Envelope,
        verdict: Verdict,
        now: Millis,
    ) -> Result<Received, Violation> {
        let id = envelope.id();
        // 2. A known id is dropped unverified, unless it proves an equivocation not yet
        //    proven. (1, sizes: field lengths were checked when the frame was decoded, the
        //    payload limit comes with the window.)
        if self.authors.knows(&id.author, id.sequence) || self.validations.contains(&id) {
            self.stats.duplicates += 1;
            if self.wants.is_probed(from, &id) {
                // The genuine envelope answers the probe (`wants.rs`); compared only then.
                let held = self.store.get(&id).or_else(|| self.validations.get(&id));
                if held.is_some_and(|held| held.same_signed_content(&envelope)) {
                    self.wants.probe_answered(from, &id);
                }
            }
            let answered_tag = self.tag_resolved(&id, Some(from), None);
            let answered = self.wants.received(&id.author, id.sequence).as_ref() == Some(from)
                || self.wants.was_tried(from, &id.author, id.sequence)
                || answered_tag;
            let (redundant, slower) = self.tree.on_duplicate(from, &id, answered, now);
            if let Some(other) = slower {
                self.batcher.end_author(&other, &id.author);
            }
            match redundant {
                Redundant::Nothing => {}
                Redundant::Author => self.batcher.end_author(from, &id.author),
                Redundant::Link => self.send_prune(from, None),
                // The author, too: the peer may be pushing it by an author link.
                Redundant::LinkAndAuthor => self.send_prune(from, Some(&id.author)),
            }
            return self
                .duplicate(from, envelope, verdict)
                .map(|checked| match checked {
                    true => Received::Checked(None),
                    false => Received::Dropped,
                });
        }
        // 3. The time window and the payload limit: not a violation, dropped quietly and
        //    unverified. It is not a known id (a relay could censor an author's next message
        //    with a forged copy), only an id not to ask of this peer again.
        // 4. The author filter; room for the author, and for the id (`check_admission`).
        let introducer = Introducer::Peer(from.clone());
        let checked = self.check_admission(&envelope, &introducer, now);
        let timestamp = envelope.timestamp();
        let outside = matches!(checked, Err(Skip::TooOld | Skip::TooNew));
        let connected = self.beliefs.len();
        if let Some(estimated_offset_ms) =
            self.skew
                .sample(from, timestamp, self.wall(now), outside, connected)
        {
            self.outputs.push_back(Output::ClockSkew {
                estimated_offset_ms,
            });
        }
        if let Err(skip) = checked {
            match skip {
                Skip::TooOld | Skip::TooNew | Skip::Oversize => {
                    self.stats.out_of_window += 1;
                    self.stats.too_old += u64::from(skip == Skip::TooOld);
                    self.stats.too_new += u64::from(skip == Skip::TooNew);
                    self.refused(from, &id);
                }
                Skip::Filtered => {
                    self.stats.filtered += 1;
                    self.tags.refused(&id);
                }
                Skip::NoRoomForAuthor => self.stats.authors_full += 1,
                Skip::TooFragmented => self.stats.too_fragmented += 1,
            }
            if matches!(skip, Skip::NoRoomForAuthor | Skip::TooFragmented) {
                tracing::debug!(message = %id, ?skip, "dropped unverified, for now");
            } else {
                tracing::trace!(message = %id, timestamp, now, ?skip, "dropped unverified");
            }
            return Ok(Received::Dropped);
        }
        // 5. The strict signature (checked ahead by the handlers, on other cores, if they did).
        if !self.signature_valid(&envelope, verdict) {
            return Err(Violation::InvalidSignature { id });
        }
        // 6. Track the author, then deliver, and store and forward (7: after the
        //    application's verdict, with `validate_messages`; `validation.rs`).
        self.wants.probe_answered(from, &id);
        self.admit(&id.author, &introducer, now);
        // Known from now on (with validation too): its pending tag ends (`tags.rs`).
        let answered_tag = self.tag_resolved(&id, Some(from), Some(now));
        // Whether the node held the author's messages before this one (the store takes it
        // below): asked only for a repair by tag.
        let held_before = answered_tag && self.store.held(&id.author).is_some();
        self.deliver(&envelope, from);
        let asked_of = if self.config.validate_messages && id.author != self.me {
            let asked_of = self.wants.received(&id.author, id.sequence);
            self.authors.hold(&id.author, id.sequence, timestamp);
            self.validations.hold(envelope, from.clone(), now);
            asked_of
        } else {
            // Useful (`record.rs`), its link proven (`tree.rs`); with validation, only once the
            // application accepts it.
            self.useful(from, now);
            self.tree.proved(from, now);
            self.store_and_forward(envelope, Some(from), now)
        };
        let answered = asked_of.as_ref() == Some(from) || answered_tag;
        if held_before {
            // A repair by tag: the answerer is asked for the author's new messages whatever
            // the link's role, as a graft for an announced id asks (`graft_due`; not for a
            // new author, nor of a peer that failed).
            if self.records.standing(from) != super::record::Standing::Failed
                && self.batcher.graft(from, Some(&id.author))
            {
                self.tree.ask_author(from, &id);
            }
        }
        // A grafted id that comes in answer to a want was withheld by the eager links of the
        // graft (with validation: when it comes, not at the verdict).
        self.tree.arrived(&id, from, answered, now);
        if !answered && !self.wants.was_tried(from, &id.author, id.sequence) {
            // Pushed unasked: the link that delivers first is eager (an answer to a want
            // leaves the link as it is; a graft said so explicitly).
            self.tree.on_first_copy(from, &id, now);
        }
        Ok(Received::Checked(answered.then_some(id.author)))
    }

    /// Whether `envelope`'s signature is valid: the handler's verdict, or verified here
    /// (counted apart: verification on the swarm task).
    fn signature_valid(&mut self, envelope: &Envelope, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Valid => {
                self.stats.verified += 1;
                true
            }
            Verdict::Cached => true,
            Verdict::Invalid => false,
            Verdict::Unchecked => {
                self.stats.verified += 1;
                self.stats.verified_by_engine += 1;
                envelope.verify().is_ok()
            }
        }
    }

    /// A new message from `from` goes to the application, unless this node wrote it (in an
    /// earlier run).
    fn deliver(&mut self, envelope: &Envelope, from: &P) {
        if *envelope.author() == self.me {
            return;
        }
        self.stats.delivered += 1;
        self.outputs.push_back(Output::Deliver {
            message: envelope.to_message(),
            from: from.clone(),
        });
    }

    /// A copy of a known id. If it differs from the held copy and this id's equivocation is
    /// not yet proven, its signature decides: valid, an equivocation (reported once); invalid,
    /// a violation. Returns whether its signature was looked at.
    fn duplicate(
        &mut self,
        from: &P,
        envelope: Envelope,
        verdict: Verdict,
    ) -> Result<bool, Violation> {
        let id = envelope.id();
        let Some(held) = self.store.get(&id) else {
            return Ok(false);
        };
        if held.same_signed_content(&envelope) || self.authors.equivocated(&id.author, id.sequence)
        {
            return Ok(false);
        }
        let held = held.clone();
        if !self.signature_valid(&envelope, verdict) {
            return Err(Violation::InvalidSignature { id });
        }
        self.stats.equivocations += 1;
        self.authors.record_equivocation(&id.author, id.sequence);
        self.outputs.push_back(Output::Equivocation {
            first: held,
            second: envelope,
            from: from.clone(),
        });
        Ok(true)
    }

    /// `from` sent `id` unverified and dropped: it is not asked of `from` again. If it was
    /// asked of `from`, it stays asked until its deadline, then goes to other peers.
    fn refused(&mut self, from: &P, id: &MessageId) {
        if worth_knowing(&self.filter, &self.authors, &self.wants, &id.author) {
            self.beliefs.refuse_one(from, &id.author, id.sequence);
        }
    }

    /// `id` became known (`index_at`: accepted, or held for a verdict, then, so it is
    /// indexed; `None`: it arrived again): its pending tag ends and its announcers are known
    /// to have it (`tags.rs`). Returns whether it had been asked of `from` by tag.
    fn tag_resolved(&mut self, id: &MessageId, from: Option<&P>, index_at: Option<Millis>) -> bool {
        let resolved = match index_at {
            Some(now) => self.tags.accepted(id, now),
            None => self.tags.known(id),
        };
        let Some(resolved) = resolved else {
            return false;
        };
        for peer in &resolved.announcers {
            self.peer_has(peer, id);
        }
        from.is_some_and(|f| resolved.asked.contains(f))
    }

    /// Records that `peer` has `id`, if its author is one this node tracks or is pulling
    /// (nothing is kept for other authors).
    pub(super) fn peer_has(&mut self, peer: &P, id: &MessageId) {
        if worth_knowing(&self.filter, &self.authors, &self.wants, &id.author) {
            self.beliefs.learn_one(peer, &id.author, id.sequence);
        }
    }

    /// An author no longer tracked: its messages and everything each component keeps of it
    /// go.
    pub(super) fn forget_author(&mut self, author: &PublicKey) {
        self.store.remove_author(author);
        // Held messages of the author get no verdict: their ids are known from now on (a
        // forgotten author's tombstone covers them already).
        self.authors.settle_held(author);
        self.validations.remove_author(author);
        self.beliefs.forget_author(author);
        self.wants.forget_author(author);
        self.rounds.forget_author(author);
        self.tree.forget_author(author);
    }

    /// Stores a new verified message (its author tracked) and pushes it to the peers not
    /// known to have it over eager links, announcing it to the others. Returns the peer it
    /// had been asked of, if any.
    pub(super) fn store_and_forward(
        &mut self,
        envelope: Envelope,
        from: Option<&P>,
        now: Millis,
    ) -> Option<P> {
        let id = envelope.id();
        self.authors
            .accepted(&id.author, id.sequence, envelope.timestamp());
        let mut asked_of = self.wants.received(&id.author, id.sequence);
        if self.tag_resolved(&id, from, Some(now)) && asked_of.is_none() {
            asked_of = from.cloned();
        }
        // Our own message from an earlier run: never reuse its sequence.
        if id.author == self.me && self.next_sequence.is_some_and(|n| n <= id.sequence) {
            self.next_sequence = id.sequence.checked_add(1);
        }
        let group = self.authors.introducer(&id.author);
        self.store.insert(envelope.clone(), &group);
        let limits = self.beliefs.limits();
        let (mut lazy, mut demoted) = (Vec::new(), Vec::new());
        let (records, congestion) = (&self.records, &self.congestion);
        let validations = &self.validations;
        // The deliverer, and a peer whose message awaits the application's verdict, may be
        // proving their links right now.
        let exempt = |p: &P| from == Some(p) || validations.holds_from(p);
        let congested = |p: &P| congestion.is_congested(p);
        for peer in self
            .tree
            .trim(now, &id.author, exempt, congested, |p| records.standing(p))
        {
            self.send_prune(&peer, None);
        }
        for (peer, state) in self.beliefs.iter_mut() {
            if from == Some(peer) || state.has.knows(&id.author, id.sequence) {
                continue;
            }
            // A congested peer is only announced to; the tree is not asked (a push that is
            // not sent counts for nothing there).
            if self.congestion.is_congested(peer) {
                lazy.push(peer.clone());
                continue;
            }
            match self.tree.route(peer, &id.author, now) {
                Route::Push => {
                    state.has.learn_one(&id.author, id.sequence, limits);
                    self.batcher.message(peer, envelope.clone());
                }
                Route::Demote => {
                    demoted.push(peer.clone());
                    lazy.push(peer.clone());
                }
                Route::Announce => lazy.push(peer.clone()),
            }
        }
        for peer in demoted {
            self.send_prune(&peer, None);
        }
        for peer in lazy {
            self.rounds
                .queue(&peer, &id.author, Ids::One(id.sequence), &self.store);
            self.tree.announce_later(&peer, now);
        }
        asked_of
    }

    /// Takes in an envelope the application got elsewhere (a backup, another transport):
    /// checked exactly as one from a peer (`docs/PROTOCOL.md` §3.1), then stored and gossiped
    /// as if it had arrived. It is not delivered (the application has it) nor held for
    /// validation (the application vouches for it). Its author, if new, is introduced by the
    /// application: all imports are one group in the fair shares of the author table and the
    /// store, like one peer's.
    /// Returns its id.
    pub fn import(&mut self, envelope: Envelope, now: Millis) -> Result<MessageId, ImportError> {
        self.rounds.seen(now);
        let id = envelope.id();
        if self.authors.knows(&id.author, id.sequence) || self.validations.contains(&id) {
            return Err(ImportError::AlreadyKnown);
        }
        let introducer = Introducer::Imported;
        self.check_admission(&envelope, &introducer, now)
            .map_err(|skip| match skip {
                Skip::TooOld | Skip::TooNew => ImportError::OutsideWindow {
                    timestamp: envelope.timestamp(),
                    now: self.wall(now),
                },
                Skip::Oversize => ImportError::PayloadTooLarge {
                    size: envelope.payload().len(),
                    max: self.config.max_payload_size,
                },
                Skip::Filtered => ImportError::Filtered,
                Skip::NoRoomForAuthor => ImportError::NoRoomForAuthor,
                Skip::TooFragmented => ImportError::TooFragmented,
            })?;
        self.stats.verified += 1;
        envelope
            .verify()
            .map_err(|_| ImportError::InvalidSignature)?;
        self.admit(&id.author, &introducer, now);
        self.store_and_forward(envelope, None, now);
        self.end_of_input();
        Ok(id)
    }

    /// The checks between the known-id check and the signature (`docs/PROTOCOL.md` §3.1 steps
    /// 3 and 4): [`check_before_signature`], then room for the author (if new, introduced by
    /// `introducer`) and for the id.
    fn check_admission(
        &mut self,
        envelope: &Envelope,
        introducer: &Introducer<P>,
        now: Millis,
    ) -> Result<(), Skip> {
        let wall = self.wall(now);
        self.authors.sweep(wall);
        check_before_signature(&self.config, &self.filter.read(), envelope, wall)?;
        let id = envelope.id();
        if !self.authors.can_admit(&id.author, introducer, wall) {
            return Err(Skip::NoRoomForAuthor);
        }
        if self.authors.would_fragment(&id.author, id.sequence) {
            return Err(Skip::TooFragmented);
        }
        Ok(())
    }

    /// Tracks `author` (introduced by `introducer`, if new); an author displaced to make room
    /// is forgotten.
    fn admit(&mut self, author: &PublicKey, introducer: &Introducer<P>, now: Millis) {
        let wall = self.wall(now);
        if let Ok(Admission::Displaced(displaced)) = self.authors.admit(author, introducer, wall) {
            self.stats.authors_displaced += 1;
            self.forget_author(&displaced);
        }
    }
}
