//! The `facts_schema` target: see `fuzz/checks/facts_schema.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/facts_schema.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
