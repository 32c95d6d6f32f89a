use super::*;
use crate::Limits;
use crate::html::parse_guarded;

fn md_at(html: &str, base: Option<&str>) -> String {
    let doc = parse_guarded(html, &Limits::default()).unwrap();
    let ctx = Context {
        base: base.map(|b| Url::parse(b).unwrap()),
        hints: None,
        relink: false,
    };
    render(&doc.root(), &ctx, &mut Budget::unlimited()).unwrap()
}

fn md(html: &str) -> String {
    md_at(html, Some("https://example.test/docs/page.html"))
}

#[test]
fn headings_keep_their_level() {
    assert_eq!(
        md("<h1>Guide</h1><p>Intro</p><h3>Deep <em>one</em></h3><h6>Six #</h6>"),
        "# Guide\n\nIntro\n\n### Deep *one*\n\n###### Six \\#"
    );
}

#[test]
fn nested_lists_are_indented_under_their_item() {
    let got = md(
        "<ul><li>One<ul><li>One.a</li><li>One.b<ol><li>x</li><li>y</li></ol></li></ul></li>\
         <li><p>Two</p></li></ul><ol start=\"9\"><li>nine</li><li>ten</li></ol>",
    );
    assert_eq!(
        got,
        "- One\n  - One.a\n  - One.b\n    1. x\n    2. y\n- Two\n\n9. nine\n10. ten"
    );
}

#[test]
fn a_list_written_inside_a_list_belongs_to_the_item_before() {
    assert_eq!(
        md("<ul><li>a</li><ul><li>b</li></ul><li>c</li></ul>"),
        "- a\n  - b\n- c"
    );
}

#[test]
fn simple_tables_become_pipe_tables() {
    let got = md(
        "<table><caption>Prices</caption><thead><tr><th>Item</th><th>Cost</th></tr></thead>\
         <tbody><tr><td>Tea | hot</td><td><b>2</b></td></tr><tr><td>Cake</td></tr></tbody></table>",
    );
    assert_eq!(
        got,
        "Prices\n\n| Item | Cost |\n| --- | --- |\n| Tea \\| hot | **2** |\n| Cake |  |"
    );
}

#[test]
fn spanning_or_nested_tables_stay_html() {
    let got = md(
        "<table><tr><td rowspan=2 style=\"x\">A</td><td>B &amp; <a href=\"/b\">b</a></td></tr>\
         <tr><td>C</td></tr></table>",
    );
    assert!(got.starts_with("<table>"), "{got}");
    assert!(got.contains("<td rowspan=\"2\">A</td>"), "{got}");
    assert!(
        got.contains("B &amp; <a href=\"https://example.test/b\">b</a>"),
        "{got}"
    );
    assert!(!got.contains("style"), "{got}");
    assert!(!got.contains("\n\n"), "one HTML block: {got}");
    let nested = md(
        "<table><tr><td><table><tr><td>in</td><td>ner</td></tr></table></td><td>x</td></tr>\
         <tr><td>y</td><td>z</td></tr></table>",
    );
    assert!(nested.contains("<td>in</td>"), "{nested}");
}

#[test]
fn layout_tables_read_as_blocks() {
    assert_eq!(
        md("<table><tr><td><p>First</p></td></tr><tr><td>Second</td></tr></table>"),
        "First\n\nSecond"
    );
    assert_eq!(
        md(
            "<table><tr><td><h2>Side</h2><ul><li>a</li></ul></td><td>Main</td></tr>\
            <tr><td>x</td><td>y</td></tr></table>"
        ),
        "## Side\n\n- a\n\nMain\n\nx\n\ny"
    );
}

