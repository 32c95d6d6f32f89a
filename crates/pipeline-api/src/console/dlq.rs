//! The DLQ browser: per family, newest first, cursor paging, filters by error kind and by
//! job, the source URL and error on every row; retry or discard one item, a selection, or
//! everything matching (after a confirmation page that says how many).

use std::fmt::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use dlq_core::{Filter, KindFilter, ListedItem};
use pipeline_ops::{Family, dlq_ops};
use uuid::Uuid;

use super::html::{self, Nav, Page, esc, num, url_escape};
use super::session::Session;
use super::{Form, family};
use crate::AppState;

/// Items per page.
const PAGE: usize = 50;
/// Most items one request acts on (a selection or "all matching"); the rest is left for
/// the next request, so one click never outlives the request timeout.
pub const MAX_BULK: usize = 2000;
/// Who the event trail names for changes made in the console.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Console;

/// The filters of a DLQ page, from its query.
struct Query {
    filter: Filter,
    cursor: Option<String>,
    done: Option<String>,
    errors: Vec<String>,
}

fn query(raw: Option<&str>) -> Query {
    let form = Form::parse(raw.unwrap_or(""));
    let mut errors = Vec::new();
    let kind = match KindFilter::parse(form.one("kind").unwrap_or("")) {
        Some(k) => k,
        None => {
            errors.push("Unknown error kind; showing every kind.".to_owned());
            KindFilter::Any
        }
    };
    let job_id = match form.some("job").map(|j| Uuid::parse_str(j.trim())) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push("The job filter is not a job id (a UUID); ignored.".to_owned());
            None
        }
        None => None,
    };
    let done = match (
        form.one("done"),
        form.one("n").and_then(|n| n.parse::<u64>().ok()),
    ) {
        (Some("retried"), Some(n)) => Some(format!("{} items retried.", num(n))),
        (Some("discarded"), Some(n)) => Some(format!("{} items discarded.", num(n))),
        (Some("more"), Some(n)) => Some(format!(
            "{} items done; more match (at most {} per click). Run it again for the rest.",
            num(n),
            num(MAX_BULK as u64)
        )),
        _ => None,
    };
    Query {
        filter: Filter { kind, job_id },
        cursor: form.some("cursor").map(str::to_owned),
        done,
        errors,
    }
}

/// The query string of a filter (without the cursor).
fn filter_query(f: &Filter) -> String {
    let mut q = format!("kind={}", f.kind.as_str());
    if let Some(j) = f.job_id {
        let _ = write!(q, "&job={j}");
    }
    q
}

fn tabs(current: Family, f: &Filter) -> String {
    let mut out = String::from("<nav class=\"tabs\" aria-label=\"Families\"><ul>");
    for family in Family::ALL {
        let cur = if family == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<li><a href=\"/ui/dlq/{n}?{q}\"{cur}>{n}</a></li>",
            n = family.as_str(),
            q = filter_query(f)
        );
    }
    out.push_str("</ul></nav>");
    out
}

fn filter_form(family: Family, f: &Filter) -> String {
    let mut options = String::new();
    for (value, label) in [
        ("", "every kind"),
        ("transient", "transient"),
        ("permanent", "permanent"),
        ("parked", "parked"),
    ] {
        let sel = if f.kind.as_str() == value {
            " selected"
        } else {
            ""
        };
        let _ = write!(options, "<option value=\"{value}\"{sel}>{label}</option>");
    }
    format!(
        "<form method=\"get\" action=\"/ui/dlq/{n}\" class=\"filters\">\
<label for=\"kind\">Error kind</label><select id=\"kind\" name=\"kind\">{options}</select>\
<label for=\"job\">Job id</label><input id=\"job\" name=\"job\" value=\"{job}\" \
placeholder=\"any job\" size=\"38\" spellcheck=\"false\">\
<button type=\"submit\">Filter</button> <a href=\"/ui/dlq/{n}\">Clear</a></form>",
        n = family.as_str(),
        job = f.job_id.map(|j| j.to_string()).unwrap_or_default()
    )
}

