//! `pipelinectl sources show ID [--markdown]`: one source as a document: where it is, and
//! what its last extraction read about it (authors, dates with the page's own UTC offset,
//! language, site, description, canonical URL, main image); with `--markdown`, its
//! Markdown alone on standard output (`> page.md`). Then the values the schema stage read
//! on the page, by record and field, each with its quote; values whose quote is not on the
//! page (ungrounded: never facts) are listed apart. The `--json` answer has the fields of
//! the API's `GET /api/v1/sources/{id}`, with `values` and `ungrounded_values` added.

use pipeline_ops::Services;
use pipeline_store::documents::{self, DocumentRow};
use pipeline_store::facts::{self, FactRow};
use serde_json::json;

use crate::jobs::parse_id;
use crate::output::{CmdResult, Failure, opt, outln, print_json};

/// `pipelinectl sources ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SourcesCommand {
    /// Shows a source's metadata; with `--markdown`, prints its Markdown instead.
    Show {
        /// The source id.
        id: String,
        /// Print the page's Markdown alone (with `--json`: add it to the answer).
        #[arg(long)]
        markdown: bool,
    },
}

/// Runs a `sources` command.
pub async fn run(services: &Services, cmd: SourcesCommand, as_json: bool) -> CmdResult {
    match cmd {
        SourcesCommand::Show { id, markdown } => show(services, &id, markdown, as_json).await,
    }
}

/// The document as JSON, with the API's field names.
pub fn document_json(d: &DocumentRow) -> serde_json::Value {
    let mut v = json!({
        "id": d.id,
        "project_id": d.project_id,
        "url": d.url,
        "status": d.status,
        "created_by_job_id": d.created_by_job_id,
        "content_type": d.content_type,
        "fetched_at": d.fetched_at,
        "extracted": d.markdown_bytes.is_some(),
        "metadata": {
            "title": d.title,
            "authors": d.authors.clone().unwrap_or_default(),
            "byline": d.byline,
            "published": d.published(),
            "modified": d.modified(),
            "language": d.language,
            "language_source": d.language_source,
            "site_name": d.site_name,
            "description": d.description,
            "canonical_url": d.canonical_url,
            "image_url": d.image_url,
        },
        "markdown_bytes": d.markdown_bytes,
    });
    if let Some(m) = &d.markdown {
        v["markdown"] = json!(m);
    }
    v
}

/// The metadata as `label value` lines (only the fields the page gave), as `sources show`
/// and `trace` print them.
pub fn metadata_lines(d: &DocumentRow) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    let mut put = |label, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            lines.push((label, v.replace(['\n', '\r', '\t'], " ")));
        }
    };
    put("title", d.title.clone());
    put(
        "authors",
        d.authors
            .as_ref()
            .map(|a| a.join("; "))
            .filter(|a| !a.is_empty()),
    );
    put("byline", d.byline.clone());
    put("published", d.published().map(|t| t.to_rfc3339()));
    put("modified", d.modified().map(|t| t.to_rfc3339()));
    put(
        "language",
        d.language.as_ref().map(|l| match &d.language_source {
            Some(source) => format!("{l} ({source})"),
            None => l.clone(),
        }),
    );
    put("site", d.site_name.clone());
    put("description", d.description.clone());
    put("canonical", d.canonical_url.clone());
    put("image", d.image_url.clone());
    lines
}

/// Most values of a page shown.
const MAX_VALUES: i64 = 1000;

async fn show(services: &Services, id: &str, markdown: bool, as_json: bool) -> CmdResult {
    let id = parse_id("source", id)?;
    let doc = documents::get(&services.db, id, markdown).await?;
    let values = if markdown && !as_json {
        Vec::new()
    } else {
        facts::source_facts(&services.db, id, MAX_VALUES).await?
    };
    let (grounded, ungrounded): (Vec<FactRow>, Vec<FactRow>) =
        values.into_iter().partition(|v| v.grounded);
    if as_json {
        let mut v = document_json(&doc);
        v["values"] = json!(grounded);
        v["ungrounded_values"] = json!(ungrounded);
        return print_json(&v);
    }
    if markdown {
        return match &doc.markdown {
            Some(m) => {
                outln!("{m}");
                Ok(())
            }
            None => Err(Failure::not_found(not_extracted(&doc))),
        };
    }
    outln!("source      {}", doc.id);
    outln!("url         {}", doc.url);
    outln!("status      {}", doc.status);
    outln!("project     {}", doc.project_id);
    outln!("created by  job {}", opt(&doc.created_by_job_id));
    for (label, value) in metadata_lines(&doc) {
        outln!("{label:<11} {value}");
    }
    match doc.markdown_bytes {
        Some(n) => outln!(
            "markdown    {n} bytes (`pipelinectl sources show {} --markdown` prints it)",
            doc.id
        ),
        None => outln!("markdown    none: {}", not_extracted(&doc)),
    }
    print_values(&grounded, &ungrounded);
    Ok(())
}

/// The page's values by record, then the ungrounded ones apart.
fn print_values(grounded: &[FactRow], ungrounded: &[FactRow]) {
    if grounded.is_empty() && ungrounded.is_empty() {
        return;
    }
    outln!();
    outln!(
        "values      {} from this page (schema version {})",
        grounded.len(),
        grounded
            .first()
            .or(ungrounded.first())
            .map(|v| v.schema_version)
            .unwrap_or_default()
    );
    print_by_record(grounded);
    if !ungrounded.is_empty() {
        outln!();
        outln!(
            "ungrounded  {} value(s) whose quote is not on the page: not facts, not in records",
            ungrounded.len()
        );
        print_by_record(ungrounded);
    }
}

fn print_by_record(values: &[FactRow]) {
    let mut record: Option<(&str, &str)> = None;
    for v in values {
        let this = (v.entity.as_str(), v.record_key.as_str());
        if record != Some(this) {
            outln!("  {} {}", v.entity, v.record_key);
            record = Some(this);
        }
        crate::records::print_value(v, "    ", false);
    }
}

/// Why a source has no Markdown, and what to do about it.
fn not_extracted(d: &DocumentRow) -> String {
    if d.status == pipeline_store::SourceStatus::Extracted {
        format!(
            "source {} was extracted before Markdown and metadata were stored; \
             `pipelinectl reextract --all` (or --job/--project) rebuilds them",
            d.id
        )
    } else {
        format!("source {} is {}, not extracted yet", d.id, d.status)
    }
}
