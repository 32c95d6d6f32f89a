//! Main content of an HTML page: two extractors, a choice between them, and a fallback to
//! the page's visible text when neither finds an article.

mod guard;
mod select;
mod title;

pub use select::{Extractor, Strategy};

use dom_query::Document;

use crate::blocks::{Block, html_to_blocks, join_blocks, max_depth, node_to_blocks};
use crate::plain::text_to_blocks;

/// What the HTML path hands back to [`crate::extract`].
pub(crate) struct HtmlContent {
    pub title: Option<String>,
    pub blocks: Vec<Block>,
    pub extractor: Extractor,
}

/// Pages nested deeper than this skip both extractors: they walk the tree recursively and a
/// hostile page (tens of thousands of nested elements) would overflow the thread's stack.
/// Real pages stay well under a hundred levels.
const MAX_DOM_DEPTH: usize = 400;

/// Extracts the title and main-content blocks of `html`.
pub(crate) fn extract_html(html: &str, url: Option<&str>, strategy: Strategy) -> HtmlContent {
    if guard::estimated_depth(html) > guard::MAX_ESTIMATED_DEPTH {
        return HtmlContent {
            title: None,
            blocks: text_to_blocks(&guard::strip_tags(html), false),
            extractor: Extractor::Body,
        };
    }
    let doc = Document::from(html);
    // Title candidates are read before Readability mutates the document it is handed.
    let meta = title::TitleCandidates::from_document(&doc);
    if max_depth(&doc.root()) > MAX_DOM_DEPTH {
        return HtmlContent {
            title: meta.choose(None),
            blocks: body_blocks(&doc),
            extractor: Extractor::Body,
        };
    }
    let readability = if strategy == Strategy::Trafilatura {
        None
    } else {
        contained(|| run_readability(doc, url))
    };
    let trafilatura = if strategy == Strategy::Readability {
        None
    } else {
        contained(|| run_trafilatura(html, url))
    };

    let readability_title = readability.as_ref().map(|r| r.title.clone());
    let title = meta.choose(readability_title.as_deref());

    let r_blocks = readability.map(|r| r.blocks).filter(|b| !b.is_empty());
    let t_blocks = trafilatura.filter(|b| !b.is_empty());
    let (blocks, extractor) = match (r_blocks, t_blocks) {
        (Some(r), Some(t)) => {
            if select::prefer_tighter(&join_blocks(&r), &join_blocks(&t)) {
                (t, Extractor::Trafilatura)
            } else {
                (r, Extractor::Readability)
            }
        }
        (Some(r), None) => (r, Extractor::Readability),
        (None, Some(t)) => (t, Extractor::Trafilatura),
        (None, None) => (body_blocks(&Document::from(html)), Extractor::Body),
    };
    HtmlContent {
        title,
        blocks,
        extractor,
    }
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
    blocks: Vec<Block>,
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
        blocks: html_to_blocks(&article.content),
    })
}

fn run_trafilatura(html: &str, url: Option<&str>) -> Option<Vec<Block>> {
    let mut opts = trafilatura::Options::default();
    opts.original_url = web_url(url).and_then(|u| url::Url::parse(u).ok());
    let result = trafilatura::extract(html, &opts).ok()?;
    Some(html_to_blocks(&result.content_html))
}

/// The page URL if it is an absolute http(s) URL. Anything else only costs link resolution,
/// so it is dropped rather than allowed to make an extractor refuse the page.
fn web_url(url: Option<&str>) -> Option<&str> {
    url.filter(|u| url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")))
}

/// The visible text of `<body>`, for pages with no article (listings, short notices).
fn body_blocks(doc: &Document) -> Vec<Block> {
    let body = doc.select("body");
    match body.nodes().first() {
        Some(node) => node_to_blocks(node),
        None => node_to_blocks(&doc.root()),
    }
}
