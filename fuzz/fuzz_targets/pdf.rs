//! The `pdf` target: see `fuzz/checks/pdf.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/pdf.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
