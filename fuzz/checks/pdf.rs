//! A PDF (any bytes) through the whole reading of one document, as the extraction worker
//! runs it: text per page, metadata, sections and page-numbered chunks, under the default
//! limits and one budget. Checks, besides "no panic, no hang, no unbounded memory": the
//! page list matches the page count; sections rejoin to the text; every section and chunk
//! has a page number within the document, pages in order; chunks point into the text.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/pdf/`), so the two cannot check different things.

use extract_core::{Budget, ChunkOptions, Limits};

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let limits = Limits::default();
    let mut budget = Budget::new(&limits);
    let Ok(doc) = extract_core::read_pdf(data, &limits, &mut budget) else {
        return;
    };
    assert_eq!(doc.pages.len(), doc.metadata.page_count as usize);
    let pages = doc.metadata.page_count;
    let Ok(e) = doc.into_extracted() else {
        return;
    };
    let joined: Vec<&str> = e.sections.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined.join(extract_core::SECTION_SEPARATOR), e.text);
    let mut last = 0;
    for s in &e.sections {
        let page = s.page.expect("a PDF section has a page");
        assert!(
            page > last && page <= pages,
            "page {page} after {last} of {pages}"
        );
        last = page;
    }
    let chunking = ChunkOptions {
        max_chars: 200,
        overlap_chars: 40,
    };
    if let Ok(chunks) = extract_core::chunk_in(&e.sections, chunking, &limits, &mut budget) {
        let chars: Vec<char> = e.text.chars().collect();
        for c in &chunks {
            let text: String = chars[c.char_start..c.char_end].iter().collect();
            assert_eq!(text, c.text);
            assert!(c.page.is_some_and(|p| p >= 1 && p <= pages));
        }
    }
}
