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
//! - inside the time window and the payload limit;
//! - of an author the filter permits.
//!
//! A wrong hint costs one verification or leaves it to the engine; acceptance is unchanged.
//! The verdict is `verify_strict`'s, as the engine's would be. A frame is verified no
//! further than its first invalid signature (a violation), and nothing is verified on a
//! connection the node does not gossip on. What a peer can make a handler verify is bounded
//! by its inbound envelope budget, as the engine's own verifications are.

use crate::config::Config;
use crate::engine::Filter;
use crate::envelope::{Envelope, MessageId};
use crate::keys::PublicKey;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// How many recently accepted ids the handlers know of (40 bytes each, twice).
pub(crate) const RECENT_IDS: usize = 65_536;

/// A handler's verdicts on a frame's envelopes: `Some(valid)` where it checked.
pub(crate) type Verdicts = Vec<Option<bool>>;

#[derive(Debug)]
struct Inner {
    recent: HashSet<MessageId>,
    order: VecDeque<MessageId>,
    filter: Filter,
}

/// What the handlers need to know to verify ahead, shared with the behaviour.
#[derive(Clone, Debug)]
pub(crate) struct AheadChecks {
    inner: Arc<Mutex<Inner>>,
    config: Arc<Config>,
}

impl AheadChecks {
    pub(crate) fn new(config: &Config, me: PublicKey) -> Self {
        AheadChecks {
            inner: Arc::new(Mutex::new(Inner {
                recent: HashSet::new(),
                order: VecDeque::new(),
                filter: Filter::new(me, config.author_filter().clone()),
            })),
            config: Arc::new(config.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node accepted (or holds for validation) `id`.
    pub(crate) fn known(&self, id: MessageId) {
        let mut inner = self.lock();
        if inner.recent.insert(id) {
            inner.order.push_back(id);
            if inner.order.len() > RECENT_IDS
                && let Some(old) = inner.order.pop_front()
            {
                inner.recent.remove(&old);
            }
        }
    }

    pub(crate) fn allow(&self, author: PublicKey) {
        self.lock().filter.allow(author);
    }

    pub(crate) fn block(&self, author: PublicKey) {
        self.lock().filter.block(author);
    }

    /// Verifies, with `verify_strict`, the envelopes of a frame received at `now` (ms) that
    /// would reach the engine's signature check.
    pub(crate) fn verify(&self, envelopes: &[Envelope], now: u64) -> Verdicts {
        let ahead: Vec<bool> = {
            let inner = self.lock();
            envelopes
                .iter()
                .map(|e| {
                    !inner.recent.contains(&e.id())
                        && e.payload().len() <= self.config.max_payload_size()
                        && self.config.in_window(e.timestamp(), now)
                        && inner.filter.permits(e.author())
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
        let checks = AheadChecks::new(&Config::default(), me.public());
        let now = 1_750_000_000_000;
        let keys = Keypair::generate();
        let fresh = Envelope::sign(&keys, 1, now, b"a".to_vec()).unwrap();
        let known = Envelope::sign(&keys, 2, now, b"b".to_vec()).unwrap();
        let old = Envelope::sign(&keys, 3, 0, b"c".to_vec()).unwrap();
        let blocked_keys = Keypair::generate();
        let blocked = Envelope::sign(&blocked_keys, 1, now, b"d".to_vec()).unwrap();
        checks.known(known.id());
        checks.block(blocked_keys.public());
        let verdicts = checks.verify(&[fresh, known, old, blocked], now);
        assert_eq!(verdicts, vec![Some(true), None, None, None]);
    }
}
