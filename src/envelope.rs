//! Signed envelopes: the signing bytes, strict verification and message ids (`docs/PROTOCOL.md` §1).

use crate::keys::{Keypair, PublicKey};
use crate::proto;
use bytes::Bytes;
use prost::Message as _;
use std::fmt;

/// The 16 ASCII bytes that start every signed message: a domain separator and version.
pub const SIGNING_CONTEXT: &[u8; 16] = b"secure-gossip/v1";

/// A message id: `author ‖ sequence`. Unique per message; an author never signs two
/// different messages with one id without proving that it misbehaved (an equivocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The message's author.
    pub author: PublicKey,
    /// The author's sequence number of the message (`>= 1`).
    pub sequence: u64,
}

impl MessageId {
    /// The 40-byte wire form: the author's 32 bytes, then the sequence as 8 big-endian bytes.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..32].copy_from_slice(self.author.as_bytes());
        out[32..].copy_from_slice(&self.sequence.to_be_bytes());
        out
    }

    /// The id's 8-byte tag (`docs/PROTOCOL.md` §1, "Tags"): the first 8 bytes of
    /// SHA-256([`TAG_CONTEXT`] ‖ author ‖ sequence as 8 big-endian bytes), read as a
    /// big-endian integer. A peer that reads tags is announced new ids by their tags alone.
    pub fn tag(&self) -> u64 {
        use sha2::Digest as _;
        let hash = sha2::Sha256::new()
            .chain_update(TAG_CONTEXT)
            .chain_update(self.to_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        u64::from_be_bytes(first)
    }
}

/// The 20 ASCII bytes that start what a tag hashes ([`MessageId::tag`]).
pub const TAG_CONTEXT: &[u8; 20] = b"secure-gossip/tag/v1";

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.author, self.sequence)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// A message as delivered to the application: its author's signature has been verified.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// `author ‖ sequence`.
    pub id: MessageId,
    /// Who signed it.
    pub author: PublicKey,
    /// The author's sequence number.
    pub sequence: u64,
    /// The author's clock when it was published, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The application's bytes.
    pub payload: Bytes,
    /// The author's ed25519 signature over [`Envelope::signing_bytes`]: the proof, to keep or
    /// to serve elsewhere ([`Message::envelope`]).
    pub signature: [u8; 64],
}

impl Message {
    /// The signed envelope this message came in, as it travels; [`Envelope::to_bytes`] gives
    /// its wire form, which any node can check again ([`Envelope::verify`]) and import.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            author: self.author,
            sequence: self.sequence,
            timestamp: self.timestamp,
            payload: self.payload.clone(),
            signature: self.signature,
        }
    }
}

