//! Extraction of fixture pages written for these tests.

use extract_core::{
    ChunkOptions, EntitiesStatus, EntityKind, ExtractError, LanguageSource, SECTION_SEPARATOR,
    chunk, extract, find_entities,
};

const ARTICLE: &str = include_str!("fixtures/article.html");
const BROKEN_JSONLD: &str = include_str!("fixtures/broken-jsonld.html");
const LISTING: &str = include_str!("fixtures/listing.html");
const URL: &str = "https://courier.example/news/river-flooding";

#[test]
fn article_main_text_is_kept_whole_and_boilerplate_dropped() {
    let e = extract(ARTICLE, Some(URL), "text/html; charset=utf-8").expect("extract");
    assert_eq!(
        e.title.as_deref(),
        Some("River Flooding Forces Evacuation of Lower Town")
    );
    for kept in [
        "The Alder River rose more than two metres overnight",
        "volunteers were serving tea and soup in the gymnasium.",
        "How the levee held",
        "Backup generators arrived at the station in the late morning.",
        "Stay out of flood water, which may hide open drains and debris.",
        "Keep receipts for anything bought because of the flood.",
        "Schools in the lower town will stay closed until at least Monday.",
    ] {
        assert!(e.text.contains(kept), "lost {kept:?} from:\n{}", e.text);
    }
    for dropped in [
        "Accept all cookies",
        "Subscribe now",
        "dataLayer",
        "track(",
        "Most read",
        "Local bakery wins",
        "All rights reserved",
        "Share on Facebook",
        "The council should have fixed those pumps",
    ] {
        assert!(
            !e.text.contains(dropped),
            "kept {dropped:?} in:\n{}",
            e.text
        );
    }
}

#[test]
fn article_sections_follow_headings_and_rejoin_to_the_text() {
    let e = extract(ARTICLE, Some(URL), "text/html").expect("extract");
    let paths: Vec<Vec<&str>> = e
        .sections
        .iter()
        .map(|s| s.heading_path.iter().map(String::as_str).collect())
        .collect();
    assert!(paths.contains(&vec!["How the levee held"]), "{paths:?}");
    assert!(
        paths.contains(&vec!["How the levee held", "What residents should do"]),
        "{paths:?}"
    );
    assert!(paths.contains(&vec!["Help and information"]), "{paths:?}");
    let residents = e
        .sections
        .iter()
        .find(|s| {
            s.heading_path
                .last()
                .is_some_and(|h| h == "What residents should do")
        })
        .expect("residents section");
    assert!(residents.text.contains("Report damage to the council"));
    let texts: Vec<&str> = e.sections.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts.join(SECTION_SEPARATOR), e.text);
}

#[test]
fn chunks_of_a_real_page_point_into_its_text() {
    let e = extract(ARTICLE, Some(URL), "text/html").expect("extract");
    let opts = ChunkOptions {
        max_chars: 200,
        overlap_chars: 40,
    };
    let chunks = chunk(&e.sections, opts);
    assert!(chunks.len() >= e.sections.len());
    let chars: Vec<char> = e.text.chars().collect();
    let mut covered = vec![false; chars.len()];
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(c.text.chars().count() <= 200);
        let slice: String = chars[c.char_start..c.char_end].iter().collect();
        assert_eq!(slice, c.text);
        covered[c.char_start..c.char_end]
            .iter_mut()
            .for_each(|x| *x = true);
    }
    // Every non-space character of the text is in some chunk.
    let missed: String = chars
        .iter()
        .zip(&covered)
        .filter(|(ch, cov)| !**cov && !ch.is_whitespace())
        .map(|(ch, _)| *ch)
        .collect();
    assert!(missed.is_empty(), "not chunked: {missed:?}");
}

#[test]
fn plain_text_and_markdown_pass_through() {
    let e = extract("First paragraph.\n\nSecond\nparagraph.", None, "text/plain").expect("plain");
    assert_eq!(e.text, "First paragraph.\n\nSecond\nparagraph.");
    assert_eq!(e.title, None);
    assert_eq!(e.sections.len(), 1);

    let md = "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n";
    let e = extract(md, None, "text/markdown; charset=utf-8").expect("markdown");
    assert_eq!(e.title.as_deref(), Some("Guide"));
    assert_eq!(e.sections.len(), 2);
    assert_eq!(e.sections[1].heading_path, vec!["Guide", "Install"]);
    assert_eq!(e.sections[1].text, "Install\n\nRun it.");
}

#[test]
fn unsupported_and_empty_documents_are_errors() {
    let err = extract("%PDF-1.7", None, "application/pdf").expect_err("pdf");
    assert_eq!(
        err,
        ExtractError::UnsupportedContentType("application/pdf".into())
    );
    assert!(!err.is_transient());
    let err = extract(
        "<html><body><script>x()</script></body></html>",
        None,
        "text/html",
    )
    .expect_err("empty");
    assert_eq!(err, ExtractError::NoContent);
    // No declared type: sniffed.
    let e = extract("<!doctype html><p>Hello there</p>", None, "").expect("sniffed html");
    assert_eq!(e.text, "Hello there");
}

