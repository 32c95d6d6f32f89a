//! The `extract` target: see `fuzz/checks/extract.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/extract.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
