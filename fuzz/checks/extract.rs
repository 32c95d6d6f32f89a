//! HTML (any bytes) through the whole extraction of one page, as the worker runs it: main
//! text, title, sections, chunks, entities, under the default limits and one budget.
//! Checks the invariants callers rely on besides "no panic, no hang".
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/extract/`), so the two cannot check different things.

use extract_core::{Budget, ChunkOptions, ExtractOptions, Limits};

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let html = String::from_utf8_lossy(data);
    let limits = Limits::default();
    let mut budget = Budget::new(&limits);
    let opts = ExtractOptions::default();
    let Ok(e) = extract_core::extract_in(
        &html,
        Some("https://example.com/a"),
        "text/html",
        &opts,
        &mut budget,
    ) else {
        return;
    };
    let joined: Vec<&str> = e.sections.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined.join(extract_core::SECTION_SEPARATOR), e.text);
    let chunking = ChunkOptions {
        max_chars: 200,
        overlap_chars: 40,
    };
    if let Ok(chunks) = extract_core::chunk_in(&e.sections, chunking, &limits, &mut budget) {
        let chars: Vec<char> = e.text.chars().collect();
        for c in &chunks {
            let text: String = chars[c.char_start..c.char_end].iter().collect();
            assert_eq!(text, c.text);
        }
    }
    let _ = extract_core::find_entities_in(e.markup.as_ref(), &e.text, &limits, &mut budget);
}
