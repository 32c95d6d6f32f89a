//! Main content of an HTML page: two extractors, a choice between them, and a fallback to
//! the page's visible text when neither finds an article. The page is parsed once, through
//! the guard ([`parse_guarded`], [`check`]), the only way into the DOM.

mod guard;
mod select;
mod title;

pub use guard::{Checked, Scan, check, parse_guarded};
pub use select::{Extractor, Strategy};

use dom_query::Document;

use crate::blocks::{Block, html_to_blocks, join_blocks, max_depth, node_to_blocks};
use crate::entities::Markup;
use crate::limits::{Budget, Exceeded, Limits, TooExpensive};
use crate::plain::text_to_blocks;

/// What the HTML path hands back to [`crate::extract`].
pub(crate) struct HtmlContent {
    pub title: Option<String>,
    pub blocks: Vec<Block>,
    pub extractor: Extractor,
    pub markup: Option<Markup>,
}

/// Pages nested deeper than this skip both extractors: they walk the tree recursively and a
/// hostile page (tens of thousands of nested elements) would overflow the thread's stack.
/// Real pages stay well under a hundred levels.
const MAX_DOM_DEPTH: usize = 400;

/// Extracts the title and main-content blocks of `html`.
pub(crate) fn extract_html(
    html: &str,
    url: Option<&str>,
    strategy: Strategy,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<HtmlContent, TooExpensive> {
    budget.spend(html.len() as u64, "scanning the markup")?;
    let checked = match guard::check(html, limits) {
        Ok(checked) => checked,
        // Too deep to parse, yet its text can be read without a tree.
        Err(e) if e.kind == Exceeded::Depth => {
            return Ok(HtmlContent {
                title: None,
                blocks: text_to_blocks(&guard::strip_tags(html), false),
                extractor: Extractor::Body,
                markup: None,
            });
        }
        Err(e) => return Err(e),
    };
    let doc = checked.parse();
    budget.check_time("parsing the page")?;
    // Title candidates and entity markup are read before Readability mutates the document
    // it is handed, so the page is parsed once for all of them.
    let meta = title::TitleCandidates::from_document(&doc);
    let markup = Markup::from_document(&doc);
    if max_depth(&doc.root()) > MAX_DOM_DEPTH {
        return Ok(HtmlContent {
            title: meta.choose(None),
            blocks: body_blocks(&doc, budget)?,
            extractor: Extractor::Body,
            markup: Some(markup),
        });
    }
    budget.check_time("reading the page")?;
    let readability = if strategy == Strategy::Trafilatura {
        None
    } else {
        contained(|| run_readability(doc, url))
    };
    // Neither extractor can be interrupted: the budget is checked between them.
    budget.check_time("readability")?;
    let trafilatura = if strategy == Strategy::Readability {
        None
    } else {
        contained(|| run_trafilatura(&checked, url))
    };
    budget.check_time("trafilatura")?;

    let readability_title = readability.as_ref().map(|r| r.title.clone());
    let title = meta.choose(readability_title.as_deref());

    let r_blocks = match readability {
        Some(r) => Some(html_to_blocks(&r.content_html, limits, budget)?),
        None => None,
    }
    .filter(|b| !b.is_empty());
    let t_blocks = match trafilatura {
        Some(t) => Some(html_to_blocks(&t, limits, budget)?),
        None => None,
    }
    .filter(|b| !b.is_empty());
    let (blocks, extractor) = match (r_blocks, t_blocks) {
        (Some(r), Some(t)) => {
            let (r_text, t_text) = (join_blocks(&r), join_blocks(&t));
            budget.spend((r_text.len() + t_text.len()) as u64, "choosing a text")?;
            if select::prefer_tighter(&r_text, &t_text) {
                (t, Extractor::Trafilatura)
            } else {
                (r, Extractor::Readability)
            }
        }
        (Some(r), None) => (r, Extractor::Readability),
        (None, Some(t)) => (t, Extractor::Trafilatura),
        // Readability consumed the first tree; this rare path parses the checked page again.
        (None, None) => (body_blocks(&checked.parse(), budget)?, Extractor::Body),
    };
    Ok(HtmlContent {
        title,
        blocks,
        extractor,
        markup: Some(markup),
    })
}

/// Runs a third-party extractor so that a panic on some odd page costs only that
/// extractor's output (the other one, or the body text, is used), not the caller's thread.
fn contained<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .ok()
        .flatten()
}

struct ReadabilityOutput {
    title: String,
    content_html: String,
}

fn run_readability(doc: Document, url: Option<&str>) -> Option<ReadabilityOutput> {
    let cfg = dom_smoothie::Config {
        text_mode: dom_smoothie::TextMode::Formatted,
        ..Default::default()
    };
    let url = web_url(url);
    let mut r = dom_smoothie::Readability::with_document(doc, url, Some(cfg)).ok()?;
    let article = r.parse().ok()?;
    Some(ReadabilityOutput {
        title: article.title,
        content_html: article.content.to_string(),
    })
}

fn run_trafilatura(html: &Checked, url: Option<&str>) -> Option<String> {
    let mut opts = trafilatura::Options::default();
    opts.original_url = web_url(url).and_then(|u| url::Url::parse(u).ok());
    let result = guard::trafilatura_extract(html, &opts).ok()?;
    Some(result.content_html)
}

/// The page URL if it is an absolute http(s) URL. Anything else only costs link resolution,
/// so it is dropped rather than allowed to make an extractor refuse the page.
fn web_url(url: Option<&str>) -> Option<&str> {
    url.filter(|u| url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")))
}

/// The visible text of `<body>`, for pages with no article (listings, short notices).
fn body_blocks(doc: &Document, budget: &mut Budget) -> Result<Vec<Block>, TooExpensive> {
    let body = doc.select("body");
    match body.nodes().first() {
        Some(node) => node_to_blocks(node, budget),
        None => node_to_blocks(&doc.root(), budget),
    }
}