/// One envelope as it travels: fields checked for length, signature not yet verified
/// unless it came from [`Envelope::sign`] or passed [`Envelope::verify`].
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    author: PublicKey,
    sequence: u64,
    timestamp: u64,
    payload: Bytes,
    signature: [u8; 64],
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id())
            .field("timestamp", &self.timestamp)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// Signs a new envelope. `sequence` must be at least 1.
    pub fn sign(
        keys: &Keypair,
        sequence: u64,
        timestamp: u64,
        payload: impl Into<Bytes>,
    ) -> Result<Envelope, EnvelopeError> {
        if sequence == 0 {
            return Err(EnvelopeError::ZeroSequence);
        }
        let mut envelope = Envelope {
            author: keys.public(),
            sequence,
            timestamp,
            payload: payload.into(),
            signature: [0; 64],
        };
        envelope.signature = keys.sign(&envelope.signing_bytes());
        Ok(envelope)
    }

    /// An envelope from its parts, signature unchecked (the simulator's forgers).
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn from_parts(
        author: PublicKey,
        sequence: u64,
        timestamp: u64,
        payload: Bytes,
        signature: [u8; 64],
    ) -> Envelope {
        Envelope {
            author,
            sequence,
            timestamp,
            payload,
            signature,
        }
    }

    /// `"secure-gossip/v1" ‖ author ‖ sequence (8, BE) ‖ timestamp (8, BE) ‖ payload`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len());
        out.extend_from_slice(SIGNING_CONTEXT);
        out.extend_from_slice(self.author.as_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Checks the signature with ed25519-dalek's `verify_strict`: canonical S, no small-order
    /// key or R, cofactorless equation. Every node accepts exactly the same set.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(self.author.as_bytes())
            .map_err(|_| EnvelopeError::InvalidSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signing_bytes(), &signature)
            .map_err(|_| EnvelopeError::InvalidSignature)
    }

    /// The message id, `author ‖ sequence`.
    pub fn id(&self) -> MessageId {
        MessageId {
            author: self.author,
            sequence: self.sequence,
        }
    }

    /// The author.
    pub fn author(&self) -> &PublicKey {
        &self.author
    }

    /// The author's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The author's timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The application's bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The 64-byte signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Whether `other` signs the same bytes (same id, timestamp and payload). Two envelopes
    /// with one id, valid signatures and different signing bytes are an equivocation.
    pub fn same_signed_content(&self, other: &Envelope) -> bool {
        self.id() == other.id()
            && self.timestamp == other.timestamp
            && self.payload == other.payload
    }

    /// The canonical protobuf encoding of this envelope.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Decodes a protobuf `Envelope` and checks its field lengths and sequence. The signature
    /// is not checked: call [`Envelope::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let raw = proto::Envelope::decode(bytes).map_err(EnvelopeError::Decode)?;
        Envelope::try_from(raw)
    }

    /// The wire form: the canonical protobuf `Envelope` (`docs/PROTOCOL.md` §2), as
    /// [`Envelope::encode`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// Reads the wire form, as [`Envelope::decode`]: field lengths and sequence checked, the
    /// signature not (call [`Envelope::verify`], or import it into a node, which does).
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Envelope::decode(bytes)
    }

    /// The size of [`Envelope::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        use prost::encoding::encoded_len_varint as varint;
        let optional = |v: u64| if v == 0 { 0 } else { 1 + varint(v) };
        let payload = match self.payload.len() {
            0 => 0,
            n => 1 + varint(n as u64) + n,
        };
        (2 + 32) + optional(self.sequence) + optional(self.timestamp) + payload + (2 + 64)
    }

    /// The verified message this envelope carries.
    pub(crate) fn to_message(&self) -> Message {
        Message {
            id: self.id(),
            author: self.author,
            sequence: self.sequence,
            timestamp: self.timestamp,
            payload: self.payload.clone(),
            signature: self.signature,
        }
    }

    pub(crate) fn to_proto(&self) -> proto::Envelope {
        proto::Envelope {
            author: Bytes::copy_from_slice(self.author.as_bytes()),
            sequence: self.sequence,
            timestamp: self.timestamp,
            payload: self.payload.clone(),
            signature: Bytes::copy_from_slice(&self.signature),
        }
    }
}

impl TryFrom<proto::Envelope> for Envelope {
    type Error = EnvelopeError;

    fn try_from(raw: proto::Envelope) -> Result<Self, EnvelopeError> {
        let author: [u8; 32] =
            raw.author[..]
                .try_into()
                .map_err(|_| EnvelopeError::AuthorLength {
                    actual: raw.author.len(),
                })?;
        let signature: [u8; 64] =
            raw.signature[..]
                .try_into()
                .map_err(|_| EnvelopeError::SignatureLength {
                    actual: raw.signature.len(),
                })?;
        if raw.sequence == 0 {
            return Err(EnvelopeError::ZeroSequence);
        }
        Ok(Envelope {
            author: PublicKey::from_bytes(author),
            sequence: raw.sequence,
            timestamp: raw.timestamp,
            payload: raw.payload,
            signature,
        })
    }
}

/// Why an envelope is not acceptable. Every variant is a protocol violation when it comes
/// from the network (`docs/PROTOCOL.md` §1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not a protobuf `Envelope`.
    Decode(prost::DecodeError),
    /// `author` is not 32 bytes.
    AuthorLength {
        /// Its length.
        actual: usize,
    },
    /// `signature` is not 64 bytes.
    SignatureLength {
        /// Its length.
        actual: usize,
    },
    /// `sequence` is 0; sequences start at 1.
    ZeroSequence,
    /// Strict ed25519 verification failed (wrong signature, unusable or small-order key,
    /// small-order R, or non-canonical S).
    InvalidSignature,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Decode(e) => write!(f, "envelope does not decode: {e}"),
            EnvelopeError::AuthorLength { actual } => {
                write!(f, "envelope author is {actual} bytes, expected 32")
            }
            EnvelopeError::SignatureLength { actual } => {
                write!(f, "envelope signature is {actual} bytes, expected 64")
            }
            EnvelopeError::ZeroSequence => write!(f, "envelope sequence is 0, must be >= 1"),
            EnvelopeError::InvalidSignature => {
                write!(f, "envelope signature fails strict ed25519 verification")
            }
        }
    }
}

impl std::error::Error for EnvelopeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EnvelopeError::Decode(e) => Some(e),
            _ => None,
        }
    }
}
