//! The `facts_markup` target: see `fuzz/checks/facts_markup.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/facts_markup.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