#[test]
fn a_page_without_an_article_still_gives_its_text() {
    let e = extract(LISTING, None, "text/html").expect("listing");
    assert!(
        e.text.contains("Post one") && e.text.contains("Post two"),
        "{}",
        e.text
    );
}

#[test]
fn article_entities_from_json_ld_links_and_text() {
    let e = extract(ARTICLE, Some(URL), "text/html").expect("extract");
    let report = find_entities(Some(ARTICLE), &e.text);
    assert_eq!(
        report.status(),
        EntitiesStatus::Complete,
        "{:?}",
        report.failures
    );
    let has = |kind: EntityKind, normalized: &str| {
        report
            .entities
            .iter()
            .any(|x| x.kind == kind && x.normalized == normalized)
    };
    assert!(has(EntityKind::Person, "Maria Okafor"));
    assert!(has(EntityKind::Organization, "The Valley Courier"));
    assert!(has(EntityKind::Organization, "Valley Water Authority"));
    assert!(has(EntityKind::Place, "Lower Town Community School"));
    assert!(has(EntityKind::Phone, "+15550104477"));
    assert!(has(EntityKind::Email, "floodhelp@valleycouncil.example"));
    assert!(has(EntityKind::Email, "letters@courier.example"));
    assert!(has(EntityKind::Phone, "5550102030"));
    assert!(has(EntityKind::Domain, "valleycouncil.org"));
    // The e-mail's domain is not reported as a web domain of its own.
    assert!(!has(EntityKind::Domain, "valleycouncil.example"));
    // No duplicates of one (kind, normalized) pair.
    let mut keys: Vec<_> = report
        .entities
        .iter()
        .map(|x| (x.kind, &x.normalized))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
}

#[test]
fn a_broken_json_ld_block_makes_the_result_partial() {
    let e = extract(BROKEN_JSONLD, None, "text/html").expect("extract");
    let report = find_entities(Some(BROKEN_JSONLD), &e.text);
    assert_eq!(report.status(), EntitiesStatus::Partial);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(
        report.failures[0].contains("json-ld block 2"),
        "{:?}",
        report.failures
    );
    let names: Vec<(EntityKind, &str)> = report
        .entities
        .iter()
        .map(|x| (x.kind, x.normalized.as_str()))
        .collect();
    assert!(
        names.contains(&(EntityKind::Product, "Widget 3000")),
        "{names:?}"
    );
    assert!(
        names.contains(&(EntityKind::Organization, "Acme")),
        "{names:?}"
    );
    assert!(
        names.contains(&(EntityKind::Email, "sales@acme.example")),
        "{names:?}"
    );
    assert!(!names.iter().any(|(_, n)| *n == "Broken Co"));
}

#[test]
fn text_only_entities_without_html() {
    let report = find_entities(
        None,
        "Contact Jane at JANE@Example.com or +44 20 7946 0000.",
    );
    assert_eq!(report.status(), EntitiesStatus::Complete);
    let got: Vec<(EntityKind, &str)> = report
        .entities
        .iter()
        .map(|x| (x.kind, x.normalized.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (EntityKind::Email, "jane@example.com"),
            (EntityKind::Phone, "+442079460000")
        ]
    );
}

#[test]
fn absurdly_deep_pages_neither_overflow_the_stack_nor_stall() {
    // Both depths: one parsed with the extractors skipped, one not parsed at all.
    for depth in [1_000, 30_000] {
        let mut html = String::from("<html><body><p>Before the nest.</p>");
        html.push_str(&"<div><span>x ".repeat(depth));
        html.push_str("bottom");
        html.push_str(&"</span></div>".repeat(depth));
        html.push_str("</body></html>");
        // The default stack of a blocking-pool thread.
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let t0 = std::time::Instant::now();
                let e = extract(&html, None, "text/html").map(|e| {
                    assert!(
                        e.markdown.contains("bottom"),
                        "{depth}: the Markdown has the text too"
                    );
                    e.text
                });
                (e, t0.elapsed())
            })
            .expect("spawn");
        let (text, took) = worker.join().expect("no stack overflow");
        let text = text.expect("extract");
        assert!(text.contains("Before the nest.") && text.contains("bottom"));
        assert!(
            took < std::time::Duration::from_secs(5),
            "depth {depth} took {took:?}"
        );
    }
}

#[test]
fn a_single_extractor_strategy_uses_only_that_extractor() {
    use extract_core::{ExtractOptions, Extractor, Strategy, extract_with};
    for (strategy, want) in [
        (Strategy::Readability, Extractor::Readability),
        (Strategy::Trafilatura, Extractor::Trafilatura),
    ] {
        let e = extract_with(
            ARTICLE,
            Some(URL),
            "text/html",
            &ExtractOptions {
                strategy,
                ..ExtractOptions::default()
            },
        )
        .expect("extract");
        assert_eq!(e.extractor, want);
        assert!(e.text.contains("Backup generators arrived at the station"));
    }
}

