//! Shared test support: seeds and the swarm harness.
#![allow(dead_code)]

pub mod netns;
pub mod ops;
pub mod process;
pub mod raw;
pub mod swarm;

/// The seed for a test: `SEED` from the environment if set, else `default`. Tests print it,
/// so a failure can be replayed with `SEED=<n> cargo test <name>`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Wall-clock time in milliseconds since the Unix epoch: the timestamp real nodes sign
/// with, so envelopes made by a test fall inside their time window.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
