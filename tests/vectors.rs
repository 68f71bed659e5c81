//! Every vector in `tests/vectors/` (made by an independent implementation): valid ones are
//! reproduced byte for byte, invalid ones are rejected with the right kind of error, whether
//! their bytes arrive at once or one at a time.

use futures::AsyncRead;
use secure_gossip::codec::{decode_framed, encode_frame, read_frame};
use secure_gossip::{
    Config, Envelope, EnvelopeError, Frame, FrameError, Keypair, MessageId, PublicKey, RangeSet,
};
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn hex(s: &Value) -> Vec<u8> {
    let s = s.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn num(v: &Value) -> u64 {
    v.as_str().expect("decimal string").parse().unwrap()
}

fn seed(v: &Value) -> [u8; 32] {
    hex(v).try_into().unwrap()
}

fn limits() -> secure_gossip::FrameLimits {
    Config::default().frame_limits()
}

#[test]
fn valid_envelopes_are_reproduced_byte_for_byte() {
    let file = load("envelopes.json");
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 7, "the set of envelope vectors changed");
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let keys = Keypair::from_seed(&seed(&v["seed_hex"]));
        assert_eq!(
            keys.public().as_bytes().to_vec(),
            hex(&v["author_hex"]),
            "{name}"
        );
        assert_eq!(
            keys.public().to_string(),
            v["author_text"].as_str().unwrap(),
            "{name}"
        );
        let envelope = Envelope::sign(
            &keys,
            num(&v["sequence"]),
            num(&v["timestamp"]),
            hex(&v["payload_hex"]),
        )
        .unwrap();
        assert_eq!(
            envelope.signing_bytes(),
            hex(&v["signing_bytes_hex"]),
            "{name}"
        );
        assert_eq!(
            envelope.signature().to_vec(),
            hex(&v["signature_hex"]),
            "{name}"
        );
        assert_eq!(envelope.encode(), hex(&v["envelope_pb_hex"]), "{name}");
        assert_eq!(envelope.encoded_len(), envelope.encode().len(), "{name}");
        assert_eq!(
            envelope.id().to_bytes().to_vec(),
            hex(&v["message_id_hex"]),
            "{name}"
        );
        let decoded = Envelope::decode(&hex(&v["envelope_pb_hex"])).unwrap();
        assert_eq!(decoded, envelope, "{name}");
        decoded.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// The vector's `check` for an envelope error.
fn check_of(error: &EnvelopeError) -> &'static str {
    match error {
        EnvelopeError::Decode(_) => "decode",
        EnvelopeError::AuthorLength { .. } | EnvelopeError::SignatureLength { .. } => {
            "field_length"
        }
        EnvelopeError::ZeroSequence => "sequence",
        EnvelopeError::InvalidSignature => "signature",
        _ => "other",
    }
}

#[test]
fn invalid_envelopes_are_rejected_by_the_named_check() {
    let file = load("invalid.json");
    let vectors = file["vectors"].as_array().unwrap();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let check = v["check"].as_str().unwrap();
        let bytes = hex(&v["envelope_pb_hex"]);
        let error = Envelope::decode(&bytes)
            .and_then(|e| e.verify())
            .expect_err(name);
        assert_eq!(check_of(&error), check, "{name}: {error}");

        // The same bytes as the only message of a framed Frame: refused by the frame decoder
        // (decode, field_length, sequence) or by verification (signature).
        match decode_framed(&hex(&v["framed_hex"]), &limits()) {
            Ok(frame) => {
                assert_eq!(check, "signature", "{name}");
                assert_eq!(frame.messages.len(), 1);
                assert_eq!(
                    frame.messages[0].verify(),
                    Err(EnvelopeError::InvalidSignature)
                );
            }
            Err(FrameError::Decode(_)) => assert_eq!(check, "decode", "{name}"),
            Err(FrameError::Envelope { error, .. }) => {
                assert_eq!(check_of(&error), check, "{name}")
            }
            Err(other) => panic!("{name}: unexpected {other}"),
        }
    }
}

fn digests(v: &Value) -> Vec<(Vec<u8>, Vec<u64>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let ranges = d["ranges"].as_array().unwrap().iter().map(num).collect();
            (hex(&d["author_hex"]), ranges)
        })
        .collect()
}

