//! Length-prefixed framing: an unsigned LEB128 length (minimal, at most `max_frame_size`),
//! then that many bytes of a protobuf `Frame` (`docs/PROTOCOL.md` §1).
//!
//! A length over the limit is refused as soon as the prefix shows it, before any buffer of
//! that size exists and without waiting for the body.

use crate::frame::{Frame, FrameError, FrameLimits};
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The most bytes an unsigned LEB128 `u64` takes.
const MAX_PREFIX_LEN: usize = 10;

/// What [`PrefixDecoder::push`] learned from one more byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// The prefix goes on; push the next byte.
    Incomplete,
    /// The prefix is complete: the body has this many bytes.
    Complete(usize),
}

/// Decodes a length prefix one byte at a time, refusing it the moment it is known bad.
#[derive(Debug, Clone)]
pub struct PrefixDecoder {
    max_frame_size: usize,
    value: u64,
    len: usize,
}

impl PrefixDecoder {
    /// A decoder that refuses lengths above `max_frame_size`.
    pub fn new(max_frame_size: usize) -> Self {
        PrefixDecoder {
            max_frame_size,
            value: 0,
            len: 0,
        }
    }

    /// Feeds one byte of the prefix.
    pub fn push(&mut self, byte: u8) -> Result<Prefix, FrameError> {
        let shift = 7 * self.len as u32;
        self.len += 1;
        let bits = u64::from(byte & 0x7f);
        if self.len == MAX_PREFIX_LEN && byte > 1 {
            // The tenth byte holds only bit 63.
            return Err(FrameError::PrefixOverflow);
        }
        self.value |= bits << shift;
        let done = byte & 0x80 == 0;
        if done && byte == 0 && self.len > 1 {
            return Err(FrameError::NonMinimalPrefix);
        }
        if done {
            if self.value > self.max_frame_size as u64 {
                return Err(FrameError::TooLarge {
                    len: self.value,
                    max: self.max_frame_size,
                });
            }
            return Ok(Prefix::Complete(self.value as usize));
        }
        if self.len == MAX_PREFIX_LEN {
            return Err(FrameError::PrefixOverflow);
        }
        Ok(Prefix::Incomplete)
    }
}

/// The minimal unsigned LEB128 encoding of `value`.
pub fn encode_prefix(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A frame as it goes on the wire: prefix, then body.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let body = frame.encode();
    let mut out = Vec::with_capacity(body.len() + MAX_PREFIX_LEN);
    encode_prefix(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// Decodes exactly one whole framed frame from `bytes` (prefix, body, nothing after).
#[cfg(any(test, feature = "test-utils"))]
pub fn decode_framed(bytes: &[u8], limits: &FrameLimits) -> Result<Frame, FrameError> {
    let mut prefix = PrefixDecoder::new(limits.max_frame_size);
    for (i, &byte) in bytes.iter().enumerate() {
        if let Prefix::Complete(len) = prefix.push(byte)? {
            let body = &bytes[i + 1..];
            if body.len() != len {
                let kind = if body.len() < len {
                    std::io::ErrorKind::UnexpectedEof
                } else {
                    std::io::ErrorKind::InvalidData // bytes after the frame
                };
                return Err(FrameError::Io(kind.into()));
            }
            return Frame::decode(body, limits);
        }
    }
    Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()))
}

/// Reads one frame. `Ok(None)` when the stream ends cleanly between frames.
#[cfg(any(test, feature = "test-utils"))]
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &FrameLimits,
) -> Result<Option<Frame>, FrameError> {
    Ok(read_frame_sized(reader, limits)
        .await?
        .map(|(frame, _)| frame))
}

/// Reads one frame and says how many bytes it took on the wire (prefix included).
pub async fn read_frame_sized<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &FrameLimits,
) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut prefix_len = 0;
    let mut prefix = PrefixDecoder::new(limits.max_frame_size);
    let mut first = true;
    let len = loop {
        let mut byte = [0u8; 1];
        let n = reader.read(&mut byte).await.map_err(FrameError::Io)?;
        if n == 0 {
            if first {
                return Ok(None);
            }
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        first = false;
        prefix_len += 1;
        if let Prefix::Complete(len) = prefix.push(byte[0])? {
            break len;
        }
    };
    // `len` is at most `max_frame_size` (checked by the prefix decoder), and the buffer only
    // grows as bytes arrive: a peer that claims a large frame and then trickles it holds no
    // more memory than it has sent.
    let mut body = Vec::new();
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(FrameError::Io)?;
    if body.len() < len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Frame::decode(&body, limits).map(|frame| Some((frame, prefix_len + len)))
}

/// Writes one frame as made by [`encode_frame`] (prefix and body) and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    framed: &[u8],
) -> std::io::Result<()> {
    writer.write_all(framed).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_frame_size: 1 << 20,
        max_messages: 1024,
        max_have_ranges: 1024,
        max_want_ranges: 1024,
    };

    #[test]
    fn prefixes_round_trip_minimally() {
        for value in [0u64, 1, 127, 128, 300, 16_383, 16_384, 1 << 20] {
            let mut out = Vec::new();
            encode_prefix(value, &mut out);
            let mut decoder = PrefixDecoder::new(1 << 20);
            let mut result = Prefix::Incomplete;
            for &b in &out {
                result = decoder.push(b).unwrap();
            }
            assert_eq!(result, Prefix::Complete(value as usize));
        }
    }

    #[test]
    fn an_oversize_prefix_is_refused_at_its_last_byte() {
        // 2^30 claimed: refused as soon as the prefix ends, before any body byte.
        let mut decoder = PrefixDecoder::new(1 << 20);
        for _ in 0..4 {
            assert_eq!(decoder.push(0x80).unwrap(), Prefix::Incomplete);
        }
        assert!(matches!(
            decoder.push(0x04),
            Err(FrameError::TooLarge {
                len: 0x4000_0000,
                max: 1_048_576
            })
        ));
    }

    #[test]
    fn an_empty_stream_is_a_clean_end_and_a_cut_frame_is_an_error() {
        futures::executor::block_on(async {
            let mut empty: &[u8] = &[];
            assert!(read_frame(&mut empty, &LIMITS).await.unwrap().is_none());
            let mut cut: &[u8] = &[0x02, 0x20];
            assert!(matches!(
                read_frame(&mut cut, &LIMITS).await,
                Err(FrameError::Io(_))
            ));
        });
    }
}
