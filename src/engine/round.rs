//! Rounds (lazy push): what a node announces to each peer, and why an idle network sends
//! nothing.

use super::Engine;

impl<P: Clone + Ord> Engine<P> {
    /// One round: to every peer, a `have` of the held ids it is not known to have and was
    /// not told of. Nothing new, nothing sent. A peer whose first frame (its complete digest)
    /// has not arrived gets its round when that frame arrives.
    pub(super) fn round(&mut self) {
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.round_peer(&peer);
        }
    }

    pub(super) fn round_peer(&mut self, peer: &P) {
        let limits = self.peer_limits();
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if !state.synced {
            state.round_due = true;
            return;
        }
        for author in std::mem::take(&mut state.dirty) {
            let Some(held) = self.store.held(&author) else {
                continue;
            };
            let lacking = state.lacking(&author, held);
            if !lacking.is_empty() {
                self.outbox.have(peer, &author, &lacking);
                state.announce(&author, &lacking, limits.0, limits.1);
            }
        }
    }
}
