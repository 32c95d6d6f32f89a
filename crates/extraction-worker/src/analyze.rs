//! The CPU-bound part of one source: main content, chunks and entities, computed by
//! `extract-core` in one synchronous call (HTML parse trees are not `Send`, so the worker
//! runs [`analyze_body`] inside `spawn_blocking`), under one [`Budget`] of time and work.
//! A PDF (stored as bytes) takes `extract_core::pdf`'s path under the same budget; its
//! chunks carry their page.

use aho_corasick::AhoCorasick;
use extract_core::pdf::PDF_MEDIA_TYPE;
use extract_core::{
    Budget, Chunk, ChunkOptions, EntitiesStatus, EntityReport, EntitySource, Exceeded,
    ExtractError, ExtractOptions, Extracted, Extractor, LanguageSource, Limits, Metadata,
    TooExpensive,
};
use pipeline_store::documents::NewDocument;
use pipeline_store::extractions::{NewAnalysis, NewEntity};
use serde_json::json;

/// Everything the worker stores about one document, before any I/O.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The document's title, when found.
    pub title: Option<String>,
    /// The whole cleaned main text (stored in `sources.content`).
    pub text: String,
    /// The chunks, one `extractions` row each.
    pub chunks: Vec<Chunk>,
    /// The entities, with the extractors that failed.
    pub entities: EntityReport,
    /// For each entity of `entities.entities` (same order), the chunk indexes it is linked to.
    pub links: Vec<Vec<usize>>,
    /// Which extractor's text was kept.
    pub extractor: Extractor,
    /// The main content as Markdown (stored in `sources.markdown`).
    pub markdown: String,
    /// What the page says about itself (stored in columns of `sources`).
    pub metadata: Metadata,
}

impl Analysis {
    /// The rows the store writes for this analysis
    /// ([`pipeline_store::extractions::store_analysis`]).
    pub fn rows(&self) -> NewAnalysis<'_> {
        let status = self.entities.status();
        NewAnalysis {
            text: &self.text,
            title: self.title.as_deref(),
            chunks: self
                .chunks
                .iter()
                .map(|c| {
                    let mut data = json!({
                        "text": c.text,
                        "heading_path": c.heading_path,
                        "char_start": c.char_start,
                        "char_end": c.char_end,
                        "chunk_index": c.index,
                    });
                    // Chunks of a PDF say which page they come from, so a hit can cite it.
                    if let Some(page) = c.page {
                        data["page"] = json!(page);
                    }
                    data.to_string()
                })
                .collect(),
            entities: self
                .entities
                .entities
                .iter()
                .map(|e| NewEntity {
                    kind: e.kind.as_str(),
                    name: &e.name,
                    normalized: &e.normalized,
                    data: json!({ "source": e.source }).to_string(),
                })
                .collect(),
            links: &self.links,
            document: self.document(),
            entities_status: status.as_str(),
            entities_extracted: status != EntitiesStatus::Failed,
        }
    }
}

impl Analysis {
    /// The Markdown and metadata as the `sources` columns take them.
    fn document(&self) -> NewDocument<'_> {
        let m = &self.metadata;
        NewDocument {
            markdown: &self.markdown,
            authors: &m.authors,
            byline: m.byline.as_deref(),
            published: m.published,
            modified: m.modified,
            language: m.language.as_ref().map(|l| l.tag.as_str()),
            language_source: m.language.as_ref().map(|l| match l.source {
                LanguageSource::Declared => "declared",
                LanguageSource::Detected => "detected",
            }),
            site_name: m.site_name.as_deref(),
            description: m.description.as_deref(),
            canonical_url: m.canonical_url.as_ref().map(|u| u.as_str()),
            image_url: m.image.as_ref().map(|u| u.as_str()),
        }
    }
}

/// A source's stored body: the text of a page (`sources.raw_content`), or the bytes of a
/// binary document (`sources.raw_bytes`: a PDF).
#[derive(Debug, Clone)]
pub enum Body {
    /// A page's text.
    Text(String),
    /// A binary document's bytes.
    Bytes(Vec<u8>),
}

impl Body {
    /// The body a source stored: its bytes when it has them, else its text; `None` when
    /// it has neither (it was never fetched).
    pub fn from_stored(raw_content: Option<String>, raw_bytes: Option<Vec<u8>>) -> Option<Self> {
        match (raw_bytes, raw_content) {
            (Some(bytes), _) => Some(Self::Bytes(bytes)),
            (None, Some(text)) => Some(Self::Text(text)),
            (None, None) => None,
        }
    }
}

/// [`analyze`] for a page's text; for bytes, [`analyze_pdf`] when they are a PDF (by
/// content type or by their `%PDF-` header).
///
/// # Errors
/// As [`analyze`] and [`analyze_pdf`]; bytes that are not a PDF are an unsupported
/// content type.
pub fn analyze_body(
    body: &Body,
    url: Option<&str>,
    content_type: &str,
    opts: ChunkOptions,
    limits: &Limits,
) -> Result<Analysis, ExtractError> {
    match body {
        Body::Text(text) => analyze(text, url, content_type, opts, limits),
        Body::Bytes(bytes) => {
            let declared = content_type
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(PDF_MEDIA_TYPE));
            if declared || extract_core::looks_like_pdf(bytes) {
                analyze_pdf(bytes, opts, limits)
            } else {
                Err(ExtractError::UnsupportedContentType(
                    content_type.to_owned(),
                ))
            }
        }
    }
}

