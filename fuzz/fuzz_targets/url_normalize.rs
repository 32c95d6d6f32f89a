//! The `url_normalize` target: see `fuzz/checks/url_normalize.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/url_normalize.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
