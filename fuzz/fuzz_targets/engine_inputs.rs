//! Sequences of engine inputs decoded from the fuzzer's bytes (see `tests/common/ops.rs`),
//! with the engine's invariants checked after each.
#![no_main]

#[path = "../../tests/common/ops.rs"]
mod ops;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ops::run(data);
});
