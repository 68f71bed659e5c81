//! The typed [`Frame`]: what one length-prefixed protobuf `Frame` carries once every
//! structural rule of `docs/PROTOCOL.md` §1 and every per-frame limit has been checked.

mod scan;

use crate::envelope::{Envelope, EnvelopeError};
use crate::keys::PublicKey;
use crate::proto;
use crate::ranges::{RangeError, RangeSet};
use bytes::Bytes;
use prost::Message as _;
use prost::encoding::encoded_len_varint;
use std::fmt;

/// One author's sequences: "I know these" in `have`, "send me these" in `want`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// The author.
    pub author: PublicKey,
    /// Its sequences.
    pub ranges: RangeSet,
}

/// A frame, checked: envelopes have the right field lengths and a non-zero sequence (their
/// signatures are not yet verified), digests are well formed, and the counts are within
/// [`FrameLimits`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Full messages (push).
    pub messages: Vec<Envelope>,
    /// Ids the sender knows (lazy push, catch-up).
    pub have: Vec<Digest>,
    /// Ids the sender asks for (pull).
    pub want: Vec<Digest>,
    /// `have` lists every id the sender knows, of every author.
    pub complete: bool,
    /// Tree control: "stop pushing new messages to me; announce them" (`docs/PROTOCOL.md`
    /// §3.8).
    pub prune: bool,
    /// Tree control: "push new messages to me".
    pub graft: bool,
    /// Tree control: "push these authors' new messages to me, whatever the link's role"
    /// (author links, `docs/PROTOCOL.md` §3.8; at most [`MAX_CONTROL_AUTHORS`]: a frame
    /// with more is a violation at the receiver, which [`Frame::encode`] does not check).
    pub graft_authors: Vec<PublicKey>,
    /// Tree control: "stop pushing these authors' messages to me for an author link" (at
    /// most [`MAX_CONTROL_AUTHORS`]).
    pub prune_authors: Vec<PublicKey>,
    /// Ids the sender knows, by tag ([`MessageId::tag`](crate::MessageId::tag)): announcements
    /// only, sent to a peer that set [`Frame::reads_tags`]. Each counts as one `have` range
    /// against [`FrameLimits::max_have_ranges`].
    pub have_tags: Vec<u64>,
    /// Ids the sender asks for, by tag: answered like `want`, with the envelopes the receiver
    /// holds among them. Each counts as one `want` range.
    pub want_tags: Vec<u64>,
    /// "I read `have_tags` and `want_tags`": set on the sender's first frame.
    pub reads_tags: bool,
}

/// Most authors in a frame's `graft_authors`, and in its `prune_authors`: more is a
/// protocol violation (`docs/PROTOCOL.md` §1).
pub const MAX_CONTROL_AUTHORS: usize = 8;

/// Per-frame limits a receiver enforces. A frame over any of them is a protocol violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame body, in bytes (the length prefix's value).
    pub max_frame_size: usize,
    /// Most envelopes in one frame.
    pub max_messages: usize,
    /// Most ranges over all `have` digests of one frame.
    pub max_have_ranges: usize,
    /// Most ranges over all `want` digests of one frame.
    pub max_want_ranges: usize,
}

