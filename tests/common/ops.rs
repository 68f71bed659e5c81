//! Engine inputs decoded from arbitrary bytes, for fuzzing (`fuzz/`, with libFuzzer) and for
//! the seeded property tests that run in `cargo test` (`tests/properties.rs`). One engine
//! under test meets a handful of peers that send it anything: valid and forged envelopes of
//! a few authors with any sequence and timestamp, digests with any ranges, raw frame bytes;
//! connections come and go, frames are dropped, time moves. After every input the engine's
//! invariants are checked, and every frame it sends must decode under its own limits.
//!
//! Every step is recorded as a [`Step`] (an engine [`Input`] or a command), so a run can be
//! replayed exactly ([`replay`]) and printed.

use secure_gossip::codec::decode_framed;
use secure_gossip::engine::{Engine, Input, Millis, Output};
use secure_gossip::proto;
use secure_gossip::{
    Bytes, Config, ConfigBuilder, Digest, Envelope, Frame, Keypair, MessageId, RangeSet, Stats,
    Validation,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// The engine's start time.
pub const T0: Millis = 1_750_000_000_000;

/// Reads parameters from the input; runs out into zeros.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize).min(max).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// A small config, so limits are reached with small inputs.
fn small() -> ConfigBuilder {
    let mut builder = Config::builder();
    builder
        .max_frame_size(4096)
        .max_payload_size(512)
        .max_messages_per_frame(8)
        .max_have_ranges_per_frame(16)
        .max_want_ranges_per_frame(8)
        .max_stored_messages(12)
        .max_stored_bytes(16 * 1024)
        .max_tracked_authors(4)
        .max_ranges_per_author(4)
        .max_ranges_per_peer(12)
        .max_queued_bytes(16 * 1024)
        .max_age(Duration::from_secs(60))
        .max_clock_skew(Duration::from_secs(5))
        .min_resync_interval(Duration::from_secs(1))
        .want_timeout(Duration::from_millis(100))
        .gossip_interval(Some(Duration::from_millis(50)))
        .start_sequence(1);
    builder
}

/// The small config.
pub fn config() -> Config {
    small().build().expect("a valid config")
}

/// The small config with application validation on.
pub fn validating() -> Config {
    let mut builder = small();
    builder
        .validate_messages(true)
        .max_pending_validations(6)
        .validation_timeout(Duration::from_secs(2));
    builder.build().expect("a valid config")
}

/// Sequences are small, so ranges collide and gaps form.
fn sequence(input: &mut Reader) -> u64 {
    match input.u8() % 8 {
        0 => u64::MAX - u64::from(input.u8() % 4),
        _ => u64::from(input.u16() % 64) + 1,
    }
}

fn ranges(input: &mut Reader) -> RangeSet {
    let mut set = RangeSet::new();
    for _ in 0..input.u8() % 6 {
        let start = sequence(input);
        let len = u64::from(input.u8() % 8);
        set.insert_range(start, start.saturating_add(len));
    }
    set
}

/// One recorded step of a run, at a time.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// An engine input (those a run makes are all cloneable).
    Connected(u8),
    Disconnected(u8),
    Frame(u8, Frame),
    FrameNotSent(u8, Frame),
    Round,
    Timeout,
    QueueDrained(u8),
    /// The publish command.
    Publish(Vec<u8>),
    /// A verdict on the held message at this position (validating runs only).
    Verdict(usize, Validation),
}

impl Step {
    fn position(&self, held: &[MessageId]) -> usize {
        match self {
            Step::Verdict(i, _) if !held.is_empty() => i % held.len(),
            _ => usize::MAX,
        }
    }

    /// Applies the step; `held` lists the messages delivered so far (what a verdict names).
    fn apply(&self, engine: &mut Engine<u8>, held: &[MessageId], now: Millis) {
        let input = match self.clone() {
            Step::Connected(peer) => Input::Connected { peer },
            Step::Disconnected(peer) => Input::Disconnected { peer },
            Step::Frame(peer, frame) => Input::Frame { peer, frame },
            Step::FrameNotSent(peer, frame) => Input::FrameNotSent { peer, frame },
            Step::Round => Input::Round,
            Step::Timeout => Input::Timeout,
            Step::QueueDrained(peer) => Input::QueueDrained { peer },
            Step::Publish(payload) => {
                let _ = engine.publish(payload, now);
                return;
            }
            Step::Verdict(_, verdict) => {
                if let Some(id) = held.get(self.position(held)) {
                    engine.report_validation(id, verdict, now);
                }
                return;
            }
        };
        engine.handle(input, now);
    }
}

/// A new engine under test.
fn engine(config: &Config) -> Engine<u8> {
    Engine::new(Keypair::from_seed(&[0; 32]), config.clone(), T0)
}

/// Runs the engine inputs that `data` encodes. Panics if an invariant breaks. Returns the
/// steps it took, with their times, and the engine's counters at the end.
pub fn run(data: &[u8]) -> (Vec<(Millis, Step)>, Stats) {
    run_with(data, &config())
}

