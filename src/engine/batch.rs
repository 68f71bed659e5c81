//! [`Batcher`]: what one input makes a node send, per peer, packed at the end of the input
//! into as few frames as the limits allow (the frames then wait in the engine's outputs).
//!
//! The sender holds itself to the same [`FrameLimits`] it enforces on receipt, counting with
//! [`FrameBudget`], so a frame it sends is never a violation at a peer with the same config.
//! A complete digest that does not fit one frame is sent as several incomplete ones
//! (announcements only, `docs/PROTOCOL.md` §1). Tree control rides on the first frame.

use super::Output;
use super::ids::IdSets;
use crate::envelope::Envelope;
use crate::frame::{Digest, Frame, FrameBudget, FrameLimits, digest_len, envelope_len};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, VecDeque};

/// What waits for one peer until the end of the input.
#[derive(Debug, Default)]
struct Batch {
    complete: bool,
    prune: bool,
    graft: bool,
    have: IdSets,
    want: IdSets,
    messages: Vec<Envelope>,
}

#[derive(Debug)]
pub(crate) struct Batcher<P> {
    pending: BTreeMap<P, Batch>,
}

impl<P: Clone + Ord> Batcher<P> {
    pub(crate) fn new() -> Self {
        Batcher {
            pending: BTreeMap::new(),
        }
    }

    /// A complete `have`: `digest` is everything the node knows.
    pub(crate) fn complete(&mut self, peer: &P, digest: Vec<Digest>) {
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.complete = true;
        for d in digest {
            merge(&mut pending.have, &d.author, &d.ranges);
        }
    }

    /// Drops what waits for `peer` (it is gone): nothing is sent to a peer after it left.
    pub(crate) fn forget(&mut self, peer: &P) {
        self.pending.remove(peer);
    }

    /// Tree control for `peer`'s next frame: "stop pushing to me".
    pub(crate) fn prune(&mut self, peer: &P) {
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.prune = true;
        pending.graft = false;
    }

    /// Tree control for `peer`'s next frame: "push to me".
    pub(crate) fn graft(&mut self, peer: &P) {
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.graft = true;
        pending.prune = false;
    }

    pub(crate) fn have(&mut self, peer: &P, author: &PublicKey, ranges: &RangeSet) {
        merge(
            &mut self.pending.entry(peer.clone()).or_default().have,
            author,
            ranges,
        );
    }

    pub(crate) fn want(&mut self, peer: &P, author: &PublicKey, ranges: &RangeSet) {
        merge(
            &mut self.pending.entry(peer.clone()).or_default().want,
            author,
            ranges,
        );
    }

    pub(crate) fn message(&mut self, peer: &P, envelope: Envelope) {
        self.pending
            .entry(peer.clone())
            .or_default()
            .messages
            .push(envelope);
    }

    /// Turns everything pending into frames, in order: digests first, then messages.
    pub(crate) fn flush(&mut self, limits: &FrameLimits, out: &mut VecDeque<Output<P>>) {
        for (peer, pending) in std::mem::take(&mut self.pending) {
            let mut send = |frame: Frame| {
                out.push_back(Output::Send {
                    peer: peer.clone(),
                    frame,
                })
            };
            let mut frames = digest_frames(&pending, limits);
            frames.extend(message_frames(pending.messages, limits));
            // Tree control rides on the first frame (one of its own if there is none).
            if pending.prune || pending.graft {
                if frames.is_empty() {
                    frames.push(Frame::default());
                }
                frames[0].prune = pending.prune;
                frames[0].graft = pending.graft;
            }
            for frame in frames {
                send(frame);
            }
        }
    }
}

fn merge(sets: &mut IdSets, author: &PublicKey, ranges: &RangeSet) {
    if !ranges.is_empty() {
        sets.entry(*author).or_default().union_with(ranges);
    }
}

/// One field's digests, cut into pieces that fit the remaining room.
struct DigestCutter<'a> {
    sets: std::collections::btree_map::Iter<'a, PublicKey, RangeSet>,
    current: Option<(PublicKey, Vec<u64>)>,
}

impl<'a> DigestCutter<'a> {
    fn new(sets: &'a IdSets) -> Self {
        DigestCutter {
            sets: sets.iter(),
            current: None,
        }
    }

