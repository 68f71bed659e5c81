//! The fuzz targets' properties as seeded tests that run in `cargo test` (the fuzzers
//! themselves, in `fuzz/`, need nightly): frame decoding never panics and round-trips, and
//! any sequence of engine inputs keeps every invariant.

mod common;

use common::seed_from_env;
use secure_gossip::codec::{decode_framed, encode_frame};
use secure_gossip::sim::Rng;
use secure_gossip::{Config, Frame};

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.index(max + 1);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn any_sequence_of_engine_inputs_keeps_every_invariant() {
    let seed = seed_from_env(1);
    for case in 0..1_000u64 {
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(case));
        let data = random_bytes(&mut rng, 4096);
        let result = std::panic::catch_unwind(|| common::ops::run(&data));
        assert!(
            result.is_ok(),
            "case {case} failed: replay with SEED={seed} (input {} bytes)",
            data.len()
        );
    }
}

/// A run's recorded inputs, replayed on a new engine, bring it to the same state: the
/// recording is complete and the engine deterministic, so a failing run can be kept as its
/// inputs.
#[test]
fn recorded_engine_inputs_replay_to_the_same_state() {
    let seed = seed_from_env(3);
    for case in 0..100u64 {
        let mut rng = Rng::new(seed.wrapping_mul(7_919).wrapping_add(case));
        let data = random_bytes(&mut rng, 4096);
        let config = if case % 2 == 0 {
            common::ops::config()
        } else {
            common::ops::validating()
        };
        let (trace, stats) = common::ops::run_with(&data, &config);
        let replayed = common::ops::replay(&trace, &config);
        assert_eq!(
            replayed.stats(),
            stats,
            "case {case} (SEED={seed}): {} steps replayed differently",
            trace.len()
        );
    }
}

/// The same with application validation on: verdicts (accept, reject, ignore) and timeouts
/// among the inputs, every invariant kept and no message delivered twice.
#[test]
fn any_sequence_of_inputs_with_validation_keeps_every_invariant() {
    let seed = seed_from_env(4);
    let config = common::ops::validating();
    for case in 0..500u64 {
        let mut rng = Rng::new(seed.wrapping_mul(104_729).wrapping_add(case));
        let data = random_bytes(&mut rng, 4096);
        let result = std::panic::catch_unwind(|| common::ops::run_with(&data, &config));
        assert!(
            result.is_ok(),
            "case {case} failed: replay with SEED={seed} (input {} bytes)",
            data.len()
        );
    }
}

#[test]
fn frame_decoding_never_panics_and_round_trips() {
    let seed = seed_from_env(2);
    let limits = Config::default().frame_limits();
    let mut rng = Rng::new(seed);
    // Valid frames, mutated byte by byte, and random bytes.
    let valid = {
        let mut frame = Frame::default();
        let keys = secure_gossip::Keypair::from_seed(&[5; 32]);
        frame.messages.push(
            secure_gossip::Envelope::sign(&keys, 3, 1_750_000_000_000, b"x".to_vec()).unwrap(),
        );
        frame.have.push(secure_gossip::Digest {
            author: keys.public(),
            ranges: secure_gossip::RangeSet::from_range(1, 9),
        });
        frame.complete = true;
        encode_frame(&frame)
    };
    for case in 0..20_000u64 {
        let mut bytes = if case % 2 == 0 {
            valid.clone()
        } else {
            random_bytes(&mut rng, 64)
        };
        for _ in 0..rng.index(4) {
            if !bytes.is_empty() {
                let i = rng.index(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
        }
        if let Ok(frame) = decode_framed(&bytes, &limits) {
            let again = decode_framed(&encode_frame(&frame), &limits)
                .unwrap_or_else(|e| panic!("seed {seed} case {case}: re-encoding fails: {e}"));
            assert_eq!(again, frame, "seed {seed} case {case}");
        }
    }
}

/// Found by `cargo fuzz` (engine_inputs): a frame whose first envelope was a duplicate over an
/// eager link (queuing a prune) and whose next was forged: the prune went to the peer removed
/// for the violation.
#[test]
fn nothing_is_sent_to_a_peer_removed_within_the_same_input() {
    common::ops::run(&[
        0x02, 0x00, 0x42, 0x02, 0x3a, 0x02, 0xff, 0x28, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x09, 0xf9,
        0xff, 0xff, 0x28, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xf9, 0xff, 0xff,
        0x28, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x30, 0x07, 0x00, 0x00, 0x47,
        0x0d, 0x0d, 0x0d, 0x0d, 0x03, 0x04, 0x5d, 0x01,
    ]);
}
