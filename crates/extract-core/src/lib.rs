//! Main-content extraction for the pipeline: the readable text and title of a fetched page,
//! its sections and chunks, and the entities it names.
//!
//! Everything here is synchronous and CPU-bound (HTML parse trees are not `Send`): async
//! callers run it inside `spawn_blocking`.
//!
//! - [`extract`] / [`extract_with`]: HTML (or plain text) to title, whole main text and
//!   sections.
//! - [`Extracted::markdown`]: the same main content as Markdown (headings, lists, tables,
//!   code, links and images with absolute URLs).
//! - [`Extracted::metadata`] ([`metadata`]): authors, dates, language, site name,
//!   description, canonical URL and image, with a documented order of sources.
//! - [`chunk`]: sections to overlapping chunks of bounded size, with offsets into the text.
//! - [`find_entities`]: schema.org JSON-LD entities, e-mail addresses, phone numbers, domains.
//! - [`pdf`]: text per page and metadata of PDF documents ([`extract_pdf_in`] gives an
//!   [`Extracted`] whose sections and chunks carry page numbers).
//! - [`sitemap`]: a bounded reader of XML and text sitemaps (a crawl's sitemap discovery).
//! - [`render_need()`]: whether a page's static HTML needs a browser to show its content
//!   (the `auto` render decision), and why.
//! - [`metric`]: the Article Extraction Benchmark's shingle metric, used by the
//!   `extract_eval` example to measure quality on real pages.
//!
//! Every page costs a bounded amount: markup enters the DOM only through
//! [`html::parse_guarded`] / [`html::check`] (a linear pre-scan against [`Limits`]), and the
//! `*_in` functions ([`extract_in`], [`chunk_in`], [`find_entities_in`]) spend from one
//! [`Budget`] of time and work per document, failing with [`TooExpensive`] when it runs out.

#![warn(missing_docs)]

mod blocks;
mod chunk;
mod entities;
mod error;
pub mod html;
mod limits;
pub mod links;
mod markdown;
pub mod metadata;
pub mod metric;
pub mod pdf;
mod plain;
pub mod render_need;
mod sections;
pub mod sitemap;

pub use chunk::{Chunk, ChunkOptions, chunk, chunk_in};
pub use entities::{
    EntitiesStatus, Entity, EntityKind, EntityReport, EntitySource, Markup, clean_jsonld_block,
    decode_jsonld_entities, find_entities, find_entities_in,
};
pub use error::ExtractError;
pub use html::{Extractor, Strategy};
pub use limits::{Budget, Exceeded, Limits, TooExpensive};
pub use metadata::{Language, LanguageSource, Metadata};
pub use pdf::{PdfDocument, PdfError, PdfMetadata, extract_pdf_in, looks_like_pdf, read_pdf};
pub use render_need::{RenderReason, render_need};
pub use sections::{HEADING_TRAIL_SEPARATOR, SECTION_SEPARATOR, Section};

use serde::{Deserialize, Serialize};

/// The readable content of one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// The document's title, when it declares or shows one.
    pub title: Option<String>,
    /// The whole main text: the sections' texts joined with [`SECTION_SEPARATOR`].
    /// Stored as is, so quality can be measured on what users read.
    pub text: String,
    /// The main text cut at its headings.
    pub sections: Vec<Section>,
    /// Which extractor's output was kept.
    pub extractor: Extractor,
    /// What entity finding needs from the markup, read from the one parse of the page
    /// (`None` for text documents and for pages too deep to parse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup: Option<Markup>,
    /// The main content as Markdown: rendered from the same extractor output as `text`
    /// (headings, lists, tables, code, links and images with absolute URLs); for text
    /// documents, the paragraphs escaped (plain text) or the document itself (Markdown).
    #[serde(default)]
    pub markdown: String,
    /// What the page says about itself (authors, dates, language, site, canonical URL...).
    #[serde(default)]
    pub metadata: Metadata,
}

/// How a content type is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Markdown,
    Plain,
}