impl Frame {
    /// Whether the frame carries nothing (no entry and no flag).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.have.is_empty()
            && self.want.is_empty()
            && !self.complete
            && !self.prune
            && !self.graft
            && self.graft_authors.is_empty()
            && self.prune_authors.is_empty()
            && self.have_tags.is_empty()
            && self.want_tags.is_empty()
            && !self.reads_tags
    }

    /// The canonical protobuf body (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The size of [`Frame::encode`]'s output, computed without encoding.
    pub fn encoded_len(&self) -> usize {
        let ranges = |d: &Digest| digest_len(d.ranges.ranges().flat_map(|(s, e)| [s, e]));
        self.messages.iter().map(envelope_len).sum::<usize>()
            + self.have.iter().map(ranges).sum::<usize>()
            + self.want.iter().map(ranges).sum::<usize>()
            + 2 * usize::from(self.complete)
            + 2 * usize::from(self.prune)
            + 2 * usize::from(self.graft)
            + control_authors_len(&self.graft_authors)
            + control_authors_len(&self.prune_authors)
            + tags_len(self.have_tags.len())
            + tags_len(self.want_tags.len())
            + 2 * usize::from(self.reads_tags)
    }

    /// What the frame counts against an outbound queue: its encoded size, or the memory it
    /// takes if that is more (payloads aside: they are shared with the store). A digest of
    /// small sequences encodes in a few bytes per range but takes up to 32 in memory (16, and
    /// a vector's spare room).
    pub(crate) fn queued_len(&self) -> usize {
        let ranges: usize = self
            .have
            .iter()
            .chain(&self.want)
            .map(|d| d.ranges.range_count())
            .sum();
        let in_memory = size_of::<Frame>()
            + self.messages.len() * size_of::<Envelope>()
            + (self.have.len() + self.want.len()) * size_of::<Digest>()
            + ranges * 2 * size_of::<(u64, u64)>()
            + (self.have_tags.len() + self.want_tags.len()) * size_of::<u64>();
        self.encoded_len().max(in_memory)
    }

    /// Decodes a frame body and checks it against `docs/PROTOCOL.md` §1 and `limits`.
    pub fn decode(body: &[u8], limits: &FrameLimits) -> Result<Frame, FrameError> {
        if body.len() > limits.max_frame_size {
            return Err(FrameError::TooLarge {
                len: body.len() as u64,
                max: limits.max_frame_size,
            });
        }
        // Count entries on the wire before materialising any: a frame of tiny entries (two
        // bytes each) would otherwise become hundreds of thousands of structs first.
        scan::check_counts(body, limits)?;
        let raw = proto::Frame::decode(body).map_err(FrameError::Decode)?;
        Frame::from_proto(raw, limits)
    }

    fn from_proto(raw: proto::Frame, limits: &FrameLimits) -> Result<Frame, FrameError> {
        if raw.messages.len() > limits.max_messages {
            return Err(FrameError::TooMany {
                what: "messages",
                count: raw.messages.len(),
                max: limits.max_messages,
            });
        }
        let messages = raw
            .messages
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                Envelope::try_from(e).map_err(|error| FrameError::Envelope { index, error })
            })
            .collect::<Result<_, _>>()?;
        // A tag counts as one range of its field: the digests get what the tags leave.
        let have_room = room_after_tags(raw.have_tags.len(), limits.max_have_ranges, "have")?;
        let want_room = room_after_tags(raw.want_tags.len(), limits.max_want_ranges, "want")?;
        Ok(Frame {
            messages,
            have: digests(raw.have, "have", have_room)?,
            want: digests(raw.want, "want", want_room)?,
            complete: raw.complete,
            prune: raw.prune,
            graft: raw.graft,
            graft_authors: control_authors(raw.graft_authors, "graft_authors")?,
            prune_authors: control_authors(raw.prune_authors, "prune_authors")?,
            have_tags: raw.have_tags,
            want_tags: raw.want_tags,
            reads_tags: raw.reads_tags,
        })
    }

    fn to_proto(&self) -> proto::Frame {
        let digest = |d: &Digest| proto::Digest {
            author: Bytes::copy_from_slice(d.author.as_bytes()),
            ranges: d.ranges.to_wire(),
        };
        proto::Frame {
            messages: self.messages.iter().map(Envelope::to_proto).collect(),
            have: self.have.iter().map(digest).collect(),
            want: self.want.iter().map(digest).collect(),
            complete: self.complete,
            prune: self.prune,
            graft: self.graft,
            graft_authors: self.graft_authors.iter().map(author_bytes).collect(),
            prune_authors: self.prune_authors.iter().map(author_bytes).collect(),
            have_tags: self.have_tags.clone(),
            want_tags: self.want_tags.clone(),
            reads_tags: self.reads_tags,
        }
    }
}

/// Room a sender keeps in every frame it packs for the frame's own field tags and flags
/// (`complete`, `prune`, `graft`: two bytes each).
pub(crate) const FRAME_SLACK: usize = 16;

