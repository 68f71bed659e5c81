//! Counts a frame's entries on the wire, before decoding: envelopes, `have` and `want`
//! ranges (a digest counts as at least one, a tag as one), and tree-control authors. A frame over a limit
//! is refused having cost one pass over its bytes and no allocation. Malformed protobuf is
//! left to the decoder, which refuses it at or before the point where this scan stopped, so
//! it never materialises more entries than the scan counted.

use super::{FrameError, FrameLimits, MAX_CONTROL_AUTHORS};

/// How deep groups (a deprecated wire type, skipped as unknown fields) may nest; the
/// protobuf decoder's own recursion limit.
const MAX_GROUP_DEPTH: u32 = 100;

/// Refuses `body` if it carries more entries than `limits` allow.
pub(super) fn check_counts(body: &[u8], limits: &FrameLimits) -> Result<(), FrameError> {
    let mut r = Reader(body);
    let (mut messages, mut have, mut want) = (0usize, 0usize, 0usize);
    let (mut grafts, mut prunes) = (0usize, 0usize);
    while !r.0.is_empty() {
        let Some((field, wire)) = r.key() else {
            return Ok(());
        };
        // A tag, unpacked (a decoder accepts both forms of a repeated scalar).
        let unpacked_tag = wire == 1 && matches!(field, 10 | 11);
        if wire != 2 && !unpacked_tag {
            if r.skip(field, wire, 0).is_none() {
                return Ok(());
            }
            continue;
        }
        let Some(value) = (if unpacked_tag { r.take(8) } else { r.bytes() }) else {
            return Ok(());
        };
        let (count, max, what) = match field {
            1 => (&mut messages, limits.max_messages, "messages"),
            2 | 10 => (&mut have, limits.max_have_ranges, "have"),
            3 | 11 => (&mut want, limits.max_want_ranges, "want"),
            8 => (&mut grafts, MAX_CONTROL_AUTHORS, "graft_authors"),
            9 => (&mut prunes, MAX_CONTROL_AUTHORS, "prune_authors"),
            _ => continue,
        };
        *count += match field {
            2 | 3 => digest_ranges(value),
            10 | 11 if !unpacked_tag => value.len().div_ceil(8),
            _ => 1,
        };
        if *count > max {
            return Err(FrameError::TooMany {
                what,
                count: *count,
                max,
            });
        }
    }
    Ok(())
}

/// The ranges a `Digest` body counts for: half its range values, at least one.
fn digest_ranges(body: &[u8]) -> usize {
    let mut r = Reader(body);
    let mut values = 0usize;
    while !r.0.is_empty() {
        let Some((field, wire)) = r.key() else {
            break;
        };
        match (field, wire) {
            (2, 2) => {
                let Some(packed) = r.bytes() else { break };
                values += packed.iter().filter(|b| **b < 0x80).count();
            }
            (2, 0) => {
                if r.varint().is_none() {
                    break;
                }
                values += 1;
            }
            _ => {
                if r.skip(field, wire, 0).is_none() {
                    break;
                }
            }
        }
    }
    values.div_ceil(2).max(1)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn key(&mut self) -> Option<(u64, u8)> {
        let key = self.varint()?;
        Some((key >> 3, (key & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn bytes(&mut self) -> Option<&[u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    /// Skips one field's value (a whole group for wire type 3).
    fn skip(&mut self, field: u64, wire: u8, depth: u32) -> Option<()> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            3 if depth < MAX_GROUP_DEPTH => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == 4 {
                    return (inner == field).then_some(());
                }
                self.skip(inner, inner_wire, depth + 1)?;
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_frame_size: 1 << 20,
        max_messages: 3,
        max_have_ranges: 4,
        max_want_ranges: 4,
    };

    #[test]
    fn empty_entries_are_counted_before_decoding() {
        let bomb = [0x0a, 0x00].repeat(4);
        assert!(matches!(
            check_counts(&bomb, &LIMITS),
            Err(FrameError::TooMany {
                what: "messages",
                count: 4,
                max: 3
            })
        ));
        // Empty digests count as one range each.
        let digests = [0x12, 0x00].repeat(5);
        assert!(matches!(
            check_counts(&digests, &LIMITS),
            Err(FrameError::TooMany {
                what: "have",
                count: 5,
                ..
            })
        ));
        // A group (an unknown field) in front does not hide them.
        let mut hidden = vec![0x4b, 0x08, 0x01, 0x4c];
        hidden.extend([0x1a, 0x00].repeat(5));
        assert!(matches!(
            check_counts(&hidden, &LIMITS),
            Err(FrameError::TooMany { what: "want", .. })
        ));
        // Packed ranges count as pairs: 8 values are 4 ranges, within the limit.
        let packed = [0x12, 0x0a, 0x12, 0x08, 1, 2, 4, 5, 7, 8, 10, 11];
        assert!(check_counts(&packed, &LIMITS).is_ok());
        // Tags count one each, packed (8 bytes each) or not.
        let mut tags = vec![0x52, 40];
        tags.extend([7u8; 40]);
        assert!(matches!(
            check_counts(&tags, &LIMITS),
            Err(FrameError::TooMany {
                what: "have",
                count: 5,
                ..
            })
        ));
        let mut unpacked = Vec::new();
        for _ in 0..5 {
            unpacked.push(0x59);
            unpacked.extend([7u8; 8]);
        }
        assert!(matches!(
            check_counts(&unpacked, &LIMITS),
            Err(FrameError::TooMany {
                what: "want",
                count: 5,
                ..
            })
        ));
        assert!(
            check_counts(&[0xff], &LIMITS).is_ok(),
            "malformed: left to the decoder"
        );
    }
}
