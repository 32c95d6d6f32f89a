//! The `robots` target: see `fuzz/checks/robots.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/robots.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
