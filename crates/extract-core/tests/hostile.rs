//! Hostile documents end within their limits: each is either extracted (deep nesting still
//! gives its text) or refused as too expensive, naming the limit, before the expensive work.

use extract_core::{
    Budget, ChunkOptions, EntitiesStatus, Exceeded, ExtractError, ExtractOptions, Extractor,
    Limits, chunk_in, extract_in, extract_with, find_entities, find_entities_in,
};

fn too_expensive(result: Result<extract_core::Extracted, ExtractError>) -> Exceeded {
    match result {
        Err(ExtractError::TooExpensive(e)) => {
            assert!(
                ExtractError::TooExpensive(e.clone())
                    .to_string()
                    .starts_with("too expensive to extract: "),
            );
            e.kind
        }
        other => panic!(
            "expected too expensive, got {:?}",
            other.map(|e| e.extractor)
        ),
    }
}

#[test]
fn two_hundred_thousand_nested_divs_give_their_text_and_entities_without_a_parse() {
    // The reported page: extraction already skipped the parse, entity finding did not.
    let html = format!(
        "<html><body>{}<p>Mail press@deep.example</p>{}</body></html>",
        "<div>".repeat(200_000),
        "</div>".repeat(200_000)
    );
    let mut budget = Budget::new(&Limits::default());
    let e = extract_in(
        &html,
        None,
        "text/html",
        &ExtractOptions::default(),
        &mut budget,
    )
    .expect("the text of a deep page is kept");
    assert_eq!(e.extractor, Extractor::Body);
    assert!(e.text.contains("press@deep.example"));
    assert!(
        e.markup.is_none(),
        "a page too deep to parse has no markup to read"
    );
    let report = find_entities_in(None, &e.text, &Limits::default(), &mut budget).unwrap();
    let emails: Vec<_> = report
        .entities
        .iter()
        .map(|e| e.normalized.as_str())
        .collect();
    assert_eq!(emails, ["press@deep.example"]);
}

#[test]
fn the_old_entity_entry_point_refuses_a_deep_page_instead_of_parsing_it() {
    let html = "<div>".repeat(200_000);
    let report = find_entities(Some(&html), "call +1 (555) 010-2030");
    assert_eq!(report.status(), EntitiesStatus::Partial);
    assert!(
        report.failures[0].contains("too expensive"),
        "{:?}",
        report.failures
    );
    assert_eq!(report.entities.len(), 1);
}

#[test]
fn deep_tables_lists_and_inline_tags_are_read_as_text() {
    for (open, close) in [
        ("<table><tr><td>", "</td></tr></table>"),
        ("<ul><li>", "</li></ul>"),
        ("<b><i>", "</i></b>"),
        ("<span>", "</span>"),
    ] {
        let html = format!("{}deep words{}", open.repeat(20_000), close.repeat(20_000));
        let e = extract_with(&html, None, "text/html", &ExtractOptions::default())
            .unwrap_or_else(|err| panic!("{open}: {err}"));
        assert!(e.text.contains("deep words"), "{open}");
        assert_eq!(e.extractor, Extractor::Body, "{open}");
    }
}

#[test]
fn an_element_with_a_million_attributes_is_refused() {
    let attrs: String = (0..1_000_000).map(|i| format!(" a{i}")).collect();
    let html = format!("<div{attrs}>x</div>");
    let kind = too_expensive(extract_with(
        &html,
        None,
        "text/html",
        &ExtractOptions::default(),
    ));
    assert_eq!(kind, Exceeded::Attributes);
}

#[test]
fn a_page_of_a_million_links_is_refused_by_its_element_count() {
    let html = format!("<body>{}</body>", "<a href=/x>x</a>".repeat(400_000));
    let kind = too_expensive(extract_with(
        &html,
        None,
        "text/html",
        &ExtractOptions::default(),
    ));
    assert_eq!(kind, Exceeded::Elements);
}

#[test]
fn a_ten_megabyte_single_line_is_refused_by_its_size() {
    let html = format!("<p>{}</p>", "x".repeat(10 * 1024 * 1024));
    let kind = too_expensive(extract_with(
        &html,
        None,
        "text/html",
        &ExtractOptions::default(),
    ));
    assert_eq!(kind, Exceeded::InputBytes);
    let kind = too_expensive(extract_with(
        &html,
        None,
        "text/plain",
        &ExtractOptions::default(),
    ));
    assert_eq!(kind, Exceeded::InputBytes);
}

