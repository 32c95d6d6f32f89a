use super::*;
use crate::Limits;
use crate::entities::Markup;
use crate::html::parse_guarded;

const URL: &str = "https://news.example.test/2020/story.html";

fn meta_with(html: &str, text: &str, times: &[&str]) -> Metadata {
    let doc = parse_guarded(html, &Limits::default()).unwrap();
    let markup = Markup::from_document(&doc);
    let base = base_url(&doc, Some(URL));
    let page =
        PageMeta::from_document(&doc, &markup.jsonld, base, &mut Budget::unlimited()).unwrap();
    let blocks = crate::plain::text_to_blocks(text, false);
    page.finish(&MainContent::new(
        Some("T".into()),
        text,
        &blocks,
        times.iter().map(|t| t.to_string()).collect(),
    ))
}

fn meta(html: &str) -> Metadata {
    meta_with(html, "", &[])
}

fn rfc(d: Option<DateTime<FixedOffset>>) -> Option<String> {
    d.map(|d| d.to_rfc3339())
}

const JSONLD: &str = r#"<script type="application/ld+json">{"@context":"https://schema.org",
    "@type":"NewsArticle","author":{"@type":"Person","name":"Ld Author"},
    "datePublished":"2020-01-02T03:04:05+05:30","dateModified":"2020-01-03T00:00:00Z",
    "publisher":{"@type":"Organization","name":"Ld Publisher"},"description":"Ld description",
    "inLanguage":"de","url":"/ld-url","image":"/ld.jpg"}</script>"#;

const METAS: &str = r#"<meta property="og:site_name" content="OG Site">
    <meta name="author" content="Meta Author">
    <meta property="article:published_time" content="2019-05-06T07:08:09-04:00">
    <meta property="article:modified_time" content="2019-05-07">
    <meta name="description" content="Meta description">
    <meta property="og:url" content="https://news.example.test/og-url">
    <meta property="og:image" content="/og.jpg">
    <meta property="og:locale" content="fr_FR">"#;

#[test]
fn json_ld_comes_first_then_meta_elements() {
    let both = meta(&format!(
        "<html><head>{JSONLD}{METAS}</head><body></body></html>"
    ));
    assert_eq!(both.authors, ["Ld Author"]);
    assert_eq!(both.byline.as_deref(), Some("Ld Author"));
    assert_eq!(
        rfc(both.published).as_deref(),
        Some("2020-01-02T03:04:05+05:30")
    );
    assert_eq!(
        rfc(both.modified).as_deref(),
        Some("2020-01-03T00:00:00+00:00")
    );
    // For these, explicit page declarations win over JSON-LD.
    assert_eq!(both.site_name.as_deref(), Some("OG Site"));
    assert_eq!(both.description.as_deref(), Some("Meta description"));
    assert_eq!(
        both.image.as_ref().map(Url::as_str),
        Some("https://news.example.test/og.jpg")
    );
    assert_eq!(
        both.canonical_url.as_ref().map(Url::as_str),
        Some("https://news.example.test/og-url")
    );
    assert_eq!(
        both.language,
        Some(Language {
            tag: "fr-FR".into(),
            source: LanguageSource::Declared
        })
    );
    assert_eq!(both.title.as_deref(), Some("T"));

    let metas_only = meta(&format!("<head>{METAS}</head>"));
    assert_eq!(metas_only.authors, ["Meta Author"]);
    assert_eq!(
        rfc(metas_only.published).as_deref(),
        Some("2019-05-06T07:08:09-04:00")
    );
    assert_eq!(
        rfc(metas_only.modified).as_deref(),
        Some("2019-05-07T00:00:00+00:00")
    );

    let ld_only = meta(&format!("<head>{JSONLD}</head>"));
    assert_eq!(ld_only.site_name.as_deref(), Some("Ld Publisher"));
    assert_eq!(ld_only.description.as_deref(), Some("Ld description"));
    assert_eq!(ld_only.language.map(|l| l.tag).as_deref(), Some("de"));
    assert_eq!(
        ld_only.image.as_ref().map(Url::as_str),
        Some("https://news.example.test/ld.jpg")
    );
    assert_eq!(
        ld_only.canonical_url.as_ref().map(Url::as_str),
        Some("https://news.example.test/ld-url")
    );
}

