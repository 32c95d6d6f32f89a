//! A source's page: its facts, its event trail (each event's detail as the JSON it is),
//! its extraction (main text, chunks, entities), the values the schema stage read on it
//! (by record and field, each with its quote, origin and chunk; ungrounded values apart),
//! and a retry button while it sits in a DLQ.

use std::fmt::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use pipeline_ops::{Family, dlq_ops};
use pipeline_store::facts::{self, FactRow, StoredSchema};
use pipeline_store::{console, sources};
use serde_json::Value;
use uuid::Uuid;

use super::Form;
use super::html::{self, Nav, Page, esc, num, url_escape};
use super::jobs::{PAGE, status_badge, store_error};
use super::session::Session;
use crate::AppState;

/// The family whose DLQ holds the source now, if any.
async fn dlq_holding(state: &AppState, source: Uuid) -> Result<Option<Family>, Response> {
    for family in Family::ALL {
        match state
            .services
            .dlq(family)
            .get_listed(&source.to_string())
            .await
        {
            Ok(Some(_)) => return Ok(Some(family)),
            Ok(None) => {}
            Err(e) => return Err(html::unavailable(&e)),
        }
    }
    Ok(None)
}

/// Most characters of an event's detail shown on its line; a longer one opens in full.
const DETAIL_LINE_CHARS: usize = 300;

/// An event's detail as the JSON it is (once, not re-escaped): on the line when short, else
/// cut there with the whole of it, indented, one click away.
fn event_detail(detail: &Value) -> String {
    let compact = detail.to_string();
    if compact.chars().nth(DETAIL_LINE_CHARS).is_none() {
        return format!("<code>{}</code>", esc(&compact));
    }
    let pretty = serde_json::to_string_pretty(detail).unwrap_or_else(|_| compact.clone());
    format!(
        "<details class=\"long\"><summary><code>{}</code></summary><pre>{}</pre></details>",
        esc(&html::clip(&compact, DETAIL_LINE_CHARS)),
        esc(&html::clip(&pretty, html::MAX_DETAIL_CHARS))
    )
}