/// `GET /ui/dlq/{family}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(word): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let family = match family(&word) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q = query(raw.as_deref());
    let dlq = state.services.dlq(family);
    let page = match dlq.browse(PAGE, q.cursor.as_deref(), &q.filter).await {
        Ok(p) => p,
        Err(dlq_core::DlqError::InvalidCursor(_)) => {
            return html::error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Bad cursor",
                "That page link is not valid. Start again from the newest items.",
            );
        }
        Err(e) => return html::unavailable(&e),
    };
    let stats = match dlq.stats().await {
        Ok(s) => s,
        Err(e) => return html::unavailable(&e),
    };
    let ids: Vec<Uuid> = page
        .items
        .iter()
        .filter_map(|l| l.item().and_then(dlq_ops::source_of))
        .collect();
    let uris = match pipeline_store::sources::urls(&state.services.db, &ids).await {
        Ok(u) => u,
        Err(e) => return html::unavailable(&e),
    };
    let fq = filter_query(&q.filter);
    let mut body = tabs(family, &q.filter);
    for e in &q.errors {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    if let Some(done) = &q.done {
        let _ = write!(
            body,
            "<p class=\"notice\" role=\"status\">{}</p>",
            esc(done)
        );
    }
    let _ = write!(
        body,
        "<p>{} items in the {} DLQ: {} transient, {} permanent, {} parked.</p>",
        num(stats.total),
        family.as_str(),
        num(stats.transient),
        num(stats.permanent),
        num(stats.parked)
    );
    body.push_str(&filter_form(family, &q.filter));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/dlq/{n}/act?{fq}\" class=\"dlq\" data-confirm-selection>{csrf}\
<div class=\"bulk\"><button type=\"submit\" name=\"action\" value=\"retry\">Retry selected</button>\
<button type=\"submit\" name=\"action\" value=\"discard\" class=\"danger\">Discard selected</button>\
<a class=\"button\" href=\"/ui/dlq/{n}/confirm?action=retry&amp;{fq_html}\">Retry all matching…</a>\
<a class=\"button danger\" href=\"/ui/dlq/{n}/confirm?action=discard&amp;{fq_html}\">Discard all matching…</a></div>\
<div class=\"table-wrap\"><table><caption>Dead letters, newest first</caption><thead><tr>\
<th scope=\"col\"><input type=\"checkbox\" data-select-all aria-label=\"Select every item on this page\"></th>\
<th scope=\"col\">Source URL</th><th scope=\"col\">Error</th><th scope=\"col\">Kind</th>\
<th scope=\"col\">Attempts</th><th scope=\"col\">Redrives</th><th scope=\"col\">Failed at</th>\
<th scope=\"col\">Job</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
        n = family.as_str(),
        csrf = html::csrf_field(&session),
        fq_html = esc(&fq),
    );
    if page.items.is_empty() {
        body.push_str("<tr><td colspan=\"9\">No items here.</td></tr>");
    }
    for listed in &page.items {
        body.push_str(&row(listed, &uris));
    }
    body.push_str("</tbody></table></div></form>");
    let _ = write!(
        body,
        "<nav class=\"pager\" aria-label=\"Pages\"><a href=\"/ui/dlq/{n}?{fq}\">Newest</a>",
        n = family.as_str(),
        fq = esc(&fq)
    );
    if let Some(c) = &page.next_cursor {
        let _ = write!(
            body,
            " <a href=\"/ui/dlq/{n}?{fq}&amp;cursor={c}\" rel=\"next\">Older →</a>",
            n = family.as_str(),
            fq = esc(&fq),
            c = url_escape(c)
        );
    }
    if !q.filter.is_empty() {
        let _ = write!(
            body,
            " <span class=\"hint\">({} items looked at for this page)</span>",
            num(page.scanned)
        );
    }
    body.push_str("</nav>");
    html::layout(
        Page {
            title: &format!("Dead letters: {}", family.as_str()),
            nav: Nav::Dlq,
            refresh_secs: 0,
        },
        &session,
        &body,
    )
}