/// Room an answer to a want keeps beyond [`FRAME_SLACK`]: the answer's envelopes go in a
/// frame of their own, and the answerer stops before one would come within this much of
/// `max_frame_size`.
pub(crate) const ANSWER_SLACK: usize = 64;

/// What more fits in one frame being packed: bytes and envelopes. Every packer (the batcher,
/// the answer to a want, the push that answers a complete digest) counts with one, so the
/// receiver's guess of whether an answer was cut short ([`FrameBudget::is_full_answer`])
/// follows from the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameBudget {
    bytes: usize,
    messages: usize,
}

impl FrameBudget {
    /// A frame the batcher packs: the limits less [`FRAME_SLACK`].
    pub(crate) fn frame(limits: &FrameLimits) -> Self {
        FrameBudget {
            bytes: limits.max_frame_size.saturating_sub(FRAME_SLACK),
            messages: limits.max_messages,
        }
    }

    /// The envelopes of an answer to a want: the limits less [`ANSWER_SLACK`].
    pub(crate) fn answer(limits: &FrameLimits) -> Self {
        FrameBudget {
            bytes: limits.max_frame_size.saturating_sub(ANSWER_SLACK),
            messages: limits.max_messages,
        }
    }

    /// The envelopes pushed in answer to a complete digest: half a frame (the rest is
    /// announced, so the peer pulls it at its own pace).
    pub(crate) fn catch_up(limits: &FrameLimits) -> Self {
        FrameBudget {
            bytes: limits.max_frame_size / 2,
            messages: limits.max_messages,
        }
    }

    /// Bytes left.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes room for an envelope of `len` bytes, if it fits.
    pub(crate) fn take(&mut self, len: usize) -> bool {
        if len > self.bytes || self.messages == 0 {
            return false;
        }
        self.bytes -= len;
        self.messages -= 1;
        true
    }

    /// Takes room for an envelope that goes in whether it fits or not (the first of a frame:
    /// a config's frame always fits one envelope).
    pub(crate) fn force(&mut self, len: usize) {
        self.bytes = self.bytes.saturating_sub(len);
        self.messages = self.messages.saturating_sub(1);
    }

    /// Whether envelopes that were asked for and newly accepted, `count` of them in `bytes`,
    /// fill a frame as an answer does when the answerer stopped for room ([`Self::answer`]):
    /// more of what was asked may follow. `largest` is the largest envelope the config
    /// allows. The receiver leaves the answerer's slack twice over: envelopes of the answer
    /// it does not count (duplicates, unasked ones) take room too.
    pub(crate) fn is_full_answer(
        limits: &FrameLimits,
        largest: usize,
        count: usize,
        bytes: usize,
    ) -> bool {
        count > 0
            && (count >= limits.max_messages
                || bytes + largest + 2 * ANSWER_SLACK > limits.max_frame_size)
    }
}

/// The encoded size of a 32-byte author field (tag, length, key): a tree-control author
/// inside a frame, or a digest's author inside the digest.
pub(crate) const AUTHOR_FIELD_LEN: usize = 34;

/// The encoded size of a list of tree-control authors inside a frame.
pub(crate) fn control_authors_len(authors: &[PublicKey]) -> usize {
    AUTHOR_FIELD_LEN * authors.len()
}

fn author_bytes(author: &PublicKey) -> Bytes {
    Bytes::copy_from_slice(author.as_bytes())
}

/// An author field as a key, or its length if it is not 32 bytes.
fn author_key(bytes: &[u8]) -> Result<PublicKey, usize> {
    <[u8; 32]>::try_from(bytes)
        .map(PublicKey::from_bytes)
        .map_err(|_| bytes.len())
}

/// A frame's `graft_authors` or `prune_authors`, checked: 32 bytes each, at most
/// [`MAX_CONTROL_AUTHORS`] (the wire scan refused more before decoding).
fn control_authors(raw: Vec<Bytes>, field: &'static str) -> Result<Vec<PublicKey>, FrameError> {
    if raw.len() > MAX_CONTROL_AUTHORS {
        return Err(FrameError::TooMany {
            what: field,
            count: raw.len(),
            max: MAX_CONTROL_AUTHORS,
        });
    }
    raw.iter()
        .map(|a| author_key(a).map_err(|actual| FrameError::ControlAuthorLength { field, actual }))
        .collect()
}

