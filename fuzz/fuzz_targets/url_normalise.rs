//! The `url_normalise` target: see `fuzz/checks/url_normalise.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/url_normalise.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
