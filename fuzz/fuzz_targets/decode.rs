//! The `decode` target: see `fuzz/checks/decode.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/decode.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