#[test]
fn script_only_pages_have_no_content() {
    let html = format!(
        "<html><body>{}</body></html>",
        "<script>var a = 1;</script>".repeat(1000)
    );
    assert_eq!(
        extract_with(&html, None, "text/html", &ExtractOptions::default()).unwrap_err(),
        ExtractError::NoContent
    );
}

#[test]
fn too_many_chunks_are_refused_whole() {
    let text = "A sentence of plain words. ".repeat(4_000);
    let e = extract_with(&text, None, "text/plain", &ExtractOptions::default()).unwrap();
    let limits = Limits {
        max_chunks: 10,
        ..Limits::default()
    };
    let err = chunk_in(
        &e.sections,
        ChunkOptions::default(),
        &limits,
        &mut Budget::new(&limits),
    )
    .unwrap_err();
    assert_eq!(err.kind, Exceeded::Chunks);
    let limits = Limits {
        max_text_bytes: 1000,
        ..Limits::default()
    };
    let err = chunk_in(
        &e.sections,
        ChunkOptions::default(),
        &limits,
        &mut Budget::new(&limits),
    )
    .unwrap_err();
    assert_eq!(err.kind, Exceeded::TextBytes);
}

#[test]
fn entities_beyond_the_cap_are_dropped_and_reported() {
    let text: String = (0..3000)
        .map(|i| format!("user{i}@mail.example "))
        .collect();
    let limits = Limits {
        max_entities: 100,
        ..Limits::default()
    };
    let report = find_entities_in(None, &text, &limits, &mut Budget::new(&limits)).unwrap();
    assert_eq!(report.entities.len(), 100);
    assert_eq!(report.status(), EntitiesStatus::Partial);
    assert!(
        report.failures[0].starts_with("entities: "),
        "{:?}",
        report.failures
    );
}

#[test]
fn a_spent_work_budget_stops_the_page() {
    let html = format!("<body>{}</body>", "<p>some words here</p>".repeat(2000));
    let opts = ExtractOptions {
        limits: Limits {
            max_work: 10_000,
            ..Limits::default()
        },
        ..ExtractOptions::default()
    };
    let kind = too_expensive(extract_with(&html, None, "text/html", &opts));
    assert_eq!(kind, Exceeded::Work);
}

#[path = "../../../fuzz/checks/extract.rs"]
mod extract_check;

/// Inputs the fuzzer found interesting (`fuzz/corpus-regressions/extract/`), replayed on
/// every test run through the very checks the `extract` fuzz target runs (the check file is
/// compiled into both).
#[test]
fn fuzz_regressions_extract() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus-regressions/extract");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("the regression corpus exists")
        .map(|e| e.expect("a readable directory").path())
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 5,
        "only {} regression inputs in {}",
        paths.len(),
        dir.display()
    );
    for path in paths {
        eprintln!("replaying {}", path.display());
        extract_check::check(&std::fs::read(&path).expect("a readable file"));
    }
}

#[test]
fn metadata_of_a_page_of_meta_tags_and_json_ld_stays_bounded() {
    let mut html = String::from("<html lang=\"en\"><head>");
    for i in 0..100_000 {
        html.push_str(&format!("<meta name=\"author\" content=\"Person {i}\">"));
    }
    html.push_str(&format!(
        "<script type=\"application/ld+json\">{{\"@type\":\"Article\",\"author\":\"{}\"}}</script>",
        "x".repeat(2 << 20)
    ));
    html.push_str(
        "</head><body><p>A short page with a great deal of metadata around it.</p></body></html>",
    );
    // What bounds it is what is kept (the first authors, no 2 MiB byline), asserted here; its
    // time is the `metadata_eval` example's to measure, not a test's.
    let e = extract_core::extract(&html, None, "text/html").expect("extract");
    assert!(e.metadata.byline.as_deref().is_none_or(|b| b.len() < 4096));
    assert_eq!(
        e.metadata.authors.len(),
        extract_core::metadata::MAX_AUTHORS
    );
    assert!(e.markdown.contains("A short page"));
}