#[test]
fn malformed_input_never_panics() {
    let long_attr = format!("<div title=\"{}\">text inside</div>", "a".repeat(100_000));
    let inputs = [
        "",
        "<",
        "</p></div></body>",
        "<html><body><p>unclosed <b>bold <i>italic",
        "\u{0}\u{1}\u{fffd} binary-ish \u{7f} bytes",
        "<script type=\"application/ld+json\">{{{{</script><p>Some words here.</p>",
        "<table><tr><td>cell<td>cell<tr><td>row two</table>",
        long_attr.as_str(),
    ];
    for input in inputs {
        let result = std::panic::catch_unwind(|| {
            let e = extract(input, Some("not a url"), "text/html");
            let _ = extract(input, Some("data:text/html,x"), "text/html");
            let text = e.as_ref().map(|e| e.text.clone()).unwrap_or_default();
            let _ = find_entities(Some(input), &text);
            e.map(|e| chunk(&e.sections, ChunkOptions::default()).len())
        });
        assert!(
            result.is_ok(),
            "panicked on {:?}",
            &input[..input.len().min(40)]
        );
    }
}

#[test]
fn a_non_web_url_does_not_stop_extraction() {
    use extract_core::{ExtractOptions, Extractor, Strategy, extract_with};
    let opts = ExtractOptions {
        strategy: Strategy::Readability,
        ..ExtractOptions::default()
    };
    for url in [
        "mailto:someone@example.com",
        "relative/path.html",
        "file:///tmp/x.html",
    ] {
        let e = extract_with(ARTICLE, Some(url), "text/html", &opts).expect("extract");
        assert_eq!(e.extractor, Extractor::Readability, "url {url}");
    }
}

#[test]
fn article_markdown_has_its_structure_and_no_boilerplate() {
    let e = extract(ARTICLE, Some(URL), "text/html").expect("extract");
    let md = &e.markdown;
    assert!(md.contains("## How the levee held\n"), "{md}");
    assert!(md.contains("### What residents should do\n"), "{md}");
    assert!(
        md.contains(
            "- Stay out of flood water, which may hide open drains and debris.\n- Report damage"
        ),
        "{md}"
    );
    assert!(
        md.contains("\"The wall did its job, the pumps did not,\""),
        "{md}"
    );
    for boilerplate in [
        "cookies",
        "Most read",
        "Share on",
        "Privacy policy",
        "12 comments",
    ] {
        assert!(!md.contains(boilerplate), "{boilerplate} in {md}");
    }
    // Sections carry their heading trail for chunks.
    let advice = e
        .sections
        .iter()
        .find(|s| s.text.contains("Keep receipts"))
        .expect("a section");
    assert_eq!(
        advice.heading_trail(),
        "How the levee held › What residents should do"
    );
    let chunks = chunk(&e.sections, ChunkOptions::default());
    assert!(
        chunks
            .iter()
            .any(|c| c.heading_trail() == "How the levee held › What residents should do")
    );
}

#[test]
fn article_metadata_from_the_page() {
    let e = extract(ARTICLE, Some(URL), "text/html").expect("extract");
    let m = &e.metadata;
    assert_eq!(m.title, e.title);
    assert_eq!(m.authors, ["Maria Okafor"]);
    assert_eq!(m.byline.as_deref(), Some("Maria Okafor"));
    assert_eq!(m.site_name.as_deref(), Some("The Valley Courier"));
    let lang = m.language.as_ref().expect("language");
    assert_eq!(
        (lang.tag.as_str(), lang.source),
        ("en", LanguageSource::Declared)
    );
    // No declared description: the start of the main text.
    assert!(
        m.description
            .as_deref()
            .is_some_and(|d| d.starts_with("The Alder River rose")),
        "{m:?}"
    );
    assert_eq!(m.published, None);
}

#[test]
fn text_documents_get_markdown_and_a_detected_language() {
    let e = extract(
        "# not a heading in plain text\n\nThe council opened the school as a shelter overnight, \
         and volunteers served tea and soup to the families who arrived before dawn.",
        None,
        "text/plain",
    )
    .expect("plain");
    assert!(
        e.markdown.starts_with("\\# not a heading"),
        "{}",
        e.markdown
    );
    let lang = e.metadata.language.expect("detected");
    assert_eq!(
        (lang.tag.as_str(), lang.source),
        ("en", LanguageSource::Detected)
    );
    let md = "# Title\n\n- item *one*\n";
    let e = extract(md, None, "text/markdown").expect("markdown");
    assert_eq!(e.markdown, "# Title\n\n- item *one*");
}