fn frame_digests(ds: &[secure_gossip::Digest]) -> Vec<(Vec<u8>, Vec<u64>)> {
    ds.iter()
        .map(|d| (d.author.as_bytes().to_vec(), d.ranges.to_wire()))
        .collect()
}

#[test]
fn valid_frames_decode_and_re_encode_byte_for_byte() {
    let file = load("frames.json");
    for v in file["valid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let framed = hex(&v["framed_hex"]);
        let frame = decode_framed(&framed, &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = &v["decoded"];
        let messages: Vec<Vec<u8>> = d["messages"].as_array().unwrap().iter().map(hex).collect();
        assert_eq!(
            frame
                .messages
                .iter()
                .map(Envelope::encode)
                .collect::<Vec<_>>(),
            messages,
            "{name}"
        );
        assert_eq!(frame_digests(&frame.have), digests(&d["have"]), "{name}");
        assert_eq!(frame_digests(&frame.want), digests(&d["want"]), "{name}");
        assert_eq!(frame.complete, d["complete"].as_bool().unwrap(), "{name}");

        // Re-encoding from the decoded fields gives the canonical bytes.
        let rebuilt = Frame {
            messages: messages
                .iter()
                .map(|m| Envelope::decode(m).unwrap())
                .collect(),
            have: digests(&d["have"]).into_iter().map(digest).collect(),
            want: digests(&d["want"]).into_iter().map(digest).collect(),
            complete: d["complete"].as_bool().unwrap(),
            ..Frame::default()
        };
        if name != "unknown_fields_ignored" {
            assert_eq!(rebuilt.encode(), hex(&v["frame_pb_hex"]), "{name}");
            assert_eq!(encode_frame(&rebuilt), framed, "{name}");
            assert_eq!(rebuilt.encoded_len(), rebuilt.encode().len(), "{name}");
        }
        assert_eq!(rebuilt, frame, "{name}");
    }
}

fn digest((author, ranges): (Vec<u8>, Vec<u64>)) -> secure_gossip::Digest {
    secure_gossip::Digest {
        author: PublicKey::from_bytes(author.try_into().unwrap()),
        ranges: RangeSet::from_wire(&ranges).unwrap(),
    }
}

/// A reader that hands out one byte per poll, as a slow peer would.
struct OneByteAtATime<'a>(&'a [u8]);

impl AsyncRead for OneByteAtATime<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.0.is_empty() || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(1))
    }
}

fn reason_of(error: &FrameError) -> &'static str {
    match error {
        FrameError::TooLarge { .. } => "oversize",
        FrameError::NonMinimalPrefix | FrameError::PrefixOverflow | FrameError::Decode(_) => {
            "malformed"
        }
        FrameError::Ranges { .. } => "bad_ranges",
        FrameError::DigestAuthorLength { .. } => "bad_field_length",
        _ => "other",
    }
}

#[test]
fn invalid_frames_are_refused_at_once_and_byte_by_byte() {
    let file = load("frames.json");
    for v in file["invalid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let reason = v["reason"].as_str().unwrap();
        let bytes = hex(&v["framed_hex"]);
        let at_once = decode_framed(&bytes, &limits()).expect_err(name);
        assert_eq!(reason_of(&at_once), reason, "{name}: {at_once}");
        if let FrameError::TooLarge { len, .. } = at_once {
            assert_eq!(len, num(&v["claimed_length"]), "{name}");
        }
        let streamed =
            futures::executor::block_on(read_frame(&mut OneByteAtATime(&bytes), &limits()))
                .expect_err(name);
        assert_eq!(reason_of(&streamed), reason, "{name}: {streamed}");
    }
}

#[test]
fn author_texts_parse_strictly() {
    let file = load("author_text.json");
    for v in file["valid"].as_array().unwrap() {
        let text = v["text"].as_str().unwrap();
        let key: PublicKey = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(key.as_bytes().to_vec(), hex(&v["hex"]), "{text}");
        assert_eq!(key.to_string(), text.trim_start_matches('@'));
    }
    for v in file["invalid"].as_array().unwrap() {
        let text = v["text"].as_str().unwrap();
        assert!(
            text.parse::<PublicKey>().is_err(),
            "{text:?} ({}) was accepted",
            v["why"]
        );
    }
}