/// `GET /ui/sources/{id}?after=`: the source, its event trail, its extraction, and a retry
/// button while it sits in a DLQ.
pub async fn source(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return html::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "That is not a source id.",
        );
    };
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let after = form
        .one("after")
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let db = &state.services.db;
    let s = match sources::get(db, id).await {
        Ok(s) => s,
        Err(e) => return store_error(e, "source"),
    };
    let events = match sources::events_page(db, id, after, PAGE * 2).await {
        Ok(e) => e,
        Err(e) => return html::unavailable(&e),
    };
    let extraction = match console::extraction(db, id, PAGE).await {
        Ok(x) => x,
        Err(e) => return html::unavailable(&e),
    };
    let values = match facts::source_facts(db, id, MAX_VALUES).await {
        Ok(v) => v,
        Err(e) => return html::unavailable(&e),
    };
    let schema = match facts::current_schema(db, s.project_id).await {
        Ok(v) => v,
        Err(e) => return html::unavailable(&e),
    };
    let holder = match dlq_holding(&state, id).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let mut body = String::new();
    if form.one("done") == Some("retried") {
        body.push_str("<p class=\"notice\" role=\"status\">Sent back to its queue.</p>");
    }
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>URL</dt><dd class=\"url\"><a href=\"{url}\" rel=\"noreferrer noopener\">{url}</a></dd>\
<dt>Status</dt><dd id=\"source-status\">{status}</dd><dt>Title</dt><dd>{title}</dd>\
<dt>HTTP</dt><dd>{http} {ctype}</dd><dt>Fetched</dt><dd>{fetched}</dd>\
<dt>Last error</dt><dd class=\"err\">{err}</dd><dt>Job</dt><dd>{job}</dd></dl>",
        url = esc(&s.url),
        status = status_badge(s.status.as_str()),
        title = esc(s.title.as_deref().unwrap_or("—")),
        http = s.http_status.map(|h| h.to_string()).unwrap_or_default(),
        ctype = esc(s.content_type.as_deref().unwrap_or("")),
        fetched = s.fetched_at.map(html::time).unwrap_or_else(|| "—".into()),
        err = esc(&format!(
            "{}{}",
            s.last_error_kind
                .as_deref()
                .map(|k| format!("[{k}] "))
                .unwrap_or_default(),
            s.last_error.as_deref().unwrap_or("—")
        )),
        job = s
            .created_by_job_id
            .map(|j| format!("<a href=\"/ui/jobs/{j}\">{j}</a>"))
            .unwrap_or_else(|| "—".into()),
    );
    if let Some(family) = holder {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/sources/{id}/retry\" class=\"retry\">{csrf}\
<input type=\"hidden\" name=\"family\" value=\"{f}\">\
<p>This source is in the {f} DLQ.</p><button type=\"submit\">Retry now</button></form>",
            csrf = html::csrf_field(&session),
            f = family.as_str()
        );
    }
    body.push_str("<h2>Event trail</h2><ol class=\"timeline\">");
    for e in &events {
        let detail = e.detail.as_ref().map(event_detail).unwrap_or_default();
        let _ = write!(
            body,
            "<li><span class=\"when\">{at}</span> <span class=\"badge {kind}\">{kind}</span> \
<span class=\"stage\">{stage}</span> <span class=\"actor\">{actor}</span>{attempt} {detail}</li>",
            at = html::time(e.at),
            kind = esc(&e.kind),
            stage = esc(e.stage.as_deref().unwrap_or("")),
            actor = esc(e.actor.as_deref().unwrap_or("")),
            attempt = e
                .attempt
                .map(|a| format!(" attempt {a}"))
                .unwrap_or_default(),
        );
    }
    body.push_str("</ol>");
    if events.len() as i64 == PAGE * 2
        && let Some(last) = events.last()
    {
        let _ = write!(
            body,
            "<nav class=\"pager\" aria-label=\"Events\"><a href=\"/ui/sources/{id}?after={}\" rel=\"next\">Later events →</a></nav>",
            last.id
        );
    }
    let _ = write!(
        body,
        "<h2>Extraction</h2><h3>Main text <small>({} characters)</small></h3>",
        num(extraction.text_chars as u64)
    );
    match &extraction.text {
        Some(t) if !t.is_empty() => {
            let _ = write!(body, "<div class=\"text\" tabindex=\"0\">{}</div>", esc(t));
            if extraction.text_chars > pipeline_store::console::MAX_TEXT_CHARS as i64 {
                body.push_str("<p class=\"hint\">The text is cut here.</p>");
            }
        }
        _ => body.push_str("<p>None yet.</p>"),
    }
    let _ = write!(
        body,
        "<h3>Chunks <small>({} in all)</small></h3><ol class=\"chunks\">",
        num(extraction.chunk_count as u64)
    );
    for c in &extraction.chunks {
        let heading = c
            .heading_path
            .as_ref()
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" › ")
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<li><p class=\"meta\">#{i} {h} · embedding {emb} · entities {ent}</p><p>{t}</p></li>",
            i = c.chunk_index,
            h = esc(&heading),
            emb = if c.embeddings_created {
                "stored"
            } else {
                "missing"
            },
            ent = esc(c.entities_status.as_deref().unwrap_or("—")),
            t = esc(&html::clip(c.text.as_deref().unwrap_or(""), 1200)),
        );
    }
    body.push_str("</ol><h3>Entities</h3>");
    if extraction.entities.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str("<ul class=\"entities\">");
        for e in &extraction.entities {
            let _ = write!(
                body,
                "<li><span class=\"badge\">{}</span> {} <small>({} chunks)</small></li>",
                esc(&e.kind),
                esc(&e.name),
                e.chunks
            );
        }
        body.push_str("</ul>");
    }
    body.push_str(&records_section(&values, schema.as_ref()));
    html::layout(
        Page {
            title: "Source",
            nav: Nav::Jobs,
            refresh_secs: 0,
        },
        &session,
        &body,
    )
}

/// Most values of a page shown.
const MAX_VALUES: i64 = 1000;