#[test]
fn html_lang_and_canonical_link_come_first() {
    let m = meta(&format!(
        r#"<html lang="en-GB"><head>{METAS}<link rel="canonical" href="/canon"></head></html>"#
    ));
    assert_eq!(m.language.map(|l| l.tag).as_deref(), Some("en-GB"));
    assert_eq!(
        m.canonical_url.as_ref().map(Url::as_str),
        Some("https://news.example.test/canon")
    );
    let m = meta(
        r#"<meta http-equiv="Content-Language" content="pt-BR, en"><meta property="og:locale" content="en_US">"#,
    );
    assert_eq!(m.language.map(|l| l.tag).as_deref(), Some("pt-BR"));
}

#[test]
fn dublin_core_citation_parsely_and_sailthru() {
    let m = meta(
        r#"<meta name="DC.creator" content="Dc Person"><meta name="dc.date" content="2018-03-04">"#,
    );
    assert_eq!(m.authors, ["Dc Person"]);
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2018-03-04T00:00:00+00:00")
    );
    let m = meta(
        r#"<meta name="citation_author" content="Curie, Marie"><meta name="citation_author" content="Curie, Pierre">
        <meta name="citation_publication_date" content="1903/12/10">"#,
    );
    assert_eq!(m.authors, ["Curie, Marie", "Curie, Pierre"]);
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("1903-12-10T00:00:00+00:00")
    );
    let m = meta(
        r#"<meta name="parsely-author" content="P One"><meta name="parsely-pub-date" content="2021-02-03T04:05:06Z">"#,
    );
    assert_eq!(m.authors, ["P One"]);
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2021-02-03T04:05:06+00:00")
    );
    let m = meta(
        r#"<meta name="sailthru.author" content="S Two and T Three"><meta name="sailthru.date" content="Tue, 01 Jun 2021 10:00:00 +0200">"#,
    );
    assert_eq!(m.authors, ["S Two", "T Three"]);
    assert_eq!(m.byline.as_deref(), Some("S Two, T Three"));
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2021-06-01T10:00:00+02:00")
    );
}

#[test]
fn profile_urls_are_not_authors_and_visible_bylines_are_the_last_resort() {
    let m = meta(
        r#"<meta property="article:author" content="https://facebook.test/someone">
        <body><div class="author">Read more about our authors and the whole team behind this
        site, who have been writing since the early days of the web and keep doing it.</div>
        <p class="byline">By <a rel="author" href="/jo">Jo Writer</a></p></body>"#,
    );
    // The long author box is refused; the rel=author link is the first sane byline.
    assert_eq!(m.authors, ["Jo Writer"]);
    let m = meta(
        r#"<body><span itemprop="author" itemscope><span itemprop="name">Micro Data</span>, staff</span></body>"#,
    );
    assert_eq!(m.authors, ["Micro Data"]);
    let m = meta(r#"<body><div class="byline">by Sam Reporter</div></body>"#);
    assert_eq!(m.authors, ["Sam Reporter"]);
}

#[test]
fn time_elements_of_the_main_content_then_pubdate() {
    let m = meta_with(
        "<body><time pubdate datetime=\"2001-01-01\">x</time></body>",
        "",
        &["nonsense", "2010-10-10T10:10:10+01:00"],
    );
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2010-10-10T10:10:10+01:00")
    );
    let m = meta_with(
        "<body><time pubdate datetime=\"2001-01-01\">x</time></body>",
        "",
        &[],
    );
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2001-01-01T00:00:00+00:00")
    );
    // Microdata on a visible element.
    let m =
        meta(r#"<body><span itemprop="datePublished" content="2012-12-12">Dec 12</span></body>"#);
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2012-12-12T00:00:00+00:00")
    );
}

#[test]
fn a_date_that_does_not_parse_gives_way_to_the_next_source() {
    let m = meta(
        r#"<meta property="article:published_time" content="last Tuesday">
        <meta name="date" content="2015-06-07">"#,
    );
    assert_eq!(
        rfc(m.published).as_deref(),
        Some("2015-06-07T00:00:00+00:00")
    );
}

