//! [`Batcher`]: what one input makes a node send, per peer, packed at the end of the input
//! into as few frames as the limits allow (the frames then wait in the engine's outputs).
//!
//! The sender holds itself to the same [`FrameLimits`] it enforces on receipt, counting with
//! [`FrameBudget`], so a frame it sends is never a violation at a peer with the same config.
//! A complete digest that does not fit one frame is sent as several incomplete ones
//! (announcements only, `docs/PROTOCOL.md` §1). Tree control rides on the first frame, or
//! goes in a frame of its own before the others if its author lists do not fit there.

use super::Output;
use super::ids::IdSets;
use crate::envelope::Envelope;
use crate::frame::{
    AUTHOR_FIELD_LEN, Digest, Frame, FrameBudget, FrameLimits, MAX_CONTROL_AUTHORS, digest_len,
    envelope_len, tags_len,
};
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::collections::{BTreeMap, VecDeque};

/// What waits for one peer until the end of the input.
#[derive(Debug, Default)]
struct Batch {
    complete: bool,
    control: Control,
    have: IdSets,
    want: IdSets,
    /// Announcements and wants by tag (`tags.rs`).
    have_tags: Vec<u64>,
    want_tags: Vec<u64>,
    messages: Vec<Envelope>,
}

/// Tree control for one peer's next frame.
#[derive(Debug, Default)]
struct Control {
    prune: bool,
    graft: bool,
    /// At most [`MAX_CONTROL_AUTHORS`] each, never one author in both.
    graft_authors: Vec<PublicKey>,
    prune_authors: Vec<PublicKey>,
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

    /// A complete `have`: `digest` is everything the node knows. Its first frame says that
    /// this node reads tags.
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

    /// Tree control for `peer`'s next frame: "stop pushing to me", and, with `author`, "end
    /// that author's link".
    pub(crate) fn prune(&mut self, peer: &P, author: Option<&PublicKey>) {
        if let Some(author) = author {
            self.end_author(peer, author);
        }
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.control.prune = true;
        pending.control.graft = false;
    }

    /// Tree control for `peer`'s next frame: "end `author`'s link" (the latest
    /// [`MAX_CONTROL_AUTHORS`] are kept).
    pub(crate) fn end_author(&mut self, peer: &P, author: &PublicKey) {
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.control.graft_authors.retain(|a| a != author);
        if !pending.control.prune_authors.contains(author) {
            if pending.control.prune_authors.len() >= MAX_CONTROL_AUTHORS {
                pending.control.prune_authors.remove(0);
            }
            pending.control.prune_authors.push(*author);
        }
    }

    /// Tree control for `peer`'s next frame: "push to me", and with `author`, "push its
    /// messages to me whatever the role" (its pending end goes). Returns whether `author` is
    /// asked for (the first [`MAX_CONTROL_AUTHORS`] of the frame's list are).
    pub(crate) fn graft(&mut self, peer: &P, author: Option<&PublicKey>) -> bool {
        let control = &mut self.pending.entry(peer.clone()).or_default().control;
        control.graft = true;
        control.prune = false;
        let Some(author) = author else {
            return false;
        };
        if !control.graft_authors.contains(author) {
            if control.graft_authors.len() >= MAX_CONTROL_AUTHORS {
                return false;
            }
            control.graft_authors.push(*author);
        }
        control.prune_authors.retain(|a| a != author);
        true
    }

    pub(crate) fn have(&mut self, peer: &P, author: &PublicKey, ranges: &RangeSet) {
        merge(
            &mut self.pending.entry(peer.clone()).or_default().have,
            author,
            ranges,
        );
    }

    /// Announcements by tag.
    pub(crate) fn have_tags(&mut self, peer: &P, tags: &[u64]) {
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.have_tags.extend_from_slice(tags);
    }

    /// Wants by tag.
    pub(crate) fn want_tags(&mut self, peer: &P, tags: &[u64]) {
        let pending = self.pending.entry(peer.clone()).or_default();
        pending.want_tags.extend_from_slice(tags);
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
            control(&pending.control, &mut frames, limits);
            for frame in frames {
                send(frame);
            }
        }
    }
}