fn row(listed: &ListedItem, uris: &std::collections::HashMap<Uuid, String>) -> String {
    match listed {
        ListedItem::Ok(item) if item.dlq_type == Family::Webhooks.as_str() => {
            // A webhooks item is a delivery: its id leads to the delivery and its trail.
            let id = esc(&item.id);
            let link = format!("<a href=\"/ui/webhook-deliveries/{id}\">delivery {id}</a>");
            row_of(item, link)
        }
        ListedItem::Ok(item) => {
            let source = dlq_ops::source_of(item);
            let url = source
                .and_then(|s| uris.get(&s))
                .map(|u| esc(u))
                .unwrap_or_else(|| "<em>unknown source</em>".into());
            let link = match source {
                Some(s) => format!("<a href=\"/ui/sources/{s}\">{url}</a>"),
                None => url,
            };
            row_of(item, link)
        }
        ListedItem::Malformed(m) => format!(
            "<tr data-id=\"{id}\"><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" aria-label=\"Select {id}\"></td>\
<td colspan=\"7\" class=\"err\">Malformed entry: {reason}</td>\
<td class=\"actions\"><button type=\"submit\" name=\"one\" value=\"discard:{id}\" class=\"danger\">Discard</button></td></tr>",
            id = esc(&m.id),
            reason = esc(&m.reason)
        ),
    }
}

/// A DLQ item's table row, `link` naming what it is about.
fn row_of(item: &dlq_core::DlqItem, link: String) -> String {
    let kind = if item.parked {
        "parked"
    } else {
        item.error_kind.as_str()
    };
    let job = item
        .job_id
        .map(|j| format!("<a href=\"/ui/jobs/{j}\">{}</a>", html::short_id(j)))
        .unwrap_or_else(|| "—".into());
    format!(
        "<tr data-id=\"{id}\"><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" aria-label=\"Select {id}\"></td>\
<td class=\"url\">{link}</td><td class=\"err\">{err}</td><td><span class=\"badge {kind}\">{kind}</span></td>\
<td class=\"n\">{attempts}</td><td class=\"n\">{redrives}</td><td>{at}</td><td>{job}</td>\
<td class=\"actions\"><button type=\"submit\" name=\"one\" value=\"retry:{id}\" aria-label=\"Retry {id}\">Retry</button>\
<button type=\"submit\" name=\"one\" value=\"discard:{id}\" class=\"danger\" aria-label=\"Discard {id}\">Discard</button></td></tr>",
        id = esc(&item.id),
        err = html::long_text(&item.error, 300),
        attempts = item.attempts,
        redrives = item.retry_count,
        at = html::time(item.failed_at),
    )
}

/// Retries or discards `ids`; returns how many were acted on (items already gone are not).
async fn apply(
    state: &AppState,
    family: Family,
    action: &str,
    ids: &[String],
) -> Result<u64, Response> {
    let mut n = 0;
    for id in ids {
        let done = match action {
            "retry" => dlq_ops::retry(&state.services, family, id, ACTOR)
                .await
                .map(|o| o.is_some()),
            "discard" => dlq_ops::discard(&state.services, family, id, ACTOR)
                .await
                .map(|o| o.is_some()),
            _ => {
                return Err(html::error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unknown action",
                    "The actions are retry and discard.",
                ));
            }
        };
        match done {
            Ok(true) => n += 1,
            Ok(false) => {}
            // A malformed entry cannot be retried; it stays listed, and the rest go on.
            Err(dlq_ops::DlqOpError::Dlq(dlq_core::DlqError::Malformed { .. })) => {}
            Err(e) => return Err(html::unavailable(&e)),
        }
    }
    Ok(n)
}

fn back(family: Family, f: &Filter, done: &str, n: u64) -> Response {
    Redirect::to(&format!(
        "/ui/dlq/{}?{}&done={done}&n={n}",
        family.as_str(),
        filter_query(f)
    ))
    .into_response()
}

/// `POST /ui/dlq/{family}/act`: one item (`one=retry:<id>`) or the selected ones
/// (`action` and `id`s).
pub async fn act(
    State(state): State<AppState>,
    session: Session,
    Path(word): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = session.check(&headers, &form) {
        return r;
    }
    let family = match family(&word) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q = query(raw.as_deref());
    let (action, ids): (String, Vec<String>) =
        match form.some("one").and_then(|o| o.split_once(':')) {
            Some((a, id)) => (a.to_owned(), vec![id.to_owned()]),
            None => (
                form.one("action").unwrap_or("").to_owned(),
                form.all("id").into_iter().map(str::to_owned).collect(),
            ),
        };
    if ids.len() > MAX_BULK {
        return html::error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many",
            &format!("Select at most {} items at once.", num(MAX_BULK as u64)),
        );
    }
    match apply(&state, family, &action, &ids).await {
        Ok(n) => back(
            family,
            &q.filter,
            if action == "retry" {
                "retried"
            } else {
                "discarded"
            },
            n,
        ),
        Err(r) => r,
    }
}