/// The encoded size of `count` tags as one packed field (tag, length, 8 bytes each).
pub(crate) fn tags_len(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    let packed = 8 * count;
    1 + encoded_len_varint(packed as u64) + packed
}

/// The encoded size of an envelope inside a frame, tag and length included.
pub(crate) fn envelope_len(envelope: &Envelope) -> usize {
    let inner = envelope.encoded_len();
    1 + encoded_len_varint(inner as u64) + inner
}

/// The encoded size of a digest inside a frame (its author and the packed range `values`),
/// tag and length included.
pub(crate) fn digest_len(values: impl IntoIterator<Item = u64>) -> usize {
    let packed: usize = values.into_iter().map(encoded_len_varint).sum();
    let ranges_field = if packed == 0 {
        0
    } else {
        1 + encoded_len_varint(packed as u64) + packed
    };
    let inner = AUTHOR_FIELD_LEN + ranges_field;
    1 + encoded_len_varint(inner as u64) + inner
}

/// The ranges left for a field's digests beside `tags` of its tags, or the error if the tags
/// alone are over `max`.
fn room_after_tags(tags: usize, max: usize, what: &'static str) -> Result<usize, FrameError> {
    max.checked_sub(tags).ok_or(FrameError::TooMany {
        what,
        count: tags,
        max,
    })
}

fn digests(
    raw: Vec<proto::Digest>,
    field: &'static str,
    max_ranges: usize,
) -> Result<Vec<Digest>, FrameError> {
    // A digest counts as at least one range, so empty digests cannot be sent in bulk.
    let total: usize = raw.iter().map(|d| (d.ranges.len() / 2).max(1)).sum();
    if total > max_ranges {
        return Err(FrameError::TooMany {
            what: field,
            count: total,
            max: max_ranges,
        });
    }
    // Digests of one author are merged (in the place of its first) with one sort, so the
    // work a frame causes is per author, however often and in whatever order the sender
    // repeats one.
    let mut authors: Vec<PublicKey> = Vec::with_capacity(raw.len());
    let mut pairs: std::collections::HashMap<PublicKey, Vec<(u64, u64)>> =
        std::collections::HashMap::new();
    for d in raw {
        let author = author_key(&d.author)
            .map_err(|actual| FrameError::DigestAuthorLength { field, actual })?;
        let ranges =
            RangeSet::from_wire(&d.ranges).map_err(|error| FrameError::Ranges { field, error })?;
        let entry = pairs.entry(author).or_insert_with(|| {
            authors.push(author);
            Vec::new()
        });
        entry.extend(ranges.ranges());
    }
    let out = authors
        .into_iter()
        .map(|author| {
            let ranges = RangeSet::from_unsorted(pairs.remove(&author).unwrap_or_default());
            Digest { author, ranges }
        })
        .collect();
    Ok(out)
}

/// Why a frame was refused. Every variant except [`FrameError::Io`] is a protocol violation
/// by the sender (`docs/PROTOCOL.md` §1): the receiver closes the connection and reports the peer.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix claims more than `max_frame_size` bytes.
    TooLarge {
        /// The claimed length (at least this much, when refused before the prefix ended).
        len: u64,
        /// The receiver's `max_frame_size`.
        max: usize,
    },
    /// The length prefix is not minimally encoded (a multi-byte prefix ending in `00`).
    NonMinimalPrefix,
    /// The length prefix does not fit in 64 bits.
    PrefixOverflow,
    /// The body is not a protobuf `Frame`.
    Decode(prost::DecodeError),
    /// An envelope has a wrong field length or sequence 0.
    Envelope {
        /// Its position in `messages`.
        index: usize,
        /// What is wrong with it.
        error: EnvelopeError,
    },
    /// A digest's author is not 32 bytes.
    DigestAuthorLength {
        /// `have` or `want`.
        field: &'static str,
        /// The author's length.
        actual: usize,
    },
    /// A tree-control author (`graft_authors`, `prune_authors`) is not 32 bytes.
    ControlAuthorLength {
        /// `graft_authors` or `prune_authors`.
        field: &'static str,
        /// The author's length.
        actual: usize,
    },
    /// A digest's ranges are malformed.
    Ranges {
        /// `have` or `want`.
        field: &'static str,
        /// What is wrong with them.
        error: RangeError,
    },
    /// The frame carries more entries than the receiver accepts in one frame.
    TooMany {
        /// `messages`, `have` (ranges), `want` (ranges), `graft_authors` or `prune_authors`.
        what: &'static str,
        /// How many it carries.
        count: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The stream failed or ended inside a frame (not a violation).
    Io(std::io::Error),
}