/// Puts tree control in `frames`: the flags and as many authors as fit on the first frame
/// (one of its own if there is none or the flags do not fit), the rest in frames of control
/// only right after it, each within `max_frame_size`.
fn control(c: &Control, frames: &mut Vec<Frame>, limits: &FrameLimits) {
    if !c.prune && !c.graft && c.graft_authors.is_empty() && c.prune_authors.is_empty() {
        return;
    }
    // Authors (34 bytes each) that fit beside `used` bytes; at least one in a frame of its own
    // (a config's frame holds far more than 34 bytes).
    let fit = |used: usize| limits.max_frame_size.saturating_sub(used) / AUTHOR_FIELD_LEN;
    let mut authors: VecDeque<(bool, PublicKey)> = (c.graft_authors.iter().map(|a| (true, *a)))
        .chain(c.prune_authors.iter().map(|a| (false, *a)))
        .collect();
    let put = |frame: &mut Frame, room: usize, authors: &mut VecDeque<(bool, PublicKey)>| {
        for _ in 0..room {
            match authors.pop_front() {
                Some((true, a)) => frame.graft_authors.push(a),
                Some((false, a)) => frame.prune_authors.push(a),
                None => break,
            }
        }
    };
    let flags = 2 * (usize::from(c.prune) + usize::from(c.graft));
    if frames
        .first()
        .is_none_or(|f| f.encoded_len() + flags > limits.max_frame_size)
    {
        frames.insert(0, Frame::default());
    }
    let first = &mut frames[0];
    first.prune = c.prune;
    first.graft = c.graft;
    let room = fit(first.encoded_len());
    put(first, room, &mut authors);
    let mut extra = Vec::new();
    while !authors.is_empty() {
        let mut frame = Frame::default();
        put(&mut frame, fit(0).max(1), &mut authors);
        extra.push(frame);
    }
    // After the first frame: a connection's first frame stays its complete digest.
    frames.splice(1..1, extra);
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
    if pending.have.is_empty()
        && pending.want.is_empty()
        && pending.have_tags.is_empty()
        && pending.want_tags.is_empty()
        && !pending.complete
    {
        return Vec::new();
    }
    let room = FrameBudget::frame(limits).bytes();
    let mut frames = Vec::new();
    let mut have = DigestCutter::new(&pending.have);
    let mut want = DigestCutter::new(&pending.want);
    let (mut have_tags, mut want_tags) = (&pending.have_tags[..], &pending.want_tags[..]);
    // Tags that fit beside `bytes` and `ranges` (a packed field's tag and length take at most
    // `TAGS_HEADER` bytes).
    const TAGS_HEADER: usize = 11;
    let tags_room = |bytes: usize, ranges: usize, max_ranges: usize| {
        (room.saturating_sub(bytes + TAGS_HEADER) / 8).min(max_ranges.saturating_sub(ranges))
    };
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
        let n = tags_room(bytes, have_ranges, limits.max_have_ranges).min(have_tags.len());
        frame.have_tags = have_tags[..n].to_vec();
        have_tags = &have_tags[n..];
        bytes += tags_len(n);
        let n = tags_room(bytes, want_ranges, limits.max_want_ranges).min(want_tags.len());
        frame.want_tags = want_tags[..n].to_vec();
        want_tags = &want_tags[n..];
        let empty = frame.have.is_empty()
            && frame.want.is_empty()
            && frame.have_tags.is_empty()
            && frame.want_tags.is_empty();
        frames.push(frame);
        // A fresh frame always takes at least one range (a config's frame fits one
        // envelope, so one range); stop rather than loop if that ever fails.
        let done = have.done() && want.done() && have_tags.is_empty() && want_tags.is_empty();
        if done || empty {
            break;
        }
    }
    if pending.complete {
        // `complete` only when the whole digest went in one frame; every frame of it says
        // that this node reads tags (one that is dropped must not take that with it).
        frames[0].complete = frames.len() == 1;
        for frame in &mut frames {
            frame.reads_tags = true;
        }
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

    #[test]
    fn author_lists_ride_on_the_first_frame_or_on_one_of_their_own() {
        let limits = FrameLimits {
            max_frame_size: 400,
            max_messages: 8,
            max_have_ranges: 10,
            max_want_ranges: 10,
        };
        let keys: Vec<_> = (1..=10u8)
            .map(|i| Keypair::from_seed(&[i; 32]).public())
            .collect();
        let envelope = Envelope::sign(&Keypair::from_seed(&[1; 32]), 1, 0, vec![0; 200]).unwrap();
        let mut outbox = Batcher::new();
        outbox.message(&0u8, envelope);
        for key in &keys {
            outbox.graft(&0u8, Some(key)); // the first eight are kept
        }
        outbox.prune(&0u8, Some(&keys[1])); // moves from one list to the other; `prune` wins
        let mut out = VecDeque::new();
        outbox.flush(&limits, &mut out);
        let frames: Vec<Frame> = out
            .into_iter()
            .map(|o| match o {
                Output::Send { frame, .. } => frame,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            frames.len(),
            2,
            "the lists do not all fit beside the envelope"
        );
        assert!(
            frames[0].prune && !frames[0].graft,
            "the flags ride on the first frame"
        );
        assert!(
            frames[1].messages.is_empty() && !frames[1].prune && !frames[1].graft,
            "the rest follow, in a frame of their own"
        );
        let mut expected = keys[..8].to_vec();
        expected.remove(1);
        let granted: Vec<_> = frames
            .iter()
            .flat_map(|f| f.graft_authors.clone())
            .collect();
        let ended: Vec<_> = frames
            .iter()
            .flat_map(|f| f.prune_authors.clone())
            .collect();
        assert_eq!(granted.len(), expected.len());
        assert!(expected.iter().all(|k| granted.contains(k)));
        assert_eq!(ended, vec![keys[1]]);
        for frame in &frames {
            assert_eq!(frame.encoded_len(), frame.encode().len());
            assert!(frame.encoded_len() <= limits.max_frame_size);
            assert_eq!(&Frame::decode(&frame.encode(), &limits).unwrap(), frame);
        }
        // The smallest frame a config allows (no payload): several frames of control.
        let tiny = FrameLimits {
            max_frame_size: 134,
            ..limits
        };
        let mut outbox = Batcher::new();
        for key in &keys[..8] {
            outbox.graft(&0u8, Some(key));
        }
        outbox.prune(&0u8, Some(&keys[9]));
        let mut out = VecDeque::new();
        outbox.flush(&tiny, &mut out);
        let mut authors = 0;
        for output in out {
            let Output::Send { frame, .. } = output else {
                panic!()
            };
            assert!(frame.encoded_len() <= tiny.max_frame_size);
            authors += frame.graft_authors.len() + frame.prune_authors.len();
        }
        assert_eq!(authors, 9, "eight asked for, one ended");
        // Small enough: on the first frame.
        let mut outbox = Batcher::new();
        outbox.want(&0u8, &keys[0], &RangeSet::from_wire(&[1, 1]).unwrap());
        outbox.graft(&0u8, Some(&keys[0]));
        let mut out = VecDeque::new();
        outbox.flush(&limits, &mut out);
        assert_eq!(out.len(), 1);
    }
}
