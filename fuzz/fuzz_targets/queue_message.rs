//! The `queue_message` target: see `fuzz/checks/queue_message.rs` for what it runs and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/queue_message.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
