//! The CPU-bound part of one source: main content, chunks and entities, computed by
//! `extract-core` in one synchronous call (HTML parse trees are not `Send`, so the worker
//! runs [`analyze`] inside `spawn_blocking`), under one [`Budget`] of time and work.

use aho_corasick::AhoCorasick;
use extract_core::{
    Budget, Chunk, ChunkOptions, EntitiesStatus, EntityReport, EntitySource, Exceeded,
    ExtractError, ExtractOptions, Extractor, LanguageSource, Limits, Metadata, TooExpensive,
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
                    json!({
                        "text": c.text,
                        "heading_path": c.heading_path,
                        "char_start": c.char_start,
                        "char_end": c.char_end,
                        "chunk_index": c.index,
                    })
                    .to_string()
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
    let chunks = extract_core::chunk_in(&extracted.sections, opts, limits, &mut budget)?;
    // JSON-LD and mailto:/tel: links exist only in markup; plain text is searched as text.
    let entities = extract_core::find_entities_in(
        extracted.markup.as_ref(),
        &extracted.text,
        limits,
        &mut budget,
    )?;
    let links = link_entities(&entities, &chunks, &mut budget)?;
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