#[test]
fn keys_and_ssb_key_files_match() {
    let file = load("keys.json");
    for v in file["keys"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let keys = Keypair::from_seed(&seed(&v["seed_hex"]));
        assert_eq!(
            keys.public().as_bytes().to_vec(),
            hex(&v["public_hex"]),
            "{name}"
        );
        assert_eq!(
            keys.public().to_string(),
            v["author_text"].as_str().unwrap()
        );
        assert_eq!(keys.public().to_ssb_id(), v["id"].as_str().unwrap());
        // The whole file, exactly as ssb-keys writes it.
        assert_eq!(
            keys.to_key_file(),
            v["key_file"].as_str().unwrap(),
            "{name}"
        );
        let json: Value = serde_json::from_str(&keys.to_ssb_json()).unwrap();
        assert_eq!(json, v["key_json"], "{name}");
        let read = Keypair::from_key_file(v["key_file"].as_str().unwrap()).unwrap();
        assert_eq!(read.seed(), keys.seed(), "{name}");
    }
}

#[test]
fn message_ids_are_author_then_big_endian_sequence() {
    let author = Keypair::from_seed(&[1; 32]).public();
    let id = MessageId {
        author,
        sequence: 0x0102_0304_0506_0708,
    };
    assert_eq!(&id.to_bytes()[32..], &[1, 2, 3, 4, 5, 6, 7, 8]);
}

/// A v1 decoder of the frame: fields 1 to 4 only (it skips tree control, as an old peer).
#[derive(Clone, PartialEq, prost::Message)]
struct V1Frame {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<secure_gossip::proto::Envelope>,
    #[prost(message, repeated, tag = "2")]
    have: Vec<secure_gossip::proto::Digest>,
    #[prost(message, repeated, tag = "3")]
    want: Vec<secure_gossip::proto::Digest>,
    #[prost(bool, tag = "4")]
    complete: bool,
}

/// A decoder of the frame with the tree flags but not the author lists (fields 1 to 7).
#[derive(Clone, PartialEq, prost::Message)]
struct FlagsFrame {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<secure_gossip::proto::Envelope>,
    #[prost(message, repeated, tag = "2")]
    have: Vec<secure_gossip::proto::Digest>,
    #[prost(message, repeated, tag = "3")]
    want: Vec<secure_gossip::proto::Digest>,
    #[prost(bool, tag = "4")]
    complete: bool,
    #[prost(bool, tag = "6")]
    prune: bool,
    #[prost(bool, tag = "7")]
    graft: bool,
}

fn keys(value: &serde_json::Value) -> Vec<secure_gossip::PublicKey> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|k| secure_gossip::PublicKey::from_bytes(hex(k).try_into().unwrap()))
        .collect()
}

#[test]
fn tree_control_vectors_round_trip_and_a_v1_decoder_reads_the_rest() {
    use prost::Message as _;
    let file = load("tree.json");
    for v in file["vectors"].as_array().unwrap() {
        let (name, framed, frame) = decode_with_control(v);
        let d = &v["decoded"];
        assert_eq!(frame.graft_authors, keys(&d["graft_authors_hex"]), "{name}");
        assert_eq!(frame.prune_authors, keys(&d["prune_authors_hex"]), "{name}");
        assert_eq!(
            encode_frame(&frame),
            framed,
            "{name}: canonical re-encoding"
        );
        // A peer that knows the flags only: the same frame without the author lists.
        let flags = FlagsFrame::decode(&hex(&v["frame_pb_hex"])[..]).unwrap();
        assert_eq!(
            (flags.prune, flags.graft),
            (frame.prune, frame.graft),
            "{name}"
        );
        let without_lists = secure_gossip::Frame {
            graft_authors: Vec::new(),
            prune_authors: Vec::new(),
            ..frame.clone()
        };
        assert_eq!(flags.encode_to_vec(), without_lists.encode(), "{name}");
        // An old peer: the same frame without the tree fields.
        let old = V1Frame::decode(&hex(&v["frame_pb_hex"])[..]).unwrap();
        assert!(old.messages.is_empty(), "{name}");
        assert_eq!(old.have.len(), frame.have.len(), "{name}");
        assert_eq!(old.want.len(), frame.want.len(), "{name}");
        assert_eq!(old.complete, frame.complete, "{name}");
        let stripped = secure_gossip::Frame {
            prune: false,
            graft: false,
            graft_authors: Vec::new(),
            prune_authors: Vec::new(),
            ..frame.clone()
        };
        assert_eq!(
            old.encode_to_vec(),
            stripped.encode(),
            "{name}: what a v1 peer reads is the frame without tree control"
        );
    }
}