/// Extracts, chunks and finds entities, all within `limits` and one budget of its time and
/// work. The page is parsed once: entity finding reads the markup the extraction kept.
///
/// # Errors
/// What extract-core refuses (unsupported content type, no text) and what is over the
/// limits (`TooExpensive`): permanent by nature.
pub fn analyze(
    body: &str,
    url: Option<&str>,
    content_type: &str,
    opts: ChunkOptions,
    limits: &Limits,
) -> Result<Analysis, ExtractError> {
    let mut budget = Budget::new(limits);
    let extract_opts = ExtractOptions {
        limits: *limits,
        ..ExtractOptions::default()
    };
    let extracted = extract_core::extract_in(body, url, content_type, &extract_opts, &mut budget)?;
    complete(extracted, opts, limits, &mut budget)
}

/// Reads a PDF (text per page, Info metadata) and chunks it and finds its entities, within
/// `limits` (the PDF caps among them) and one budget, as [`analyze`] does a page. Each
/// chunk keeps its page number; the title, author and dates fill the same [`Metadata`] a
/// page's do.
///
/// # Errors
/// A PDF that is encrypted, broken beyond repair or not a PDF (`ExtractError::Pdf`), one
/// over a limit (`TooExpensive`: pages, decoded bytes, text, time), one without text (a
/// scan: `NoContent`): all permanent.
pub fn analyze_pdf(
    bytes: &[u8],
    opts: ChunkOptions,
    limits: &Limits,
) -> Result<Analysis, ExtractError> {
    let mut budget = Budget::new(limits);
    let extracted = extract_core::extract_pdf_in(bytes, limits, &mut budget)?;
    complete(extracted, opts, limits, &mut budget)
}