    /// The next digest of at most `max_ranges` ranges and `max_bytes` bytes, if any fits.
    fn next(&mut self, max_ranges: usize, max_bytes: usize) -> Option<Digest> {
        if self.current.is_none() {
            let (author, ranges) = self.sets.next()?;
            self.current = Some((*author, ranges.to_wire()));
        }
        let (author, wire) = self.current.as_mut().expect("set above");
        let mut take = (wire.len() / 2).min(max_ranges);
        while take > 0 && digest_len(wire[..take * 2].iter().copied()) > max_bytes {
            take = take * 3 / 4;
        }
        if take == 0 {
            return None;
        }
        let rest = wire.split_off(take * 2);
        let ranges = RangeSet::from_wire(wire).expect("a slice of a canonical set");
        let digest = Digest {
            author: *author,
            ranges,
        };
        if rest.is_empty() {
            self.current = None;
        } else {
            *wire = rest;
        }
        Some(digest)
    }

    fn done(&self) -> bool {
        self.current.is_none() && self.sets.len() == 0
    }
}

fn digest_frames(pending: &Batch, limits: &FrameLimits) -> Vec<Frame> {
    if pending.have.is_empty() && pending.want.is_empty() && !pending.complete {
        return Vec::new();
    }
    let room = FrameBudget::frame(limits).bytes();
    let mut frames = Vec::new();
    let mut have = DigestCutter::new(&pending.have);
    let mut want = DigestCutter::new(&pending.want);
    loop {
        let mut frame = Frame::default();
        let (mut bytes, mut have_ranges, mut want_ranges) = (0, 0, 0);
        while let Some(d) = have.next(limits.max_have_ranges - have_ranges, room - bytes) {
            bytes += digest_len(d.ranges.to_wire());
            have_ranges += d.ranges.range_count();
            frame.have.push(d);
        }
        while let Some(d) = want.next(limits.max_want_ranges - want_ranges, room - bytes) {
            bytes += digest_len(d.ranges.to_wire());
            want_ranges += d.ranges.range_count();
            frame.want.push(d);
        }
        let empty = frame.have.is_empty() && frame.want.is_empty();
        frames.push(frame);
        // A fresh frame always takes at least one range (a config's frame fits one
        // envelope, so one range); stop rather than loop if that ever fails.
        if (have.done() && want.done()) || empty {
            break;
        }
    }
    // `complete` only when the whole digest went in one frame.
    if pending.complete && frames.len() == 1 {
        frames[0].complete = true;
    }
    frames
}

fn message_frames(messages: Vec<Envelope>, limits: &FrameLimits) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut frame = Frame::default();
    let mut budget = FrameBudget::frame(limits);
    for envelope in messages {
        let len = envelope_len(&envelope);
        if frame.messages.is_empty() {
            budget.force(len);
        } else if !budget.take(len) {
            frames.push(std::mem::take(&mut frame));
            budget = FrameBudget::frame(limits);
            budget.force(len);
        }
        frame.messages.push(envelope);
    }
    if !frame.messages.is_empty() {
        frames.push(frame);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn size_estimates_match_the_encoder() {
        let keys = Keypair::from_seed(&[1; 32]);
        for (seq, ts, len) in [
            (1, 0, 0),
            (u64::MAX, u64::MAX, 300),
            (7, 1_700_000_000_000, 5),
        ] {
            let envelope = Envelope::sign(&keys, seq, ts, vec![9u8; len]).unwrap();
            let frame = Frame {
                messages: vec![envelope.clone()],
                ..Frame::default()
            };
            assert_eq!(envelope_len(&envelope), frame.encode().len());
            assert_eq!(frame.encoded_len(), frame.encode().len());
        }
        let ranges = RangeSet::from_wire(&[1, 5, 9, u64::MAX]).unwrap();
        let frame = Frame {
            have: vec![Digest {
                author: keys.public(),
                ranges: ranges.clone(),
            }],
            ..Frame::default()
        };
        assert_eq!(digest_len(ranges.to_wire()), frame.encode().len());
    }

    #[test]
    fn a_digest_too_big_for_one_frame_is_split_and_not_complete() {
        let limits = FrameLimits {
            max_frame_size: 300,
            max_messages: 2,
            max_have_ranges: 10,
            max_want_ranges: 10,
        };
        let author = Keypair::from_seed(&[1; 32]).public();
        let ranges: RangeSet = (1..=100u64).map(|i| i * 2).collect();
        let mut outbox = Batcher::new();
        outbox.complete(
            &0u8,
            vec![Digest {
                author,
                ranges: ranges.clone(),
            }],
        );
        let mut out = VecDeque::new();
        outbox.flush(&limits, &mut out);
        let mut union = RangeSet::new();
        for output in out {
            let Output::Send { frame, .. } = output else {
                panic!()
            };
            assert!(!frame.complete);
            assert!(frame.encoded_len() <= limits.max_frame_size);
            let decoded = Frame::decode(&frame.encode(), &limits).unwrap();
            for d in decoded.have {
                union.union_with(&d.ranges);
            }
        }
        assert_eq!(union, ranges);
    }
}
