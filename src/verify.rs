//! Signature verification on every core: each connection's handler (its own task) checks
//! the signatures of a frame's envelopes before the frame reaches the swarm task, and the
//! engine takes those verdicts instead of verifying again.
//!
//! Which envelopes a handler verifies ahead: those that would reach the engine's signature
//! check (`docs/PROTOCOL.md` §3.1 step 5), as far as the handler can tell. The engine's own
//! checks are the authority; these [`AheadChecks`] are hints shared with every handler:
//! - not among the ids the node accepted recently (the last [`RECENT_IDS`]), so a duplicate
//!   is not verified in the normal case (a copy arriving on two connections at once may be);
//! - the engine's own checks that need no state beyond the config, the node's one author
//!   filter and the node's one clock ([`check_before_signature`]: the time window, the
//!   payload limit, the filter);
//! - not verified already: the last [`RECENT_IDS`] envelopes a handler found valid are
//!   remembered by id and a keyed hash of what was signed, so the same envelope again, on
//!   any connection, is passed on as valid without a second verification (a replayed frame,
//!   or one the engine dropped for state the handlers cannot see, costs one verification
//!   per envelope, not one per copy).
//!
//! The verdicts travel with their frame as a [`VerifiedFrame`], which only this module can
//! build, so no caller of the engine can hand it verdicts that were never computed.
//!
//! A wrong hint costs one verification or leaves it to the engine; acceptance is unchanged.
//! The verdict is `verify_strict`'s, as the engine's would be. A frame is verified no
//! further than its first invalid signature, and the engine treats that envelope as a
//! violation wherever it is (whatever it would have dropped it for), so the rest of the
//! frame never reaches the engine's own verification. Nothing is verified on a connection
//! the node does not gossip on. What a peer can make a handler verify is bounded by its
//! inbound envelope budget; a verification the engine then discards (it dropped the envelope
//! before its signature step) is counted (`Stats::verified_discarded`) and charged to the
//! peer's budget once more (`HandlerIn::Charge`).

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{Millis, SharedFilter, check_before_signature};
use crate::envelope::{Envelope, MessageId};
use crate::frame::Frame;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// How many recently accepted ids the handlers know of (40 bytes each, twice).
pub(crate) const RECENT_IDS: usize = 65_536;

/// A handler's verdict on one envelope's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not checked ahead: the engine verifies it if it gets that far.
    Unchecked,
    /// Valid by `verify_strict`, checked for this frame.
    Valid,
    /// Valid: the same signed envelope was verified before (by any handler).
    Cached,
    /// Invalid by `verify_strict`.
    Invalid,
}

/// A frame from a peer with the verdicts of this crate's handlers on its envelopes'
/// signatures (in the order of `messages`). Only the handlers can build one.
#[derive(Debug)]
pub struct VerifiedFrame {
    frame: Frame,
    verdicts: Vec<Verdict>,
}

impl VerifiedFrame {
    /// A frame with verdicts the simulator found (`sim.rs`).
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn simulated(frame: Frame, verdicts: Vec<Verdict>) -> Self {
        VerifiedFrame { frame, verdicts }
    }

    /// The frame and its verdicts.
    pub(crate) fn into_parts(self) -> (Frame, Vec<Verdict>) {
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
    /// Envelopes found valid: id and keyed hash of its signed content and signature.
    verified: HashMap<MessageId, u64>,
    verified_order: VecDeque<MessageId>,
}

/// What the handlers need to know to verify ahead, shared with the behaviour.
#[derive(Clone, Debug)]
pub(crate) struct AheadChecks {
    recent: Arc<Mutex<Recent>>,
    filter: SharedFilter,
    clock: Clock,
    config: Arc<Config>,
    /// A per-node random key: no peer can make two envelopes hash alike on purpose.
    hasher: RandomState,
}

impl AheadChecks {
    /// Checks with the engine's `filter`, on the node's `clock`.
    pub(crate) fn new(config: &Config, filter: SharedFilter, clock: Clock) -> Self {
        AheadChecks {
            recent: Arc::new(Mutex::new(Recent {
                ids: HashSet::new(),
                order: VecDeque::new(),
                verified: HashMap::new(),
                verified_order: VecDeque::new(),
            })),
            filter,
            clock,
            config: Arc::new(config.clone()),
            hasher: RandomState::new(),
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
        let verdicts = self.verdicts(&frame.messages, self.clock.wall());
        VerifiedFrame { frame, verdicts }
    }

    /// A keyed hash of everything `envelope`'s signature covers, and the signature.
    fn digest(&self, envelope: &Envelope) -> u64 {
        let mut h = self.hasher.build_hasher();
        envelope.id().hash(&mut h);
        envelope.timestamp().hash(&mut h);
        envelope.payload().hash(&mut h);
        envelope.signature().hash(&mut h);
        h.finish()
    }

    fn verdicts(&self, envelopes: &[Envelope], now: Millis) -> Vec<Verdict> {
        // What the hints say, under the lock: skip, already verified, or to verify.
        let ahead: Vec<Option<(u64, bool)>> = {
            let recent = self.lock();
            let filter = self.filter.read();
            envelopes
                .iter()
                .map(|e| {
                    let id = e.id();
                    if recent.ids.contains(&id)
                        || check_before_signature(&self.config, &filter, e, now).is_err()
                    {
                        return None;
                    }
                    let digest = self.digest(e);
                    Some((digest, recent.verified.get(&id) == Some(&digest)))
                })
                .collect()
        };
        // The engine stops a frame at its first invalid signature; so does this.
        let mut failed = false;
        let mut valid_now = Vec::new();
        let verdicts = envelopes
            .iter()
            .zip(ahead)
            .map(|(e, ahead)| {
                let Some((digest, cached)) = ahead else {
                    return Verdict::Unchecked;
                };
                if failed {
                    return Verdict::Unchecked;
                }
                if cached {
                    return Verdict::Cached;
                }
                if e.verify().is_ok() {
                    valid_now.push((e.id(), digest));
                    Verdict::Valid
                } else {
                    failed = true;
                    Verdict::Invalid
                }
            })
            .collect();
        if !valid_now.is_empty() {
            let mut recent = self.lock();
            for (id, digest) in valid_now {
                if recent.verified.insert(id, digest).is_none() {
                    recent.verified_order.push_back(id);
                }
                while recent.verified_order.len() > RECENT_IDS {
                    if let Some(old) = recent.verified_order.pop_front() {
                        recent.verified.remove(&old);
                    }
                }
            }
        }
        verdicts
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
        let verdicts = checks.verdicts(&[fresh.clone(), known, old, blocked], now);
        use Verdict::*;
        assert_eq!(verdicts, vec![Valid, Unchecked, Unchecked, Unchecked]);
        // The same envelope again is not verified again; a forged variant of it is.
        let mut forged = fresh.to_proto();
        forged.payload = bytes::Bytes::from_static(b"forged");
        let forged = Envelope::try_from(forged).unwrap();
        let after = Envelope::sign(&keys, 4, now, b"e".to_vec()).unwrap();
        assert_eq!(
            checks.verdicts(&[fresh.clone(), forged, after], now),
            vec![Cached, Invalid, Unchecked],
            "verified no further than the first invalid signature"
        );
    }
}