#[test]
fn undeclared_language_is_detected_and_description_falls_back_to_the_text() {
    let text = "La ville a décidé de rénover le pont sur la rivière l'année prochaine. \
        Les travaux dureront deux ans et la circulation sera déviée par le centre.";
    let m = meta_with("<p>x</p>", text, &[]);
    assert_eq!(
        m.language,
        Some(Language {
            tag: "fr".into(),
            source: LanguageSource::Detected
        })
    );
    assert_eq!(m.description.as_deref(), Some(text));
    let long = "word ".repeat(200);
    let m = meta_with("<p>x</p>", &long, &[]);
    let d = m.description.unwrap();
    assert!(d.ends_with('…') && d.chars().count() <= 301, "{d}");
}

#[test]
fn urls_resolve_against_the_base_element_and_must_be_web_urls() {
    let m = meta(
        r#"<head><base href="https://cdn.example.test/assets/"><meta property="og:image" content="javascript:alert(1)">
        <meta name="twitter:image" content="pic.png"><link rel="canonical" href="mailto:x@y.test"></head>"#,
    );
    assert_eq!(
        m.image.as_ref().map(Url::as_str),
        Some("https://cdn.example.test/assets/pic.png")
    );
    assert_eq!(m.canonical_url, None);
}

#[test]
fn hostile_values_stay_bounded() {
    let huge_name = "A".repeat(100_000);
    let many_authors: String = (0..500)
        .map(|i| format!(r#"<meta name="citation_author" content="Person Number{i}">"#))
        .collect();
    let huge_jsonld = format!(
        r#"<script type="application/ld+json">{{"@type":"Article","author":"{}","datePublished":"2020-01-01"}}</script>"#,
        "x".repeat(jsonld::MAX_BLOCK_BYTES)
    );
    let m = meta(&format!(
        r#"<head><meta property="og:site_name" content="{huge_name}">{many_authors}{huge_jsonld}
        <meta name="date" content="99999-01-01"><meta name="dc.date" content="0001-01-01"></head>"#
    ));
    assert_eq!(
        m.site_name.map(|s| s.chars().count()),
        Some(MAX_VALUE_CHARS)
    );
    assert_eq!(m.authors.len(), MAX_AUTHORS);
    assert_eq!(m.published, None);
}

#[test]
fn metadata_serialises_with_offsets_and_source() {
    let m = meta(&format!("<html lang=en><head>{JSONLD}</head></html>"));
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["published"], "2020-01-02T03:04:05+05:30");
    assert_eq!(json["language"]["source"], "declared");
    let back: Metadata = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn bylines_in_navigation_and_side_columns_are_not_the_page_s() {
    let m = meta(
        r#"<body class="layout sidebar-right"><div class="authorization">Sign in</div>
        <aside><li class="author-follow">Columnist Elsewhere</li></aside>
        <nav class="menu"><a rel="author" href="/x">Menu Person</a></nav>
        <div class="article-header"><div class="article__author">By Real Writer</div></div></body>"#,
    );
    assert_eq!(m.authors, ["Real Writer"]);
}

#[test]
fn twitter_and_fallback_declarations() {
    let m = meta(
        r#"<meta name="twitter:description" content="Tweet-sized"><meta name="twitter:image" content="https://img.test/t.png">
        <meta property="og:updated_time" content="2022-02-02T02:02:02+02:00"><meta name="application-name" content="App Site">"#,
    );
    assert_eq!(m.description.as_deref(), Some("Tweet-sized"));
    assert_eq!(
        m.image.as_ref().map(Url::as_str),
        Some("https://img.test/t.png")
    );
    assert_eq!(
        rfc(m.modified).as_deref(),
        Some("2022-02-02T02:02:02+02:00")
    );
    assert_eq!(m.site_name.as_deref(), Some("App Site"));
    // og:site_name comes before the JSON-LD WebSite name, which comes before the publisher.
    let ld = r#"<script type="application/ld+json">{"@graph":[{"@type":"WebSite","name":"Ld Site"},
        {"@type":"Article","publisher":{"name":"Ld Pub"}}]}</script>"#;
    assert_eq!(meta(ld).site_name.as_deref(), Some("Ld Site"));
    let og = format!(r#"<meta property="og:site_name" content="Og Site">{ld}"#);
    assert_eq!(meta(&og).site_name.as_deref(), Some("Og Site"));
}
