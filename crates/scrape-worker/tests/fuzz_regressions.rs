//! Inputs the fuzzers found worth keeping (`fuzz/corpus-regressions/<target>/`), replayed on
//! every test run through the very checks the fuzz targets run: each `fuzz/checks/*.rs` is
//! compiled both into its fuzz target and here. The scrape worker's crate hosts the replays
//! of the four targets over outside bytes that it or its dependencies read (response
//! bodies, robots.txt, URLs and redirects, queue messages).

use std::path::Path;

#[path = "../../../fuzz/checks/decode.rs"]
mod decode;
#[path = "../../../fuzz/checks/queue_message.rs"]
mod queue_message;
#[path = "../../../fuzz/checks/robots.rs"]
mod robots;
#[path = "../../../fuzz/checks/url_normalize.rs"]
mod url_normalize;

/// Runs `check` over every kept input of `target`; the file being replayed is printed first,
/// so a failure names it.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus-regressions")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("the regression corpus exists")
        .map(|e| e.expect("a readable directory").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} is empty", dir.display());
    for path in paths {
        eprintln!("replaying {}", path.display());
        check(&std::fs::read(&path).expect("a readable file"));
    }
}

#[test]
fn fuzz_regressions_decode() {
    replay("decode", decode::check);
}

#[test]
fn fuzz_regressions_robots() {
    replay("robots", robots::check);
}

#[test]
fn fuzz_regressions_url_normalize() {
    replay("url_normalize", url_normalize::check);
}

#[test]
fn fuzz_regressions_queue_message() {
    replay("queue_message", queue_message::check);
}
