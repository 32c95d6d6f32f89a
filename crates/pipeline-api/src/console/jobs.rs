//! Jobs (filtered by type and status, each with its type, project and a bar of how its
//! sources ended) and a job (its full id, its counts, its crawl's progress, the URLs its
//! submission refused and why, and its sources, paged and filtered by status).

use std::fmt::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use pipeline_store::jobs::{self, JobFilter, JobSummary};
use pipeline_store::{JobStatus, SourceStatus, StoreError, console, crawl_status};
use serde_json::Value;
use uuid::Uuid;

use super::Form;
use super::html::{self, Nav, Page, esc, num};
use super::session::Session;
use crate::AppState;

/// Rows per page.
pub(super) const PAGE: i64 = 50;
/// Deepest jobs page (offset paging over jobs, which are few next to sources).
const MAX_JOBS_OFFSET: i64 = 100_000;

pub(super) fn store_error(e: StoreError, what: &str) -> Response {
    match e {
        StoreError::NotFound(_) => html::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no such {what}."),
        ),
        other => html::unavailable(&other),
    }
}

fn count(counts: Option<&Value>, key: &str) -> u64 {
    counts
        .and_then(|c| c.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// How a job's sources ended so far, as a bar ([`html::outcome_bar`]).
fn job_outcome(j: &JobSummary) -> String {
    let c = j.result.as_ref();
    let (total, terminal) = (count(c, "total"), count(c, "terminal"));
    html::outcome_bar(
        count(c, "extracted"),
        count(c, "failed"),
        total.saturating_sub(terminal),
        &format!("Job {}", j.id),
    )
}

/// The job types a list can be filtered by.
const JOB_TYPES: [&str; 2] = ["scrape", "crawl"];

pub(super) fn status_badge(status: &str) -> String {
    format!("<span class=\"badge {s}\">{s}</span>", s = esc(status))
}

/// `GET /ui/jobs?type=&status=&offset=`: jobs, newest first, each with its type, project
/// and how its sources ended so far.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let offset = form
        .one("offset")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(0, MAX_JOBS_OFFSET);
    let mut notes = Vec::new();
    let job_type = match form.some("type") {
        Some(t) if JOB_TYPES.contains(&t) => Some(t.to_owned()),
        Some(_) => {
            notes.push("Unknown job type; showing every type.");
            None
        }
        None => None,
    };
    let status = match form.some("status").map(JobStatus::parse) {
        Some(Some(s)) => Some(s),
        Some(None) => {
            notes.push("Unknown job status; showing every status.");
            None
        }
        None => None,
    };
    let db = &state.services.db;
    let rows = match jobs::list_summaries(
        db,
        &JobFilter {
            job_type: job_type.clone(),
            status,
            limit: PAGE,
            offset,
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return html::unavailable(&e),
    };
    let project_ids: Vec<Uuid> = rows.iter().filter_map(|j| j.project_id).collect();
    let projects = match console::project_names(db, &project_ids).await {
        Ok(p) => p,
        Err(e) => return html::unavailable(&e),
    };
    let job_ids: Vec<Uuid> = rows.iter().map(|j| j.id).collect();
    let settings = match pipeline_store::job_settings::of_jobs(db, &job_ids).await {
        Ok(s) => s,
        Err(e) => return html::unavailable(&e),
    };
    let mut body = String::new();
    for n in notes {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{n}</p>");
    }
    let mut type_options = String::from("<option value=\"\">every type</option>");
    for t in JOB_TYPES {
        let sel = if job_type.as_deref() == Some(t) {
            " selected"
        } else {
            ""
        };
        let _ = write!(type_options, "<option value=\"{t}\"{sel}>{t}</option>");
    }
    let mut status_options = String::from("<option value=\"\">every status</option>");
    for s in JobStatus::ALL {
        let sel = if Some(s) == status { " selected" } else { "" };
        let _ = write!(
            status_options,
            "<option value=\"{w}\"{sel}>{w}</option>",
            w = s.as_str()
        );
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/jobs\" class=\"filters\">\
<label for=\"type\">Type</label><select id=\"type\" name=\"type\">{type_options}</select>\
<label for=\"status\">Status</label><select id=\"status\" name=\"status\">{status_options}</select>\
<button type=\"submit\">Filter</button> <a href=\"/ui/jobs\">Clear</a> \
<a class=\"button\" href=\"/ui/submit\">New job…</a></form>"
    );
    body.push_str(
        "<div class=\"table-wrap\"><table><caption>Jobs, newest first</caption><thead><tr>\
<th scope=\"col\">Job</th><th scope=\"col\">Type</th><th scope=\"col\">Project</th>\
<th scope=\"col\">Status</th><th scope=\"col\">Priority</th><th scope=\"col\">Outcome</th>\
<th scope=\"col\">Sources</th><th scope=\"col\">Extracted</th><th scope=\"col\">Failed</th>\
<th scope=\"col\">Refused</th><th scope=\"col\">Group</th><th scope=\"col\">Created</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"12\">No jobs.</td></tr>");
    }
    for j in &rows {
        let c = j.result.as_ref();
        let _ = write!(
            body,
            "<tr data-job=\"{id}\"><th scope=\"row\"><a href=\"/ui/jobs/{id}\">{short}</a></th>\
<td><span class=\"badge\">{kind}</span></td><td>{project}</td><td>{status}</td>\
<td class=\"priority\">{priority}</td><td>{outcome}</td>\
<td class=\"n\">{total}</td><td class=\"n\">{extracted}</td><td class=\"n\">{failed}</td>\
<td class=\"n\">{refused}</td><td>{group}</td><td>{created}</td></tr>",
            id = j.id,
            short = html::short_id(j.id),
            kind = esc(&j.job_type),
            project = esc(j
                .project_id
                .and_then(|p| projects.get(&p))
                .map_or("—", String::as_str)),
            status = status_badge(j.status.as_str()),
            priority = esc(settings
                .get(&j.id)
                .map_or("normal", |s| s.priority.as_str())),
            outcome = job_outcome(j),
            total = num(count(c, "total")),
            extracted = num(count(c, "extracted")),
            failed = num(count(c, "failed")),
            refused = num(count(c, "invalid_urls")),
            group = esc(j.source_group.as_deref().unwrap_or("")),
            created = html::time(j.created_at),
        );
    }
    body.push_str("</tbody></table></div><nav class=\"pager\" aria-label=\"Pages\">");
    let mut fq = String::new();
    if let Some(t) = &job_type {
        let _ = write!(fq, "type={t}&amp;");
    }
    if let Some(s) = status {
        let _ = write!(fq, "status={}&amp;", s.as_str());
    }
    if offset > 0 {
        let _ = write!(
            body,
            "<a href=\"/ui/jobs?{fq}offset={}\" rel=\"prev\">← Newer</a> ",
            (offset - PAGE).max(0)
        );
    }
    if rows.len() as i64 == PAGE {
        let _ = write!(
            body,
            "<a href=\"/ui/jobs?{fq}offset={}\" rel=\"next\">Older →</a>",
            offset + PAGE
        );
    }
    body.push_str("</nav>");
    html::layout(
        Page {
            title: "Jobs",
            nav: Nav::Jobs,
            refresh_secs: 5,
        },
        &session,
        &body,
    )
}

/// `GET /ui/jobs/{id}?status=&after=&refused=`: the job's facts and counts, its crawl's
/// progress, the URLs its submission refused, and a page of its sources.
pub async fn job(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return html::error_page(StatusCode::NOT_FOUND, "Not found", "That is not a job id.");
    };
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let asked = form.some("status");
    let status = asked.and_then(SourceStatus::parse);
    // Said on the page, as the DLQ page says an unknown filter: never a silent "every status".
    let unknown_status = asked.is_some() && status.is_none();
    let after = form.some("after").and_then(|a| Uuid::parse_str(a).ok());
    let refused_offset = form
        .one("refused")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(0, MAX_JOBS_OFFSET);
    let db = &state.services.db;
    let j = match jobs::get_summary(db, id).await {
        Ok(j) => j,
        Err(e) => return store_error(e, "job"),
    };
    let rows =
        match console::job_sources_after(db, id, status.map(|s| s.as_str()), after, PAGE).await {
            Ok(r) => r,
            Err(e) => return html::unavailable(&e),
        };
    let project = match j.project_id {
        Some(p) => match console::project_names(db, &[p]).await {
            Ok(names) => names.get(&p).cloned(),
            Err(e) => return html::unavailable(&e),
        },
        None => None,
    };
    let schema = match j.project_id {
        Some(p) => match pipeline_store::facts::current_schema(db, p).await {
            Ok(s) => s,
            Err(e) => return html::unavailable(&e),
        },
        None => None,
    };
    let settings = match pipeline_store::job_settings::of_job(db, id).await {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return html::unavailable(&e),
    };
    let c = j.result.as_ref();
    let (total, terminal) = (count(c, "total"), count(c, "terminal"));
    let mut body = format!(
        "<dl class=\"facts\"><dt>Id</dt><dd><code id=\"job-id\">{id}</code></dd>\
<dt>Type</dt><dd><span class=\"badge\" id=\"job-type\">{kind}</span></dd>\
<dt>Project</dt><dd>{project}</dd><dt>Schema</dt><dd id=\"project-schema\">{schema}</dd><dt>Status</dt><dd>{status}</dd>\
<dt>Priority</dt><dd id=\"job-priority\">{priority}</dd>\
<dt>Render</dt><dd id=\"job-render\">{render}</dd>\
<dt>Outcome</dt><dd>{outcome} <span class=\"legend\"><span class=\"ok\">{ok} succeeded</span>\
<span class=\"failed\">{failed} failed</span><span class=\"pending\">{pending} not done yet</span></span> \
<span data-progress=\"{terminal}/{total}\">{terminal_n} of {total_n} sources done</span></dd>\
<dt>Group</dt><dd>{group}</dd><dt>Created</dt><dd>{created}</dd>\
<dt>Completed</dt><dd>{completed}</dd></dl>",
        kind = esc(&j.job_type),
        project = match (&project, j.project_id) {
            (Some(name), Some(p)) => format!("{} {}", esc(name), html::short_id(p)),
            _ => "—".to_owned(),
        },
        schema = match &schema {
            Some(s) => format!(
                "{} version {} ({} backend)",
                esc(&s.name),
                s.version,
                esc(&s.backend)
            ),
            None => "—".to_owned(),
        },
        status = status_badge(j.status.as_str()),
        priority = esc(&settings.priority),
        render = esc(settings.render.as_deref().unwrap_or("worker default")),
        outcome = job_outcome(&j),
        ok = num(count(c, "extracted")),
        failed = num(count(c, "failed")),
        pending = num(total.saturating_sub(terminal)),
        terminal_n = num(terminal),
        total_n = num(total),
        group = esc(j.source_group.as_deref().unwrap_or("—")),
        created = html::time(j.created_at),
        completed = j.completed_at.map(html::time).unwrap_or_else(|| "—".into()),
    );
    if form.one("done") == Some("recorded") {
        body.insert_str(
            0,
            "<p class=\"error\" role=\"alert\">The job is recorded, but the queue did not \
answer: its sources are queued by the requeue daemon's reconciler shortly.</p>",
        );
    }
    if j.job_type == "crawl" {
        match crawl_status::progress(db, id).await {
            Ok(p) => body.push_str(&super::crawl::progress_section(&p)),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return html::unavailable(&e),
        }
    }
    if unknown_status {
        body.push_str(
            "<p class=\"error\" role=\"alert\">Unknown source status; showing every status.</p>",
        );
    }
    body.push_str("<h2>Sources</h2><ul class=\"counts\" aria-label=\"Sources by status\">");
    for s in SourceStatus::ALL {
        let _ = write!(
            body,
            "<li><a href=\"/ui/jobs/{id}?status={w}\">{w} <strong>{n}</strong></a></li>",
            w = s.as_str(),
            n = num(count(c, s.as_str()))
        );
    }
    let invalid = count(c, "invalid_urls");
    if invalid > 0 {
        let _ = write!(
            body,
            "<li><a href=\"#refused\">refused URLs <strong>{}</strong></a></li>",
            num(invalid)
        );
    }
    body.push_str("</ul>");
    let mut options = String::from("<option value=\"\">every status</option>");
    for s in SourceStatus::ALL {
        let sel = if Some(s) == status { " selected" } else { "" };
        let _ = write!(
            options,
            "<option value=\"{w}\"{sel}>{w}</option>",
            w = s.as_str()
        );
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/jobs/{id}\" class=\"filters\"><label for=\"status\">Status</label>\
<select id=\"status\" name=\"status\">{options}</select><button type=\"submit\">Filter</button></form>\
<div class=\"table-wrap\"><table><caption>Sources of this job</caption><thead><tr><th scope=\"col\">URL</th><th scope=\"col\">Status</th>\
<th scope=\"col\">HTTP</th><th scope=\"col\">Last error</th><th scope=\"col\">Updated</th></tr></thead><tbody>"
    );
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No sources here.</td></tr>");
    }
    for s in &rows {
        let _ = write!(
            body,
            "<tr data-source=\"{id}\"><td class=\"url\"><a href=\"/ui/sources/{id}\">{url}</a></td><td>{status}</td>\
<td class=\"n\">{http}</td><td class=\"err\">{err}</td><td>{updated}</td></tr>",
            id = s.id,
            url = esc(&s.url),
            status = status_badge(s.status.as_str()),
            http = s.http_status.map(|h| h.to_string()).unwrap_or_default(),
            err = html::long_text(s.last_error.as_deref().unwrap_or(""), 200),
            updated = html::time(s.updated_at),
        );
    }
    body.push_str("</tbody></table></div><nav class=\"pager\" aria-label=\"Pages\">");
    let sq = status
        .map(|s| format!("status={}&amp;", s.as_str()))
        .unwrap_or_default();
    let _ = write!(body, "<a href=\"/ui/jobs/{id}?{sq}\">First</a>");
    if rows.len() as i64 == PAGE
        && let Some(last) = rows.last()
    {
        let _ = write!(
            body,
            " <a href=\"/ui/jobs/{id}?{sq}after={}\" rel=\"next\">Next →</a>",
            last.id
        );
    }
    body.push_str("</nav>");
    if invalid > 0 {
        let refused = match jobs::invalid_urls_page(db, id, PAGE, refused_offset).await {
            Ok(r) => r,
            Err(e) => return html::unavailable(&e),
        };
        let _ = write!(
            body,
            "<h2 id=\"refused\">Refused URLs <small>({} in all)</small></h2>\
<p class=\"hint\">The submission refused these before anything was queued; they are not sources.</p>\
<div class=\"table-wrap\"><table class=\"refused\"><caption>URLs refused at submission, with the reason</caption>\
<thead><tr><th scope=\"col\">URL as given</th><th scope=\"col\">Reason</th></tr></thead><tbody>",
            num(invalid)
        );
        for r in &refused {
            let _ = write!(
                body,
                "<tr><td class=\"url\">{}</td><td class=\"err\">{}</td></tr>",
                esc(&html::clip(&r.url, 300)),
                esc(&html::clip(&r.reason, 300))
            );
        }
        body.push_str("</tbody></table></div>");
        if refused.len() as i64 == PAGE || refused_offset > 0 {
            body.push_str("<nav class=\"pager\" aria-label=\"Refused URLs\">");
            if refused_offset > 0 {
                let _ = write!(
                    body,
                    "<a href=\"/ui/jobs/{id}?refused={}#refused\" rel=\"prev\">← Earlier</a> ",
                    (refused_offset - PAGE).max(0)
                );
            }
            if refused.len() as i64 == PAGE {
                let _ = write!(
                    body,
                    "<a href=\"/ui/jobs/{id}?refused={}#refused\" rel=\"next\">More →</a>",
                    refused_offset + PAGE
                );
            }
            body.push_str("</nav>");
        }
    }
    let hex = id.simple().to_string();
    html::layout(
        Page {
            title: &format!("Job …{}", &hex[hex.len() - 12..]),
            nav: Nav::Jobs,
            refresh_secs: if j.completed_at.is_some() { 0 } else { 5 },
        },
        &session,
        &body,
    )
}
