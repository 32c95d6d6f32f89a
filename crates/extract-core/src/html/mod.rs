//! Main content of an HTML page: two extractors, a choice between them, and a fallback to
//! the page's visible text when neither finds an article. The page is parsed once, through
//! the guard ([`parse_guarded`], [`check`]), the only way into the DOM.

mod guard;
mod select;
mod title;

pub use guard::{Checked, Scan, check, parse_guarded};
pub use select::{Extractor, Strategy};

use dom_query::Document;

use crate::blocks::{Block, join_blocks, max_depth, node_to_blocks};
use crate::entities::Markup;
use crate::limits::{Budget, Exceeded, Limits, TooExpensive};
use crate::markdown::{self, SourceHints};
use crate::metadata::{self, MainContent, Metadata, PageMeta};
use crate::plain::text_to_blocks;

/// What the HTML path hands back to [`crate::extract`].
pub(crate) struct HtmlContent {
    pub title: Option<String>,
    pub blocks: Vec<Block>,
    pub extractor: Extractor,
    pub markup: Option<Markup>,
    pub markdown: String,
    pub metadata: Metadata,
}

/// Pages nested deeper than this skip both extractors: they walk the tree recursively and a
/// hostile page (tens of thousands of nested elements) would overflow the thread's stack.
/// Real pages stay well under a hundred levels.
const MAX_DOM_DEPTH: usize = 400;

/// Extracts the title, main-content blocks, Markdown and metadata of `html`.
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
            let blocks = text_to_blocks(&guard::strip_tags(html), false);
            let text = join_blocks(&blocks);
            let metadata =
                PageMeta::default().finish(&MainContent::new(None, &text, &blocks, Vec::new()));
            return Ok(HtmlContent {
                title: None,
                markdown: markdown::from_blocks(&blocks),
                blocks,
                extractor: Extractor::Body,
                markup: None,
                metadata,
            });
        }
        Err(e) => return Err(e),
    };
    let doc = checked.parse();
    budget.check_time("parsing the page")?;
    // Title candidates, entity markup, metadata and Markdown hints are read before
    // Readability mutates the document it is handed, so the page is parsed once for all.
    let meta = title::TitleCandidates::from_document(&doc);
    let markup = Markup::from_document(&doc);
    let base = metadata::base_url(&doc, web_url(url));
    let page_meta = PageMeta::from_document(&doc, &markup.jsonld, base.clone(), budget)?;
    if max_depth(&doc.root()) > MAX_DOM_DEPTH {
        let title = meta.choose(None);
        let hints = SourceHints::default();
        let out = body_output(&doc, base, &hints, budget)?;
        let text = join_blocks(&out.blocks);
        let metadata = page_meta.finish(&MainContent::new(
            title.clone(),
            &text,
            &out.blocks,
            Vec::new(),
        ));
        return Ok(HtmlContent {
            title,
            blocks: out.blocks,
            extractor: Extractor::Body,
            markup: Some(markup),
            markdown: out.markdown,
            metadata,
        });
    }
    budget.check_time("reading the page")?;
    // Neither extractor can be interrupted: the budget is checked between them.
    // Trafilatura parses the markup itself, so it runs first: the Markdown hints are read
    // for the paragraphs it kept, before Readability takes the tree.
    let trafilatura = if strategy == Strategy::Readability {
        None
    } else {
        contained(|| run_trafilatura(&checked, url))
    };
    budget.check_time("trafilatura")?;
    let t_out = match &trafilatura {
        Some(t) => Some(parse_output(t, limits, budget)?),
        None => None,
    }
    .filter(|o| !o.blocks.is_empty());
    let wanted = match &t_out {
        Some(o) => markdown::leaf_keys(&o.doc.root(), budget)?,
        None => Default::default(),
    };
    let hints = SourceHints::from_document(&doc, base.clone(), &wanted, budget)?;
    let readability = if strategy == Strategy::Trafilatura {
        None
    } else {
        contained(|| run_readability(doc, url))
    };
    budget.check_time("readability")?;

    let readability_title = readability.as_ref().map(|r| r.title.clone());
    let title = meta.choose(readability_title.as_deref());

    let r_out = match &readability {
        Some(r) => Some(parse_output(&r.content_html, limits, budget)?),
        None => None,
    }
    .filter(|o| !o.blocks.is_empty());
    // `<time>` elements of the main content, for the publication date: Readability keeps
    // them, trafilatura drops them, so Readability's content is read whichever text wins.
    let times: Vec<String> = [&r_out, &t_out]
        .into_iter()
        .flatten()
        .flat_map(|o| {
            o.doc
                .select("time[datetime]")
                .nodes()
                .iter()
                .take(8)
                .filter_map(|n| n.attr("datetime").map(|d| d.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let ctx = |relink| markdown::Context {
        base: base.clone(),
        hints: Some(&hints),
        relink,
    };
    let (out, extractor) = match (r_out, t_out) {
        (Some(r), Some(t)) => {
            let (r_text, t_text) = (join_blocks(&r.blocks), join_blocks(&t.blocks));
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
        (None, None) => {
            let out = body_output(&checked.parse(), base.clone(), &hints, budget)?;
            let text = join_blocks(&out.blocks);
            let metadata =
                page_meta.finish(&MainContent::new(title.clone(), &text, &out.blocks, times));
            return Ok(HtmlContent {
                title,
                blocks: out.blocks,
                extractor: Extractor::Body,
                markup: Some(markup),
                markdown: out.markdown,
                metadata,
            });
        }
    };
    // Trafilatura, as configured for the text, drops links and images: its paragraphs get
    // them back from the page when their words match.
    let markdown = markdown::render(
        &out.doc.root(),
        &ctx(extractor == Extractor::Trafilatura),
        budget,
    )?;
    let text = join_blocks(&out.blocks);
    let metadata = page_meta.finish(&MainContent::new(title.clone(), &text, &out.blocks, times));
    Ok(HtmlContent {
        title,
        blocks: out.blocks,
        extractor,
        markup: Some(markup),
        markdown,
        metadata,
    })
}

/// An extractor's output, parsed through the guard, and its blocks.
struct Output {
    doc: Document,
    blocks: Vec<Block>,
}

fn parse_output(html: &str, limits: &Limits, budget: &mut Budget) -> Result<Output, TooExpensive> {
    budget.spend(html.len() as u64, "scanning an extractor's output")?;
    let doc = parse_guarded(html, limits)?;
    let blocks = node_to_blocks(&doc.root(), budget)?;
    Ok(Output { doc, blocks })
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

/// The visible text and Markdown of `<body>`, for pages with no article (listings, short
/// notices).
struct BodyOutput {
    blocks: Vec<Block>,
    markdown: String,
}

fn body_output(
    doc: &Document,
    base: Option<url::Url>,
    hints: &SourceHints,
    budget: &mut Budget,
) -> Result<BodyOutput, TooExpensive> {
    let body = doc.select("body");
    let root = doc.root();
    let node = body.nodes().first().copied().unwrap_or(root);
    let blocks = node_to_blocks(&node, budget)?;
    let ctx = markdown::Context {
        base,
        hints: Some(hints),
        relink: false,
    };
    let markdown = markdown::render(&node, &ctx, budget)?;
    Ok(BodyOutput { blocks, markdown })
}