#[test]
fn tree_control_invalid_vectors_are_violations() {
    let file = load("tree.json");
    for v in file["invalid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let body = hex(&v["frame_pb_hex"]);
        let error = secure_gossip::Frame::decode(&body, &limits()).expect_err(name);
        assert!(error.is_violation(), "{name}");
        let expected = v["expected_error"].as_str().unwrap();
        let got = match &error {
            secure_gossip::FrameError::TooMany { what, .. } => format!("TooMany {what}"),
            secure_gossip::FrameError::ControlAuthorLength { field, .. } => {
                format!("ControlAuthorLength {field}")
            }
            other => format!("{other:?}"),
        };
        assert_eq!(got, expected, "{name}");
    }
}

/// A vector's name, framed bytes and decoded frame, its digests and flags checked against
/// `decoded`.
fn decode_with_control(v: &Value) -> (&str, Vec<u8>, secure_gossip::Frame) {
    let name = v["name"].as_str().unwrap();
    let framed = hex(&v["framed_hex"]);
    let frame = decode_framed(&framed, &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let d = &v["decoded"];
    assert_eq!(frame_digests(&frame.have), digests(&d["have"]), "{name}");
    assert_eq!(frame_digests(&frame.want), digests(&d["want"]), "{name}");
    assert_eq!(frame.complete, d["complete"].as_bool().unwrap(), "{name}");
    assert_eq!(frame.prune, d["prune"].as_bool().unwrap(), "{name}");
    assert_eq!(frame.graft, d["graft"].as_bool().unwrap(), "{name}");
    (name, framed, frame)
}

fn tag_list(value: &serde_json::Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn tags_are_reproduced_and_tag_frames_round_trip() {
    use prost::Message as _;
    let file = load("tags.json");
    for v in file["tags"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let id = secure_gossip::MessageId {
            author: secure_gossip::PublicKey::from_bytes(hex(&v["author_hex"]).try_into().unwrap()),
            sequence: v["sequence"].as_str().unwrap().parse().unwrap(),
        };
        let tag: u64 = v["tag"].as_str().unwrap().parse().unwrap();
        assert_eq!(id.tag(), tag, "{name}");
        assert_eq!(tag.to_be_bytes().to_vec(), hex(&v["tag_be_hex"]), "{name}");
    }
    for v in file["vectors"].as_array().unwrap() {
        let (name, framed, frame) = decode_with_control(v);
        let d = &v["decoded"];
        assert_eq!(frame.have_tags, tag_list(&d["have_tags"]), "{name}");
        assert_eq!(frame.want_tags, tag_list(&d["want_tags"]), "{name}");
        assert_eq!(
            frame.reads_tags,
            d["reads_tags"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            encode_frame(&frame),
            framed,
            "{name}: canonical re-encoding"
        );
        assert_eq!(frame.encoded_len(), frame.encode().len(), "{name}");
        // A peer without tags skips fields 10 to 12 and reads the rest.
        let flags = FlagsFrame::decode(&hex(&v["frame_pb_hex"])[..]).unwrap();
        let without_tags = secure_gossip::Frame {
            have_tags: Vec::new(),
            want_tags: Vec::new(),
            reads_tags: false,
            ..frame.clone()
        };
        assert_eq!(flags.encode_to_vec(), without_tags.encode(), "{name}");
    }
}

#[test]
fn tag_invalid_vectors_are_violations() {
    let file = load("tags.json");
    for v in file["invalid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let mut body = hex(&v["frame_pb_hex"]);
        let unit = hex(&v["repeat_hex"]);
        for _ in 0..v["repeat_count"].as_u64().unwrap() {
            body.extend_from_slice(&unit);
        }
        let error = secure_gossip::Frame::decode(&body, &limits()).expect_err(name);
        assert!(error.is_violation(), "{name}");
        let got = match &error {
            secure_gossip::FrameError::TooMany { what, .. } => format!("TooMany {what}"),
            secure_gossip::FrameError::Decode(_) => "Decode".to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(got, v["expected_error"].as_str().unwrap(), "{name}");
    }
}
