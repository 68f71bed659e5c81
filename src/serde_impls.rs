//! `serde` support (feature `serde`) for the types an application keeps: [`PublicKey`] (its
//! text form, `<base64>.ed25519`), [`MessageId`] (`<author>#<sequence>`), [`Envelope`] (its
//! wire form) and [`Message`] (the wire form of its envelope).
//!
//! In human-readable formats (JSON, TOML) keys and ids are their text forms and envelopes
//! standard base64; in binary formats, bytes. Deserializing a [`Message`] verifies its
//! signature (`verify_strict`), so a deserialized `Message` is a verified one (its fields are
//! public: code that changes them afterwards changes that); an [`Envelope`] is not verified
//! (as from [`Envelope::from_bytes`]).

use crate::envelope::{Envelope, Message, MessageId};
use crate::keys::PublicKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(self.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            text.parse().map_err(de::Error::custom)
        } else {
            let bytes = d.deserialize_bytes(BytesVisitor)?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                de::Error::invalid_length(b.len(), &"a 32-byte ed25519 public key")
            })?;
            Ok(PublicKey::from_bytes(bytes))
        }
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.to_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            let (author, sequence) = text
                .rsplit_once('#')
                .ok_or_else(|| de::Error::custom("a message id is <author>#<sequence>"))?;
            let author = author.parse().map_err(de::Error::custom)?;
            let sequence: u64 = sequence.parse().map_err(de::Error::custom)?;
            if sequence == 0 {
                return Err(de::Error::custom("a message id's sequence is at least 1"));
            }
            Ok(MessageId { author, sequence })
        } else {
            let bytes = d.deserialize_bytes(BytesVisitor)?;
            let bytes: [u8; 40] = bytes.try_into().map_err(|b: Vec<u8>| {
                de::Error::invalid_length(b.len(), &"40 bytes: author, then sequence")
            })?;
            let mut author = [0u8; 32];
            author.copy_from_slice(&bytes[..32]);
            let mut sequence = [0u8; 8];
            sequence.copy_from_slice(&bytes[32..]);
            let sequence = u64::from_be_bytes(sequence);
            if sequence == 0 {
                return Err(de::Error::custom("a message id's sequence is at least 1"));
            }
            Ok(MessageId {
                author: PublicKey::from_bytes(author),
                sequence,
            })
        }
    }
}

fn serialize_wire<S: Serializer>(envelope: &Envelope, s: S) -> Result<S::Ok, S::Error> {
    let bytes = envelope.to_bytes();
    if s.is_human_readable() {
        s.serialize_str(&STANDARD.encode(bytes))
    } else {
        s.serialize_bytes(&bytes)
    }
}

fn deserialize_wire<'de, D: Deserializer<'de>>(d: D) -> Result<Envelope, D::Error> {
    let bytes = if d.is_human_readable() {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(de::Error::custom)?
    } else {
        d.deserialize_bytes(BytesVisitor)?
    };
    Envelope::from_bytes(&bytes).map_err(de::Error::custom)
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_wire(self, s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_wire(d)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_wire(&self.envelope(), s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let envelope = deserialize_wire(d)?;
        envelope.verify().map_err(de::Error::custom)?;
        Ok(envelope.to_message())
    }
}

/// Bytes, from a byte string or a sequence of bytes.
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn keys_ids_envelopes_and_messages_round_trip_in_json() {
        let keys = Keypair::from_seed(&[7; 32]);
        let envelope = Envelope::sign(&keys, 3, 1_750_000_000_000, b"hi".to_vec()).unwrap();
        let message = envelope.to_message();
        let json =
            serde_json::to_string(&(keys.public(), message.id, &envelope, &message)).unwrap();
        assert!(json.contains(".ed25519\""), "{json}");
        assert!(json.contains("#3\""), "{json}");
        let (key, id, env, msg): (PublicKey, MessageId, Envelope, Message) =
            serde_json::from_str(&json).unwrap();
        assert_eq!(
            (key, id, env, msg),
            (keys.public(), message.id, envelope, message)
        );
    }

    #[test]
    fn a_deserialized_message_is_verified_and_bad_input_is_an_error() {
        let keys = Keypair::from_seed(&[7; 32]);
        let envelope = Envelope::sign(&keys, 3, 1_750_000_000_000, b"hi".to_vec()).unwrap();
        let mut bytes = envelope.to_bytes();
        let at = bytes.windows(2).position(|w| w == b"hi").unwrap();
        bytes[at] = b'H';
        let altered = format!("\"{}\"", STANDARD.encode(&bytes));
        assert!(
            serde_json::from_str::<Envelope>(&altered).is_ok(),
            "decoded, not verified"
        );
        let e = serde_json::from_str::<Message>(&altered).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
        assert!(serde_json::from_str::<MessageId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<PublicKey>("\"abc.ed25519\"").is_err());
    }
}