#[test]
fn code_blocks_are_fenced_with_their_language() {
    let cases = [
        (
            r#"<pre><code class="language-rust">fn main() {}</code></pre>"#,
            "rust",
        ),
        (r#"<pre class="lang-py">print(1)</pre>"#, "py"),
        (
            r#"<div class="highlight highlight-source-shell"><pre>ls -l</pre></div>"#,
            "shell",
        ),
        (r#"<pre data-lang="go">x := 1</pre>"#, "go"),
        ("<pre>plain</pre>", ""),
    ];
    for (html, lang) in cases {
        let got = md(html);
        assert!(got.starts_with(&format!("```{lang}\n")), "{html}: {got}");
        assert!(got.ends_with("\n```"), "{html}: {got}");
    }
    let got = md("<pre><code>  indented\n\n  &lt;kept&gt; *as is*\n```</code></pre>");
    assert_eq!(got, "````\n  indented\n\n  <kept> *as is*\n```\n````");
    // Trafilatura writes a code block as a bare multi-line <code>.
    assert_eq!(md("<p>Run:</p><code>a\nb</code>"), "Run:\n\n```\na\nb\n```");
}

#[test]
fn inline_code_emphasis_and_strikethrough() {
    assert_eq!(
        md(
            "<p>Call <code>a`b</code> with <em> care </em>, <strong>really</strong> \
            <i><i>nested</i></i> <del>old</del> <b></b>done.</p>"
        ),
        "Call ``a`b`` with *care* , **really** *nested* ~~old~~ done."
    );
}

#[test]
fn links_and_images_are_absolute() {
    let got = md(
        r#"<p><a href="../guide/">Guide</a> and <a href="https://other.test/x(1)">x</a>
        <img src="/img/a.png" alt="An [odd] alt"> <a href="javascript:void(0)">js</a>
        <a href="/only-image"><img src="i.png" alt=""></a> <img src="data:image/png;base64,AAAA"></p>"#,
    );
    assert_eq!(
        got,
        "[Guide](https://example.test/guide/) and [x](<https://other.test/x(1)>) \
         ![An \\[odd\\] alt](https://example.test/img/a.png) js \
         [![](https://example.test/docs/i.png)](https://example.test/only-image)"
    );
    // Without a page URL, links stay as written.
    assert_eq!(md_at(r#"<a href="/x">x</a>"#, None), "[x](/x)");
}

#[test]
fn blockquotes_and_rules() {
    assert_eq!(
        md(
            "<blockquote><p>Quoted</p><blockquote><p>deeper</p></blockquote></blockquote><hr><p>After</p>"
        ),
        "> Quoted\n>\n> > deeper\n\n---\n\nAfter"
    );
}

#[test]
fn text_that_looks_like_markdown_is_escaped() {
    assert_eq!(
        md(
            "<p># not a heading</p><p>1. not a list *really*</p><p>a_b &lt;c&gt; [d]</p><p>+ plus<br>- minus</p>"
        ),
        "\\# not a heading\n\n1\\. not a list \\*really\\*\n\na_b \\<c> \\[d\\]\n\n\\+ plus\\\n\\- minus"
    );
}

#[test]
fn boilerplate_elements_and_hidden_content_are_dropped() {
    assert_eq!(
        md(
            "<p>Shown</p><script>x()</script><style>p{}</style><p hidden>no</p>\
            <div style=\"display:none\">no</div><p aria-hidden=\"true\">no</p>"
        ),
        "Shown"
    );
}

#[test]
fn deep_nesting_is_flattened_without_recursion() {
    let depth = 2_000;
    let html = format!(
        "{}<p>deep *text*</p>{}",
        "<div><blockquote>".repeat(depth),
        "</blockquote></div>".repeat(depth)
    );
    let limits = Limits {
        max_depth: 10_000,
        ..Limits::default()
    };
    let doc = parse_guarded(&html, &limits).unwrap();
    let got = render(&doc.root(), &Context::default(), &mut Budget::unlimited()).unwrap();
    assert!(
        got.contains("deep \\*text\\*"),
        "{}",
        &got[got.len().saturating_sub(200)..]
    );
    // Quotes are rendered down to the depth bound, not for every level.
    assert!(got.matches('>').count() < 2 * MAX_DEPTH, "{}", got.len());
}

#[test]
fn the_renderer_spends_from_the_budget() {
    let limits = Limits {
        max_work: 100,
        ..Limits::default()
    };
    let doc = parse_guarded(&"<p>word <b>bold</b></p>".repeat(200), &limits).unwrap();
    let err = render(&doc.root(), &Context::default(), &mut Budget::new(&limits)).unwrap_err();
    assert_eq!(err.kind, crate::Exceeded::Work);
}

#[test]
fn hints_restore_links_and_code_languages_an_extractor_dropped() {
    let page = parse_guarded(
        r#"<body><p>See <a href="/docs">the docs</a> first.</p>
        <pre><code class="language-toml">[a]
b = 1</code></pre><p>No link here.</p></body>"#,
        &Limits::default(),
    )
    .unwrap();
    let base = Url::parse("https://example.test/post").ok();
    let extracted = parse_guarded(
        "<p>See the docs first.</p><code>[a]\nb = 1</code><p>No link here.</p><p>See the docs</p>",
        &Limits::default(),
    )
    .unwrap();
    let wanted = leaf_keys(&extracted.root(), &mut Budget::unlimited()).unwrap();
    let hints =
        SourceHints::from_document(&page, base.clone(), &wanted, &mut Budget::unlimited()).unwrap();
    let ctx = Context {
        base,
        hints: Some(&hints),
        relink: true,
    };
    let got = render(&extracted.root(), &ctx, &mut Budget::unlimited()).unwrap();
    assert_eq!(
        got,
        "See [the docs](https://example.test/docs) first.\n\n```toml\n[a]\nb = 1\n```\n\n\
         No link here.\n\nSee the docs"
    );
}

#[test]
fn text_blocks_render_as_escaped_markdown() {
    let blocks = crate::plain::text_to_blocks("# Title\n\n* star\nline two\n\n## Sub", true);
    assert_eq!(
        from_blocks(&blocks),
        "# Title\n\n\\* star\nline two\n\n## Sub"
    );
}