/// Chunks an extraction, finds its entities and links them to the chunks, from `budget`.
fn complete(
    extracted: Extracted,
    opts: ChunkOptions,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Analysis, ExtractError> {
    let chunks = extract_core::chunk_in(&extracted.sections, opts, limits, budget)?;
    // JSON-LD and mailto:/tel: links exist only in markup; plain text is searched as text.
    let entities =
        extract_core::find_entities_in(extracted.markup.as_ref(), &extracted.text, limits, budget)?;
    let links = link_entities(&entities, &chunks, budget)?;
    Ok(Analysis {
        title: extracted.title,
        text: extracted.text,
        chunks,
        entities,
        links,
        extractor: extracted.extractor,
        markdown: extracted.markdown,
        metadata: extracted.metadata,
    })
}

/// Links each entity to the chunks whose text mentions it (case and spacing ignored), or to
/// the first chunk when no chunk does: JSON-LD entities and link targets often appear
/// nowhere in the text, yet they belong to the document, and the first chunk stands for it.
///
/// One Aho-Corasick pass per chunk finds every entity at once, so the cost grows with the
/// text and the matches, not with entities times chunks (thousands of each on a hostile
/// page made the pairwise search quadratic).
fn link_entities(
    report: &EntityReport,
    chunks: &[Chunk],
    budget: &mut Budget,
) -> Result<Vec<Vec<usize>>, TooExpensive> {
    let mut links: Vec<Vec<usize>> = vec![Vec::new(); report.entities.len()];
    if chunks.is_empty() {
        return Ok(links);
    }
    // Pattern k belongs to entity owner[k]; an entity has its name and its normal form.
    let mut patterns = Vec::new();
    let mut owner = Vec::new();
    for (i, entity) in report.entities.iter().enumerate() {
        let name = fold(&entity.name);
        if entity.source == EntitySource::JsonLd || name.is_empty() {
            continue;
        }
        let normalized = fold(&entity.normalized);
        if !normalized.is_empty() && normalized != name {
            patterns.push(normalized);
            owner.push(i);
        }
        patterns.push(name);
        owner.push(i);
    }
    if !patterns.is_empty() {
        let bytes: usize = patterns.iter().map(String::len).sum();
        budget.spend(bytes as u64, "linking entities")?;
        let matcher = AhoCorasick::new(&patterns)
            .map_err(|e| TooExpensive::new(Exceeded::Work, format!("entity patterns: {e}")))?;
        for chunk in chunks {
            let text = fold(&chunk.text);
            budget.spend(text.len() as u64, "linking entities")?;
            for m in matcher.find_overlapping_iter(&text) {
                budget.spend(1, "linking entities")?;
                let hits = &mut links[owner[m.pattern().as_usize()]];
                if hits.last() != Some(&chunk.index) {
                    hits.push(chunk.index);
                }
            }
        }
    }
    for hits in &mut links {
        if hits.is_empty() {
            hits.push(chunks[0].index);
        }
    }
    Ok(links)
}

/// Lower-cased, whitespace collapsed: how mentions are compared.
fn fold(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!DOCTYPE html><html><head><title>Acme news</title>
<script type="application/ld+json">{"@type":"Organization","name":"Acme Corporation"}</script>
</head><body><article><h1>Acme news</h1>
<p>First paragraph about the weather, long enough to be kept by the extractors as text.</p>
<h2>Contact</h2><p>Write to Press@Acme.example for more, or call +1 (555) 010-2030 today.</p>
</article></body></html>"#;

    #[test]
    fn entities_link_to_the_chunks_that_mention_them() {
        let a = analyze(
            PAGE,
            Some("https://acme.example/news"),
            "text/html",
            ChunkOptions {
                max_chars: 100,
                overlap_chars: 0,
            },
            &Limits::default(),
        )
        .unwrap();
        assert!(a.chunks.len() >= 2, "{:?}", a.chunks);
        let find = |normalized: &str| {
            let i = a
                .entities
                .entities
                .iter()
                .position(|e| e.normalized == normalized)
                .unwrap_or_else(|| panic!("{normalized} not found in {:?}", a.entities));
            a.links[i].clone()
        };
        let email = find("press@acme.example");
        assert!(!email.is_empty());
        for i in &email {
            assert!(
                a.chunks[*i]
                    .text
                    .to_lowercase()
                    .contains("press@acme.example")
            );
        }
        assert_ne!(email, vec![0], "the e-mail is not in the first chunk");
        assert_eq!(find("Acme Corporation"), vec![0], "JSON-LD goes to chunk 0");
    }

    #[test]
    fn plain_text_passes_through_without_markup_entities() {
        let a = analyze(
            "Hello there.\n\nMail me at a@b.example.",
            None,
            "text/plain",
            ChunkOptions::default(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(a.extractor, Extractor::PlainText);
        assert_eq!(a.text, "Hello there.\n\nMail me at a@b.example.");
        assert!(a.entities.completed.iter().all(|c| c == "text"));
    }

    #[test]
    fn a_pdf_is_read_page_by_page_with_its_metadata() {
        let pages = [
            "The first page talks about rivers and their long courses to the sea.",
            "The second page is about mountains, their snow and their passes.",
            "The third page describes forests of oak and beech in the autumn.",
        ];
        let pdf = extract_core::pdf::write_text_pdf(&pages, Some("Landscapes"), Some("A. Writer"));
        let opts = ChunkOptions {
            max_chars: 80,
            overlap_chars: 0,
        };
        let a = analyze_body(
            &Body::Bytes(pdf),
            None,
            "application/pdf",
            opts,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(a.extractor, Extractor::Pdf);
        assert_eq!(a.title.as_deref(), Some("Landscapes"));
        assert_eq!(a.metadata.byline.as_deref(), Some("A. Writer"));
        for page in pages {
            assert!(a.text.contains(page), "{page} not in {:?}", a.text);
        }
        let rows = a.rows();
        let cited: Vec<u64> = rows
            .chunks
            .iter()
            .map(|c| {
                let data: serde_json::Value = serde_json::from_str(c).unwrap();
                data["page"]
                    .as_u64()
                    .expect("every chunk of a PDF has its page")
            })
            .collect();
        assert_eq!(cited.first(), Some(&1));
        assert_eq!(cited.last(), Some(&3));
        assert!(cited.windows(2).all(|w| w[0] <= w[1]), "{cited:?}");
    }

    #[test]
    fn a_page_has_no_page_number_in_its_chunks() {
        let a = analyze(
            PAGE,
            None,
            "text/html",
            ChunkOptions::default(),
            &Limits::default(),
        )
        .unwrap();
        let data: serde_json::Value = serde_json::from_str(&a.rows().chunks[0]).unwrap();
        assert!(data.get("page").is_none(), "{data}");
    }

    #[test]
    fn bytes_that_are_no_pdf_are_refused() {
        let refused = analyze_body(
            &Body::Bytes(b"\x89PNG\r\n".to_vec()),
            None,
            "image/png",
            ChunkOptions::default(),
            &Limits::default(),
        );
        assert!(
            matches!(refused, Err(ExtractError::UnsupportedContentType(_))),
            "{refused:?}"
        );
        let broken = analyze_body(
            &Body::Bytes(b"%PDF-1.7\nnothing else".to_vec()),
            None,
            "application/pdf",
            ChunkOptions::default(),
            &Limits::default(),
        );
        assert!(matches!(broken, Err(ExtractError::Pdf(_))), "{broken:?}");
    }

    #[test]
    fn refused_content_is_an_error() {
        assert!(matches!(
            analyze(
                "%PDF-1.4",
                None,
                "application/pdf",
                ChunkOptions::default(),
                &Limits::default()
            ),
            Err(ExtractError::UnsupportedContentType(_))
        ));
        assert!(matches!(
            analyze(
                "   ",
                None,
                "text/plain",
                ChunkOptions::default(),
                &Limits::default()
            ),
            Err(ExtractError::NoContent)
        ));
    }
}
