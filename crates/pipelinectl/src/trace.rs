//! `pipelinectl trace SOURCE_ID|URL`: a source's timeline: the job that created it, the jobs
//! that asked for it since, every attempt, error, DLQ move and redrive, and whether it sits in
//! a DLQ right now; what the page says about itself (authors, dates, language, site, as its
//! extraction stored them); for a page a crawl found, its discovery path back to the start
//! URL.

use crate::output::outln;
use std::collections::BTreeSet;

use pipeline_ops::Services;
use pipeline_store::jobs;
use pipeline_store::sources::{self, EventRow, SourceRow};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::output::{CmdResult, Failure, opt, print_json, print_table, time};

/// Finds the sources a SOURCE_ID or URL names (a URL may exist in several projects).
async fn resolve(services: &Services, target: &str) -> CmdResult<Vec<SourceRow>> {
    if let Ok(id) = Uuid::parse_str(target.trim()) {
        return Ok(vec![sources::get(&services.db, id).await?]);
    }
    let mut found = sources::find_by_url(&services.db, target.trim()).await?;
    if found.is_empty() {
        // Submissions store URLs normalized (fragment dropped, host lower-cased...).
        if let Ok(normal) = pipeline_ops::submit::validate_url(target) {
            found = sources::find_by_url(&services.db, normal.as_str()).await?;
        }
    }
    if found.is_empty() {
        return Err(Failure::not_found(format!(
            "no source with id or URL `{target}`"
        )));
    }
    Ok(found)
}

/// A one-line summary of an event's detail.
fn summary(e: &EventRow) -> String {
    let Some(Value::Object(d)) = &e.detail else {
        return String::new();
    };
    let mut parts = Vec::new();
    for key in [
        "error",
        "previous_error",
        "kind",
        "error_kind",
        "dlq",
        "delay_ms",
        "attempts",
        "retry_count",
        "http_status",
        "url",
        "uri",
        "created",
    ] {
        if let Some(v) = d.get(key) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{key}={text}"));
        }
    }
    if parts.is_empty() {
        Value::Object(d.clone()).to_string()
    } else {
        parts.join(" ")
    }
}

/// Traces one source or every source with the URL.
pub async fn run(services: &Services, target: &str, as_json: bool) -> CmdResult {
    let found = resolve(services, target).await?;
    let mut out = Vec::new();
    for (n, source) in found.iter().enumerate() {
        let events = sources::events(&services.db, source.id).await?;
        let job_ids: BTreeSet<Uuid> = source
            .created_by_job_id
            .into_iter()
            .chain(events.iter().filter_map(|e| e.job_id))
            .collect();
        let mut job_rows = Vec::new();
        for id in &job_ids {
            match jobs::get_summary(&services.db, *id).await {
                Ok(j) => job_rows.push(j),
                // A job deleted since keeps its id in the trail; nothing more to show.
                Err(pipeline_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The trail is in Postgres; Redis only adds where the source sits in a DLQ now. With
        // Redis down the trace still prints, and says that part is unknown.
        let mut in_dlq = Vec::new();
        let mut queue_state_unknown = None;
        for family in pipeline_ops::Family::ALL {
            let dlq = services.dlq(family);
            match dlq.get_listed(&source.id.to_string()).await {
                Ok(Some(listed)) => in_dlq.push((family, listed)),
                Ok(None) => {}
                Err(e) => {
                    queue_state_unknown = Some(format!("Redis unavailable: {e}"));
                    break;
                }
            }
        }
        let (crawl_job, path) =
            pipeline_store::crawl_status::discovery_path(&services.db, source.id, None).await?;
        let document = pipeline_store::documents::get(&services.db, source.id, false).await?;
        if as_json {
            out.push(json!({
                "source": source,
                "document": crate::sources::document_json(&document),
                "discovery": {"crawl_job_id": crawl_job, "path": path},
                "jobs": job_rows,
                "dlq": in_dlq.iter().map(|(f, l)| json!({"kind": f, "item": l})).collect::<Vec<_>>(),
                "queue_state": queue_state_unknown.as_ref().map_or_else(|| json!("known"), |why| json!({"unknown": why})),
                "events": events,
            }));
            continue;
        }
        if n > 0 {
            outln!("\n{}", "-".repeat(72));
        }
        outln!("source     {}", source.id);
        outln!("url        {}", source.url);
        outln!("status     {}", source.status);
        outln!("project    {}", source.project_id);
        outln!(
            "created    {} by job {}",
            time(&source.created_at),
            opt(&source.created_by_job_id)
        );
        if let Some(err) = &source.last_error {
            outln!(
                "last error {} ({})",
                err,
                source.last_error_kind.as_deref().unwrap_or("?")
            );
        }
        if let Some(why) = &queue_state_unknown {
            outln!("queues     unknown ({why}); the trail below is complete");
        }
        for (family, listed) in &in_dlq {
            match listed.item() {
                Some(i) => outln!(
                    "in DLQ     {family}: {} error after {} attempt(s), redriven {} time(s){}",
                    i.error_kind.as_str(),
                    i.attempts,
                    i.retry_count,
                    if i.parked { ", parked" } else { "" }
                ),
                None => outln!("in DLQ     {family}: malformed entry"),
            }
        }
        // What the page says about itself, when its extraction stored it.
        for (label, value) in crate::sources::metadata_lines(&document) {
            outln!("{label:<10} {}", crate::output::clip(&value, 160));
        }
        if let Some(bytes) = document.markdown_bytes {
            outln!(
                "markdown   {bytes} bytes (`pipelinectl sources show {} --markdown`)",
                source.id
            );
        }
        if !job_rows.is_empty() {
            outln!("\njobs:");
            let rows: Vec<Vec<String>> = job_rows
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        j.status.to_string(),
                        time(&j.created_at),
                        if Some(j.id) == source.created_by_job_id {
                            "created this source".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            print_table(&["JOB", "STATUS", "CREATED", ""], &rows);
        }
        if let Some(job) = crawl_job {
            outln!("\ndiscovery path (crawl {job}), start URL first:");
            let rows: Vec<Vec<String>> = path
                .iter()
                .map(|s| {
                    vec![
                        s.depth.to_string(),
                        match &s.sitemap {
                            Some(sitemap) => format!("{} {sitemap}", s.via),
                            None => s.via.clone(),
                        },
                        s.url.clone(),
                        s.source_id.to_string(),
                    ]
                })
                .collect();
            print_table(&["DEPTH", "VIA", "URL", "SOURCE"], &rows);
        }
        outln!("\ntimeline:");
        if events.is_empty() {
            outln!("no events");
            continue;
        }
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    e.at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                    e.stage.clone().unwrap_or_default(),
                    e.actor.clone().unwrap_or_default(),
                    e.kind.clone(),
                    opt(&e.attempt),
                    e.job_id
                        .map(|j| j.to_string()[..8].to_owned())
                        .unwrap_or_else(|| "-".into()),
                    summary(e),
                ]
            })
            .collect();
        print_table(
            &["AT", "STAGE", "ACTOR", "EVENT", "ATTEMPT", "JOB", "DETAIL"],
            &rows,
        );
    }
    if as_json {
        // Always an array: a URL may name sources in several projects.
        return print_json(&out);
    }
    Ok(())
}
