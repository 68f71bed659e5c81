//! Signature verification throughput: `Envelope::verify` (what every connection's handler
//! runs, on its own task) against raw ed25519-dalek `verify_strict`, on 1 and 2 threads.
//!
//! ```text
//! cargo bench --bench verify
//! ```
//!
//! Prints envelopes verified per second. The handlers verify on their connections' tasks,
//! which the runtime spreads over every core; two threads here stand for two busy
//! connections.

use ed25519_dalek::{Signature, VerifyingKey};
use secure_gossip::{Envelope, Keypair};
use std::time::Instant;

const PER_THREAD: usize = 20_000;

fn envelopes(n: usize) -> Vec<Envelope> {
    let keys: Vec<Keypair> = (0..16u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
    (0..n)
        .map(|i| {
            Envelope::sign(
                &keys[i % keys.len()],
                i as u64 + 1,
                1_750_000_000_000,
                vec![7u8; 256],
            )
            .unwrap()
        })
        .collect()
}

/// Runs `work` on `threads` threads at once, each over its own `PER_THREAD` items; returns
/// items per second over all threads.
fn rate<T: Sync>(items: &[Vec<T>], work: impl Fn(&T) -> bool + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for chunk in items {
            let work = &work;
            s.spawn(move || {
                for item in chunk {
                    assert!(work(item));
                }
            });
        }
    });
    (items.len() * PER_THREAD) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "verification throughput, {PER_THREAD} envelopes of 256 bytes per thread ({cores} cores here)"
    );
    println!("| threads | raw verify_strict / s | Envelope::verify / s | ratio |");
    println!("|---|---|---|---|");
    for threads in [1usize, 2] {
        let sets: Vec<Vec<Envelope>> = (0..threads).map(|_| envelopes(PER_THREAD)).collect();
        // The raw call on the very same signing bytes and signatures.
        let raw: Vec<Vec<(VerifyingKey, Vec<u8>, Signature)>> = sets
            .iter()
            .map(|set| {
                set.iter()
                    .map(|e| {
                        (
                            VerifyingKey::from_bytes(e.author().as_bytes()).unwrap(),
                            e.signing_bytes(),
                            Signature::from_bytes(e.signature()),
                        )
                    })
                    .collect()
            })
            .collect();
        let raw_rate = rate(&raw, |(key, bytes, sig)| {
            key.verify_strict(bytes, sig).is_ok()
        });
        let envelope_rate = rate(&sets, |e| e.verify().is_ok());
        println!(
            "| {threads} | {raw_rate:.0} | {envelope_rate:.0} | {:.2}× |",
            envelope_rate / raw_rate
        );
    }
}