/// Counts the items matching `f`: O(1) from the counters without a job filter, else by
/// walking the DLQ a budget at a time (an explicit bulk action pays for what it acts on).
async fn count(state: &AppState, family: Family, f: &Filter) -> Result<u64, Response> {
    let dlq = state.services.dlq(family);
    if f.job_id.is_none() {
        let s = dlq.stats().await.map_err(|e| html::unavailable(&e))?;
        return Ok(match f.kind {
            KindFilter::Any => s.total,
            KindFilter::Transient => s.transient,
            KindFilter::Permanent => s.permanent,
            KindFilter::Parked => s.parked,
        });
    }
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = dlq
            .browse(dlq_core::MAX_LIST_LIMIT, cursor.as_deref(), f)
            .await
            .map_err(|e| html::unavailable(&e))?;
        n += page.items.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(n),
        }
    }
}

/// `GET /ui/dlq/{family}/confirm?action=&kind=&job=`: how many items "all matching" is.
pub async fn confirm(
    State(state): State<AppState>,
    session: Session,
    Path(word): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let family = match family(&word) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q = query(raw.as_deref());
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let action = match form.one("action") {
        Some("retry") => "retry",
        Some("discard") => "discard",
        _ => {
            return html::error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unknown action",
                "The actions are retry and discard.",
            );
        }
    };
    let n = match count(&state, family, &q.filter).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let what = match (q.filter.kind, q.filter.job_id) {
        (KindFilter::Any, None) => "every item".to_owned(),
        (k, None) => format!("every {} item", k.as_str()),
        (KindFilter::Any, Some(j)) => format!("every item of job {j}"),
        (k, Some(j)) => format!("every {} item of job {j}", k.as_str()),
    };
    let verb = if action == "retry" {
        "Retry"
    } else {
        "Discard"
    };
    let limit_note = if n as usize > MAX_BULK {
        format!(
            " One click acts on at most {}; click again for the rest.",
            num(MAX_BULK as u64)
        )
    } else {
        String::new()
    };
    let fq = filter_query(&q.filter);
    let body = format!(
        "<p class=\"confirm\" role=\"alert\">{verb} <strong data-count=\"{n}\">{count} items</strong>: {what} in the {fam} DLQ?{limit_note}</p>\
<form method=\"post\" action=\"/ui/dlq/{fam}/all?{fq_html}\">{csrf}\
<input type=\"hidden\" name=\"action\" value=\"{action}\">\
<button type=\"submit\" class=\"{cls}\">{verb} {count} items</button> \
<a href=\"/ui/dlq/{fam}?{fq_html}\">Cancel</a></form>",
        count = num(n),
        what = esc(&what),
        fam = family.as_str(),
        csrf = html::csrf_field(&session),
        fq_html = esc(&fq),
        cls = if action == "retry" { "" } else { "danger" },
    );
    html::layout(
        Page {
            title: &format!("{verb} all matching"),
            nav: Nav::Dlq,
            refresh_secs: 0,
        },
        &session,
        &body,
    )
}

/// `POST /ui/dlq/{family}/all?kind=&job=`: acts on up to [`MAX_BULK`] matching items,
/// newest first. Items that fail again meanwhile come back newer than the walk and are
/// not acted on twice.
pub async fn act_all(
    State(state): State<AppState>,
    session: Session,
    Path(word): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = session.check(&headers, &form) {
        return r;
    }
    let family = match family(&word) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q = query(raw.as_deref());
    let action = form.one("action").unwrap_or("").to_owned();
    let dlq = state.services.dlq(family);
    let mut done = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let want = (MAX_BULK - done as usize).min(dlq_core::MAX_LIST_LIMIT);
        let page = match dlq.browse(want, cursor.as_deref(), &q.filter).await {
            Ok(p) => p,
            Err(e) => return html::unavailable(&e),
        };
        let ids: Vec<String> = page.items.iter().map(|l| l.id().to_owned()).collect();
        match apply(&state, family, &action, &ids).await {
            Ok(n) => done += n,
            Err(r) => return r,
        }
        let Some(next) = page.next_cursor else {
            break;
        };
        if done as usize >= MAX_BULK {
            return back(family, &q.filter, "more", done);
        }
        cursor = Some(next);
    }
    back(
        family,
        &q.filter,
        if action == "retry" {
            "retried"
        } else {
            "discarded"
        },
        done,
    )
}