/// A stored value as text: a string as itself, anything else as its JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One table of values: a row per value with its field, quote, origin and chunk.
/// With `with_record`, a first column names each value's record.
fn values_table(
    body: &mut String,
    caption: &str,
    class: &str,
    values: &[&FactRow],
    with_record: bool,
) {
    let _ = write!(
        body,
        "<div class=\"table-wrap\"><table class=\"{class}\"><caption>{caption}</caption>\
<thead><tr>{record}<th scope=\"col\">Field</th><th scope=\"col\">Value</th><th scope=\"col\">Quote</th>\
<th scope=\"col\">Origin</th><th scope=\"col\">Chunk</th></tr></thead><tbody>",
        record = if with_record {
            "<th scope=\"col\">Record</th>"
        } else {
            ""
        }
    );
    for v in values {
        let _ = write!(
            body,
            "<tr>{record}<th scope=\"row\">{field}</th><td>{value}</td><td><q>{quote}</q></td>\
<td>{origin}{confidence}</td><td>{chunk}</td></tr>",
            record = if with_record {
                format!(
                    "<td>{} <code>{}</code></td>",
                    esc(&v.entity),
                    esc(&html::clip(&v.record_key, 200))
                )
            } else {
                String::new()
            },
            field = esc(&v.field),
            value = esc(&html::clip(&value_text(&v.value), 500)),
            quote = esc(&html::clip(&v.quote, 1000)),
            origin = esc(&v.origin),
            confidence = v
                .confidence
                .map(|c| format!(" <small>({c:.2})</small>"))
                .unwrap_or_default(),
            chunk = v
                .chunk_index
                .map(|c| format!("#{c}"))
                .unwrap_or_else(|| "—".into()),
        );
    }
    body.push_str("</tbody></table></div>");
}

/// The "Records" section: the page's grounded values by record, then its ungrounded ones in
/// a list of their own (never mixed with facts).
fn records_section(values: &[FactRow], schema: Option<&StoredSchema>) -> String {
    let mut body = String::from("<h2 id=\"records\">Records</h2>");
    let _ = write!(
        body,
        "<p class=\"meta\" id=\"project-schema\">Project schema: {}</p>",
        match schema {
            Some(s) => format!(
                "{} version {} ({} backend{})",
                esc(&s.name),
                s.version,
                esc(&s.backend),
                s.template
                    .as_deref()
                    .map(|t| format!(", template {}", esc(t)))
                    .unwrap_or_default()
            ),
            None => "none (the project's pages skip the schema stage)".to_owned(),
        }
    );
    let (grounded, ungrounded): (Vec<&FactRow>, Vec<&FactRow>) =
        values.iter().partition(|v| v.grounded);
    if grounded.is_empty() {
        body.push_str("<p>No values from this page.</p>");
    } else {
        if let Some(v) = grounded.first() {
            let _ = write!(
                body,
                "<p class=\"hint\">{} value(s), read with schema version {}.</p>",
                num(grounded.len() as u64),
                v.schema_version
            );
        }
        let mut start = 0;
        while start < grounded.len() {
            let (entity, key) = (&grounded[start].entity, &grounded[start].record_key);
            let end = grounded[start..]
                .iter()
                .position(|v| &v.entity != entity || &v.record_key != key)
                .map_or(grounded.len(), |n| start + n);
            let caption = format!(
                "<span class=\"badge\">{}</span> <code>{}</code>",
                esc(entity),
                esc(&html::clip(key, 200))
            );
            values_table(&mut body, &caption, "record", &grounded[start..end], false);
            start = end;
        }
    }
    if !ungrounded.is_empty() {
        let _ = write!(
            body,
            "<h3 id=\"ungrounded\">Ungrounded values <small>({} — their quotes are not on \
the page: not facts, not in records)</small></h3>",
            num(ungrounded.len() as u64)
        );
        values_table(
            &mut body,
            "Ungrounded values, by record",
            "ungrounded",
            &ungrounded,
            true,
        );
    }
    body
}

/// `POST /ui/sources/{id}/retry`: redrives the source's DLQ item now.
pub async fn retry_source(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = session.check(&headers, &form) {
        return r;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return html::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "That is not a source id.",
        );
    };
    let family = match dlq_holding(&state, id).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return html::error_page(
                StatusCode::CONFLICT,
                "Not in a DLQ",
                "This source is not in a dead-letter queue (any more); nothing to retry.",
            );
        }
        Err(r) => return r,
    };
    match dlq_ops::retry(
        &state.services,
        family,
        &id.to_string(),
        pipeline_store::Actor::Console,
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/ui/sources/{id}?done={}", url_escape("retried")))
            .into_response(),
        Err(e) => html::unavailable(&e),
    }
}