fn classify(content_type: &str, body: &str) -> Result<Kind, ExtractError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/html" | "application/xhtml+xml" | "application/xml+html" => Ok(Kind::Html),
        "text/markdown" | "text/x-markdown" => Ok(Kind::Markdown),
        "text/plain" => Ok(Kind::Plain),
        // No declared type: servers that omit it usually serve HTML; look before guessing.
        "" | "application/octet-stream" => Ok(if looks_like_html(body) {
            Kind::Html
        } else {
            Kind::Plain
        }),
        _ => Err(ExtractError::UnsupportedContentType(
            content_type.to_string(),
        )),
    }
}

fn looks_like_html(body: &str) -> bool {
    let head: String = body
        .trim_start()
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with('<')
        && ["<!doctype html", "<html", "<head", "<body", "<p", "<div"]
            .iter()
            .any(|t| head.contains(t))
}

/// Options of [`extract_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractOptions {
    /// Which extractors run on HTML.
    pub strategy: Strategy,
    /// What one document may cost.
    pub limits: Limits,
}

/// Extracts the title, whole main text and sections of a document, with the default
/// options (both extractors). See [`extract_with`].
///
/// # Errors
/// As [`extract_with`].
pub fn extract(
    body: &str,
    url: Option<&str>,
    content_type: &str,
) -> Result<Extracted, ExtractError> {
    extract_with(body, url, content_type, &ExtractOptions::default())
}

/// Extracts the title, whole main text and sections of a document.
///
/// `content_type` is the HTTP `Content-Type` (parameters such as `charset` are ignored; the
/// body is already text). HTML goes through the main-content extractors; `text/plain` and
/// `text/markdown` pass through, split into paragraphs (and, for Markdown, at headings).
/// `url` is the page's absolute URL, used to resolve links; a bad one is ignored.
///
/// # Errors
/// [`ExtractError::UnsupportedContentType`] for anything else (images, PDF, JSON),
/// [`ExtractError::NoContent`] when the document has no text at all, and
/// [`ExtractError::TooExpensive`] when it is over `opts.limits`.
pub fn extract_with(
    body: &str,
    url: Option<&str>,
    content_type: &str,
    opts: &ExtractOptions,
) -> Result<Extracted, ExtractError> {
    extract_in(
        body,
        url,
        content_type,
        opts,
        &mut Budget::new(&opts.limits),
    )
}

/// [`extract_with`], spending from `budget` (shared with the document's chunking and
/// entity finding, so the whole document has one budget).
///
/// # Errors
/// As [`extract_with`]; [`ExtractError::TooExpensive`] also when `budget` runs out.
pub fn extract_in(
    body: &str,
    url: Option<&str>,
    content_type: &str,
    opts: &ExtractOptions,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    let (title, blocks, extractor, markup, markdown, metadata) = match classify(content_type, body)?
    {
        Kind::Html => {
            let h = html::extract_html(body, url, opts.strategy, &opts.limits, budget)?;
            (
                h.title,
                h.blocks,
                h.extractor,
                h.markup,
                h.markdown,
                Some(h.metadata),
            )
        }
        kind @ (Kind::Markdown | Kind::Plain) => {
            if body.len() > opts.limits.max_input_bytes {
                return Err(TooExpensive::new(
                    Exceeded::InputBytes,
                    format!(
                        "{} bytes of text, over the cap of {}",
                        body.len(),
                        opts.limits.max_input_bytes
                    ),
                )
                .into());
            }
            budget.spend(body.len() as u64, "splitting text")?;
            let blocks = plain::text_to_blocks(body, kind == Kind::Markdown);
            let title = blocks.iter().find_map(|b| match b.kind {
                blocks::BlockKind::Heading(1) => Some(b.text.clone()),
                _ => None,
            });
            let markdown = if kind == Kind::Markdown {
                body.replace("\r\n", "\n").trim().to_string()
            } else {
                markdown::from_blocks(&blocks)
            };
            (title, blocks, Extractor::PlainText, None, markdown, None)
        }
    };
    if blocks.is_empty() {
        return Err(ExtractError::NoContent);
    }
    let sections = sections::sections_from_blocks(&blocks);
    let text = blocks::join_blocks(&blocks);
    let metadata = match metadata {
        Some(m) => m,
        None => metadata::for_text(title.clone(), &text, &blocks),
    };
    Ok(Extracted {
        title,
        text,
        sections,
        extractor,
        markup,
        markdown,
        metadata,
    })
}
