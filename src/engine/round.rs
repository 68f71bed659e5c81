//! Rounds (lazy push): what a node announces to each peer, and why an idle network sends
//! nothing.

use super::Engine;

impl<P: Clone + Ord> Engine<P> {
    /// One round: to every peer, a `have` of the ids accepted since its last round that it
    /// is not known to have and that are still held. Nothing new, nothing sent. The work is
    /// proportional to what is new. A peer whose first frame (its complete digest) has not
    /// arrived gets its round when that frame arrives.
    pub(super) fn round(&mut self) {
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.round_peer(&peer);
        }
    }

    pub(super) fn round_peer(&mut self, peer: &P) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if !state.synced {
            state.round_due = true;
            return;
        }
        for (author, ids) in state.take_announce() {
            let Some(held) = self.store.held(&author) else {
                continue;
            };
            let lacking = state.has.lacking(&author, &ids.intersection(held));
            if !lacking.is_empty() {
                self.outbox.have(peer, &author, &lacking);
            }
        }
    }
}
