//! A crawl's progress on its job's page: pages discovered, waiting, fetched, extracted and
//! failed, the URLs it refused by reason, and the settings it runs under.

use std::fmt::Write;

use pipeline_store::crawl_status::CrawlProgress;

use super::html::{self, esc, num};

/// The "Crawl" section of a crawl job's page.
pub fn progress_section(p: &CrawlProgress) -> String {
    let s = &p.settings;
    let mut out = String::from("<h2>Crawl</h2>");
    if let Some(at) = p.cancelled_at {
        let _ = write!(
            out,
            "<p class=\"notice\" role=\"status\">Cancelled at {}: no link is followed any more.</p>",
            html::time(at)
        );
    }
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Start URL</dt><dd class=\"url\">{start}</dd>\
<dt>Scope</dt><dd>{scope}{prefix}</dd><dt>Limits</dt><dd>depth {depth} · {pages} pages · \
{variants} query variants per path · path depth {path_depth}</dd>\
<dt>Patterns</dt><dd>{patterns}</dd><dt>Sitemaps</dt><dd>{sitemaps}</dd>\
<dt>Nofollow links</dt><dd>{nofollow}</dd></dl>",
        start = esc(&s.start_url),
        scope = esc(&s.scope),
        prefix = s
            .scope_prefix
            .as_deref()
            .map(|p| format!(" <code>{}</code>", esc(p)))
            .unwrap_or_default(),
        depth = s.max_depth,
        pages = num(s.max_pages.max(0) as u64),
        variants = s.max_query_variants,
        path_depth = s.max_path_depth,
        patterns = patterns(&s.include_patterns, &s.exclude_patterns),
        sitemaps = if s.sitemaps { "read" } else { "not read" },
        nofollow = if s.follow_nofollow {
            "followed"
        } else {
            "not followed"
        },
    );
    let n = |v: i64| num(v.max(0) as u64);
    let _ = write!(
        out,
        "<ul class=\"counts\" aria-label=\"Crawl progress\" id=\"crawl-progress\">\
<li>discovered <strong data-crawl=\"discovered\">{}</strong></li>\
<li>pages <strong data-crawl=\"pages\">{}</strong></li>\
<li>waiting <strong data-crawl=\"queued\">{}</strong></li>\
<li>fetched <strong data-crawl=\"fetched\">{}</strong></li>\
<li>extracted <strong data-crawl=\"extracted\">{}</strong></li>\
<li>failed <strong data-crawl=\"failed\">{}</strong></li></ul>",
        n(p.discovered),
        n(p.pages),
        n(p.queued),
        n(p.fetched),
        n(p.extracted),
        n(p.failed),
    );
    let k = &p.skipped;
    let _ = write!(
        out,
        "<div class=\"table-wrap\"><table class=\"skipped\"><caption>URLs not crawled, by reason</caption>\
<thead><tr><th scope=\"col\">Reason</th><th scope=\"col\" class=\"n\">URLs</th></tr></thead><tbody>\
<tr><th scope=\"row\">outside the scope</th><td class=\"n\" data-skip=\"scope\">{}</td></tr>\
<tr><th scope=\"row\">include / exclude patterns</th><td class=\"n\" data-skip=\"pattern\">{}</td></tr>\
<tr><th scope=\"row\">deeper than the depth limit</th><td class=\"n\" data-skip=\"depth\">{}</td></tr>\
<tr><th scope=\"row\">over the page limit</th><td class=\"n\" data-skip=\"limit\">{}</td></tr>\
<tr><th scope=\"row\">trap caps (query variants, path depth)</th><td class=\"n\" data-skip=\"trap\">{}</td></tr>\
<tr><th scope=\"row\">nofollow</th><td class=\"n\" data-skip=\"nofollow\">{}</td></tr>\
<tr><th scope=\"row\">disallowed by robots.txt</th><td class=\"n\" data-skip=\"robots\">{}</td></tr>\
</tbody></table></div>",
        n(k.scope),
        n(k.pattern),
        n(k.depth),
        n(k.limit),
        n(k.trap),
        n(k.nofollow),
        n(k.robots),
    );
    out
}

fn patterns(include: &[String], exclude: &[String]) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|p| format!("<code>{}</code>", esc(p)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (include.is_empty(), exclude.is_empty()) {
        (true, true) => "none".to_owned(),
        (false, true) => format!("include {}", list(include)),
        (true, false) => format!("exclude {}", list(exclude)),
        (false, false) => format!("include {} · exclude {}", list(include), list(exclude)),
    }
}
