//! HTML (any bytes) through the whole extraction of one page, as the worker runs it: main
//! text, title, sections, chunks, entities, Markdown and metadata, under the default limits
//! and one budget. Checks the invariants callers rely on besides "no panic, no hang": the
//! text is its sections joined, each chunk is the text it claims, and what the metadata
//! keeps is bounded and free of NUL (the text columns it is stored in hold it whole).
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
    check_metadata(&e.metadata);
    // Postgres text cannot hold NUL: the stored Markdown never carries one.
    assert!(!e.markdown.contains('\0'), "NUL in the Markdown");
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

fn check_metadata(m: &extract_core::metadata::Metadata) {
    use extract_core::metadata::{MAX_AUTHORS, MAX_VALUE_CHARS};
    let bounded = |what: &str, v: &str| {
        assert!(
            v.chars().count() <= MAX_VALUE_CHARS,
            "{what}: {} characters",
            v.chars().count()
        );
        assert!(!v.contains('\0'), "{what}: NUL");
    };
    assert!(
        m.authors.len() <= MAX_AUTHORS,
        "{} authors",
        m.authors.len()
    );
    for a in &m.authors {
        bounded("author", a);
    }
    for (what, v) in [
        ("title", &m.title),
        ("site_name", &m.site_name),
        ("description", &m.description),
    ] {
        if let Some(v) = v {
            bounded(what, v);
        }
    }
    if let Some(lang) = &m.language {
        assert!(
            !lang.tag.is_empty() && lang.tag.len() <= 64,
            "tag {:?}",
            lang.tag
        );
    }
}
