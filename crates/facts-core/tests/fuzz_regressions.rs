//! Inputs the fuzzers found worth keeping (`fuzz/corpus-regressions/<target>/`), replayed on
//! every test run through the very checks the fuzz targets run: each `fuzz/checks/facts_*.rs`
//! is compiled both into its fuzz target and here.

use std::path::Path;

#[path = "../../../fuzz/checks/facts_answer.rs"]
mod facts_answer;
#[path = "../../../fuzz/checks/facts_markup.rs"]
mod facts_markup;
#[path = "../../../fuzz/checks/facts_schema.rs"]
mod facts_schema;

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
fn fuzz_regressions_facts_schema() {
    replay("facts_schema", facts_schema::check);
}

#[test]
fn fuzz_regressions_facts_markup() {
    replay("facts_markup", facts_markup::check);
}

#[test]
fn fuzz_regressions_facts_answer() {
    replay("facts_answer", facts_answer::check);
}