/// [`run`] with `config`; with `validate_messages`, verdicts are among the steps.
pub fn run_with(data: &[u8], config: &Config) -> (Vec<(Millis, Step)>, Stats) {
    let config = config.clone();
    let validating = config.validate_messages();
    let mut delivered: Vec<MessageId> = Vec::new();
    let authors: Vec<Keypair> = (1..=6u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
    let mut engine = engine(&config);
    let limits = config.frame_limits();
    let mut now = T0;
    let mut connected = BTreeSet::new();
    let mut sent: Vec<(u8, Frame)> = Vec::new();
    let mut input = Reader(data);
    let mut trace = Vec::new();
    let mut steps = 0;
    while !input.done() && steps < 400 {
        steps += 1;
        let peer = input.u8() % 4;
        let kinds = if validating { 13 } else { 11 };
        let step = match input.u8() % kinds {
            0 => {
                connected.insert(peer);
                Step::Connected(peer)
            }
            1 => {
                connected.remove(&peer);
                Step::Disconnected(peer)
            }
            2 | 3 => {
                // Envelopes: valid, forged, any time.
                let mut messages = Vec::new();
                for _ in 0..input.u8() % 4 {
                    let keys = &authors[input.u8() as usize % authors.len()];
                    let seq = sequence(&mut input);
                    let skew = i64::from(input.u16() as i16) * 100;
                    let ts = now.saturating_add_signed(skew);
                    let payload = input.bytes(64);
                    let envelope = Envelope::sign(keys, seq, ts, payload).unwrap();
                    if input.u8() % 5 == 0 {
                        // Signed, then altered: the signature fails.
                        let forged = proto::Envelope {
                            author: Bytes::copy_from_slice(keys.public().as_bytes()),
                            sequence: seq,
                            timestamp: ts,
                            payload: Bytes::from_static(b"altered"),
                            signature: Bytes::copy_from_slice(envelope.signature()),
                        };
                        messages.push(Envelope::try_from(forged).unwrap());
                    } else {
                        messages.push(envelope);
                    }
                }
                let frame = Frame {
                    messages,
                    ..Frame::default()
                };
                Step::Frame(peer, frame)
            }
            4 | 5 => {
                let mut frame = Frame {
                    complete: input.u8() % 3 == 0,
                    ..Frame::default()
                };
                for _ in 0..input.u8() % 3 {
                    let author = authors[input.u8() as usize % authors.len()].public();
                    let digest = Digest {
                        author,
                        ranges: ranges(&mut input),
                    };
                    if input.u8() % 2 == 0 {
                        frame.have.push(digest);
                    } else {
                        frame.want.push(digest);
                    }
                }
                match Frame::decode(&frame.encode(), &limits) {
                    Ok(checked) => Step::Frame(peer, checked),
                    Err(_) => continue,
                }
            }
            6 => {
                // Raw bytes, as a hostile peer would send them.
                let bytes = input.bytes(255);
                let mut framed = Vec::new();
                secure_gossip::codec::encode_prefix(bytes.len() as u64, &mut framed);
                framed.extend_from_slice(&bytes);
                match decode_framed(&framed, &limits) {
                    Ok(frame) => Step::Frame(peer, frame),
                    Err(_) => continue,
                }
            }
            7 => Step::Publish(input.bytes(32)),
            8 => Step::Round,
            9 => {
                now += u64::from(input.u16() % 20_000);
                Step::Timeout
            }
            11 => {
                let verdict = match input.u8() % 3 {
                    0 => Validation::Accept,
                    1 => Validation::Reject,
                    _ => Validation::Ignore,
                };
                Step::Verdict(input.u8() as usize, verdict)
            }
            12 => Step::QueueDrained(peer),
            _ => {
                // The driver could not deliver one of the frames sent so far.
                if sent.is_empty() {
                    continue;
                }
                let (to, frame) = sent.swap_remove(input.u8() as usize % sent.len());
                Step::FrameNotSent(to, frame)
            }
        };
        step.apply(&mut engine, &delivered, now);
        trace.push((now, step));
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Send { peer, frame } => {
                    assert!(connected.contains(&peer), "sent to a peer never connected");
                    let encoded = frame.encode();
                    let decoded = Frame::decode(&encoded, &limits)
                        .expect("a node's own frames pass its own limits");
                    assert_eq!(decoded, frame);
                    if sent.len() < 64 {
                        sent.push((peer, frame));
                    }
                }
                Output::Violation { peer, .. } => {
                    connected.remove(&peer);
                }
                Output::Deliver { message, .. } => {
                    assert!(
                        !delivered.contains(&message.id),
                        "delivered twice: {:?}",
                        message.id
                    );
                    delivered.push(message.id);
                }
                _ => {}
            }
        }
        engine.check_invariants();
    }
    (trace, engine.stats())
}

/// Replays recorded steps on a new engine, checking the invariants after each; returns the
/// engine.
pub fn replay(trace: &[(Millis, Step)], config: &Config) -> Engine<u8> {
    let mut engine = engine(config);
    let mut delivered = Vec::new();
    for (now, step) in trace {
        step.apply(&mut engine, &delivered, *now);
        while let Some(output) = engine.poll_output() {
            if let Output::Deliver { message, .. } = output {
                delivered.push(message.id);
            }
        }
        engine.check_invariants();
    }
    engine
}