impl FrameError {
    /// Whether this is a protocol violation by the sender (everything but I/O).
    pub fn is_violation(&self) -> bool {
        !matches!(self, FrameError::Io(_))
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame length {len} exceeds max_frame_size {max}")
            }
            FrameError::NonMinimalPrefix => write!(f, "frame length prefix is not minimal"),
            FrameError::PrefixOverflow => write!(f, "frame length prefix overflows 64 bits"),
            FrameError::Decode(e) => write!(f, "frame does not decode: {e}"),
            FrameError::Envelope { index, error } => write!(f, "message {index}: {error}"),
            FrameError::DigestAuthorLength { field, actual } => {
                write!(f, "{field} digest author is {actual} bytes, expected 32")
            }
            FrameError::ControlAuthorLength { field, actual } => {
                write!(
                    f,
                    "{field} entry is {actual} bytes, expected a 32-byte author"
                )
            }
            FrameError::Ranges { field, error } => write!(f, "{field} digest: {error}"),
            FrameError::TooMany { what, count, max } => {
                write!(f, "frame carries {count} {what} entries, limit {max}")
            }
            FrameError::Io(e) => write!(f, "stream error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Decode(e) => Some(e),
            FrameError::Envelope { error, .. } => Some(error),
            FrameError::Ranges { error, .. } => Some(error),
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn digests_of_one_author_are_merged() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let frame = proto::Frame {
            have: [[1u64, 2], [5, 6], [1, 3]]
                .into_iter()
                .map(|r| proto::Digest {
                    author: Bytes::copy_from_slice(author.as_bytes()),
                    ranges: r.to_vec(),
                })
                .collect(),
            ..proto::Frame::default()
        };
        let limits = crate::Config::default().frame_limits();
        let decoded = Frame::decode(&frame.encode_to_vec(), &limits).unwrap();
        assert_eq!(decoded.have.len(), 1);
        assert_eq!(decoded.have[0].ranges.to_wire(), vec![1, 3, 5, 6]);
    }

    #[test]
    fn a_frame_budget_counts_bytes_and_envelopes() {
        let limits = FrameLimits {
            max_frame_size: 1_000,
            max_messages: 3,
            max_have_ranges: 10,
            max_want_ranges: 10,
        };
        // (budget, envelope sizes taken in turn, which fit)
        let table: [(FrameBudget, &[usize], &[bool]); 3] = [
            (
                FrameBudget::frame(&limits),
                &[500, 484, 1],
                &[true, true, false],
            ),
            (
                FrameBudget::answer(&limits),
                &[900, 30, 7],
                &[true, true, false],
            ),
            (
                FrameBudget::catch_up(&limits),
                &[100, 100, 100, 100],
                &[true, true, true, false],
            ),
        ];
        for (i, (mut budget, sizes, fits)) in table.into_iter().enumerate() {
            let got: Vec<bool> = sizes.iter().map(|&len| budget.take(len)).collect();
            assert_eq!(got, fits, "row {i}");
        }
        let mut budget = FrameBudget::frame(&limits);
        budget.force(2_000);
        assert_eq!(budget.bytes(), 0);
        // An answer of one frame's worth is full; a lone small envelope is not.
        let largest = 200;
        assert!(FrameBudget::is_full_answer(&limits, largest, 3, 30));
        assert!(FrameBudget::is_full_answer(&limits, largest, 2, 700));
        assert!(!FrameBudget::is_full_answer(&limits, largest, 1, 100));
        assert!(!FrameBudget::is_full_answer(&limits, largest, 0, 0));
    }
}
