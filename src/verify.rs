//! Signature verification on every core: each connection's handler (its own task) checks
//! the signatures of a frame's envelopes before the frame reaches the swarm task, and the
//! engine takes those verdicts instead of verifying again.
//!
//! Which envelopes a handler verifies ahead: exactly those that would reach the engine's
//! signature check (`docs/PROTOCOL.md` §3.1 step 5), as far as the handler can tell. The
//! engine's own checks are the authority; these [`AheadChecks`] are hints shared with every
//! handler:
//! - not among the ids the node accepted recently (the last [`RECENT_IDS`]), so a duplicate
//!   is not verified in the normal case (a copy arriving on two connections at once may be);
//! - the engine's own checks that need no state beyond the config, the node's one author
//!   filter and the node's one clock ([`check_before_signature`]: the time window, the
//!   payload limit, the filter).
//!
//! The verdicts travel with their frame as a [`VerifiedFrame`], which only this module can
//! build, so no caller of the engine can hand it verdicts that were never computed.
//!
//! A wrong hint costs one verification or leaves it to the engine; acceptance is unchanged.
//! The verdict is `verify_strict`'s, as the engine's would be. A frame is verified no
//! further than its first invalid signature (a violation), and nothing is verified on a
//! connection the node does not gossip on. What a peer can make a handler verify is bounded
//! by its inbound envelope budget, as the engine's own verifications are.

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{Millis, SharedFilter, check_before_signature};
use crate::envelope::{Envelope, MessageId};
use crate::frame::Frame;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// How many recently accepted ids the handlers know of (40 bytes each, twice).
pub(crate) const RECENT_IDS: usize = 65_536;

/// A frame from a peer with the verdicts of this crate's handlers on its envelopes'
/// signatures (`Some(valid)` where they checked, by `verify_strict`, in the order of
/// `messages`; the engine verifies the others if they get that far). Only the handlers can
/// build one.
#[derive(Debug)]
pub struct VerifiedFrame {
    frame: Frame,
    verdicts: Vec<Option<bool>>,
}

impl VerifiedFrame {
    /// The frame and its verdicts.
    pub(crate) fn into_parts(self) -> (Frame, Vec<Option<bool>>) {
        (self.frame, self.verdicts)
    }

    /// The frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

#[derive(Debug)]
struct Recent {
    ids: HashSet<MessageId>,
    order: VecDeque<MessageId>,
}

/// What the handlers need to know to verify ahead, shared with the behaviour.
#[derive(Clone, Debug)]
pub(crate) struct AheadChecks {
    recent: Arc<Mutex<Recent>>,
    filter: SharedFilter,
    clock: Clock,
    config: Arc<Config>,
}

impl AheadChecks {
    /// Checks with the engine's `filter`, on the node's `clock`.
    pub(crate) fn new(config: &Config, filter: SharedFilter, clock: Clock) -> Self {
        AheadChecks {
            recent: Arc::new(Mutex::new(Recent {
                ids: HashSet::new(),
                order: VecDeque::new(),
            })),
            filter,
            clock,
            config: Arc::new(config.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node accepted (or holds for validation) `id`.
    pub(crate) fn known(&self, id: MessageId) {
        let mut recent = self.lock();
        if recent.ids.insert(id) {
            recent.order.push_back(id);
            if recent.order.len() > RECENT_IDS
                && let Some(old) = recent.order.pop_front()
            {
                recent.ids.remove(&old);
            }
        }
    }

    /// Verifies, with `verify_strict`, the envelopes of `frame` that would reach the engine's
    /// signature check, now.
    pub(crate) fn verify(&self, frame: Frame) -> VerifiedFrame {
        let verdicts = self.verdicts(&frame.messages, self.clock.now());
        VerifiedFrame { frame, verdicts }
    }

    fn verdicts(&self, envelopes: &[Envelope], now: Millis) -> Vec<Option<bool>> {
        let ahead: Vec<bool> = {
            let recent = self.lock();
            let filter = self.filter.read();
            envelopes
                .iter()
                .map(|e| {
                    !recent.ids.contains(&e.id())
                        && check_before_signature(&self.config, &filter, e, now).is_ok()
                })
                .collect()
        };
        // The engine stops a frame at its first invalid signature; so does this.
        let mut failed = false;
        envelopes
            .iter()
            .zip(ahead)
            .map(|(e, ahead)| {
                if !ahead || failed {
                    return None;
                }
                let valid = e.verify().is_ok();
                failed = !valid;
                Some(valid)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn only_envelopes_that_would_reach_the_signature_check_are_verified_ahead() {
        let me = Keypair::generate();
        let filter = SharedFilter::new(me.public(), Default::default());
        let checks = AheadChecks::new(&Config::default(), filter.clone(), Clock::new());
        let now = 1_750_000_000_000;
        let keys = Keypair::generate();
        let fresh = Envelope::sign(&keys, 1, now, b"a".to_vec()).unwrap();
        let known = Envelope::sign(&keys, 2, now, b"b".to_vec()).unwrap();
        let old = Envelope::sign(&keys, 3, 0, b"c".to_vec()).unwrap();
        let blocked_keys = Keypair::generate();
        let blocked = Envelope::sign(&blocked_keys, 1, now, b"d".to_vec()).unwrap();
        checks.known(known.id());
        filter.block(blocked_keys.public());
        let verdicts = checks.verdicts(&[fresh, known, old, blocked], now);
        assert_eq!(verdicts, vec![Some(true), None, None, None]);
    }
}
