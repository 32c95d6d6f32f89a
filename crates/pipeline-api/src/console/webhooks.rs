//! Webhooks in the console: a project's endpoints with their deliveries by status and a
//! form to add one (the signing secret is shown once, on the page that answers the form,
//! never in a URL), an endpoint's recent deliveries (by status, paged) with a test and an
//! enable/disable button, and a delivery's payload and trail with a replay button. Input
//! goes through [`pipeline_ops::webhooks`], as the API's and the CLI's does; every form
//! carries the session's CSRF token.

use std::fmt::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use pipeline_ops::webhooks::{self as ops, EndpointChange, EndpointInput, Replay, WebhookError};
use pipeline_store::facts::{self, ProjectInfo};
use pipeline_store::webhooks::{self as store, EVENT_TYPES, Endpoint};
use uuid::Uuid;

use super::Form;
use super::html::{self, Nav, Page, esc, num, url_escape};
use super::jobs::status_badge;
use super::session::Session;
use crate::AppState;

/// Who the delivery trail names for changes made here.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Console;

/// Deliveries on one page of an endpoint.
const DELIVERIES_PAGE: i64 = 50;

/// Projects offered in the project picker.
const MAX_PROJECTS: i64 = 200;

/// The delivery statuses, in the order the pages show them.
const STATUSES: [&str; 5] = [
    "pending",
    "delivered",
    "dead_lettered",
    "parked",
    "cancelled",
];

fn not_found(what: &str) -> Response {
    html::error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no such {what}."),
    )
}

fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(raw).map_err(|_| not_found(what))
}

/// `pending 2 · delivered 10`, each linking to the endpoint's deliveries in that status.
fn counts_line(endpoint: Uuid, counts: &[(String, i64)]) -> String {
    let parts: Vec<String> = STATUSES
        .iter()
        .filter_map(|s| {
            let n = counts.iter().find(|(c, _)| c == s).map(|(_, n)| *n)?;
            Some(format!(
                "<a href=\"/ui/webhooks/{endpoint}?status={s}\">{s} {}</a>",
                num(n as u64)
            ))
        })
        .collect();
    if parts.is_empty() {
        "none yet".into()
    } else {
        parts.join(" · ")
    }
}

/// What the project page shows besides the endpoints.
#[derive(Default)]
struct Shown<'a> {
    /// The form as sent, when it was refused.
    form: Option<&'a Form>,
    error: Option<String>,
    /// The endpoint just created and its secret.
    created: Option<(Uuid, String)>,
}

async fn project_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    project: Option<&ProjectInfo>,
    shown: Shown<'_>,
) -> Response {
    let db = &state.services.db;
    let projects = match pipeline_store::jobs::projects_page(db, MAX_PROJECTS, 0).await {
        Ok(p) => p,
        Err(e) => return html::unavailable(&e),
    };
    let mut body = String::new();
    if let Some(e) = &shown.error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"webhook-error\">{}</p>",
            esc(e)
        );
    }
    if let Some((id, secret)) = &shown.created {
        let _ = write!(
            body,
            "<div class=\"notice\" role=\"status\" id=\"webhook-created\"><p>Endpoint \
<a href=\"/ui/webhooks/{id}\">{id}</a> added. Its signing secret is shown here once; give \
it to the receiver now:</p><p><code id=\"webhook-secret\">{}</code></p></div>",
            esc(secret)
        );
    }
    let mut options = String::new();
    for p in &projects {
        let sel = if project.is_some_and(|x| x.id == p.id) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            options,
            "<option value=\"{}\"{sel}>{}</option>",
            p.id,
            esc(&p.name)
        );
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/webhooks\" class=\"filters\">\
<label for=\"project\">Project</label><select id=\"project\" name=\"project\">{options}</select>\
<button type=\"submit\">Show</button></form>"
    );
    let Some(project) = project else {
        body.push_str(if projects.is_empty() {
            "<p>No projects yet: a submission or a crawl creates one.</p>"
        } else {
            "<p class=\"hint\">Pick a project to see and add its webhook endpoints.</p>"
        });
        return page(session, status, "Webhooks", &body);
    };
    let endpoints = match store::list_endpoints(db, project.id).await {
        Ok(e) => e,
        Err(e) => return html::unavailable(&e),
    };
    let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
    let counts = match store::delivery_counts_many(db, &ids).await {
        Ok(c) => c,
        Err(e) => return html::unavailable(&e),
    };
    let _ = write!(
        body,
        "<div class=\"table-wrap\"><table id=\"webhooks\"><caption>Endpoints of {}</caption><thead><tr>\
<th scope=\"col\">Endpoint</th><th scope=\"col\">URL</th><th scope=\"col\">Events</th>\
<th scope=\"col\">Enabled</th><th scope=\"col\">Deliveries</th><th scope=\"col\">Created</th>\
</tr></thead><tbody>",
        esc(&project.name)
    );
    if endpoints.is_empty() {
        body.push_str("<tr><td colspan=\"6\">No endpoints yet.</td></tr>");
    }
    for e in &endpoints {
        let mine: Vec<(String, i64)> = counts
            .iter()
            .filter(|(id, _, _)| *id == e.id)
            .map(|(_, s, n)| (s.clone(), *n))
            .collect();
        let _ = write!(
            body,
            "<tr data-webhook=\"{id}\"><th scope=\"row\"><a href=\"/ui/webhooks/{id}\">{short}</a></th>\
<td class=\"url\">{url}</td><td>{events}</td><td>{enabled}</td><td>{counts}</td><td>{created}</td></tr>",
            id = e.id,
            short = html::short_id(e.id),
            url = esc(&e.url),
            events = esc(&e.events.join(", ")),
            enabled = if e.enabled { "yes" } else { "no" },
            counts = counts_line(e.id, &mine),
            created = html::time(e.created_at),
        );
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&add_form(session, project, shown.form));
    page(
        session,
        status,
        &format!("Webhooks · {}", project.name),
        &body,
    )
}

/// The form that adds an endpoint (filled in again when it was refused).
fn add_form(session: &Session, project: &ProjectInfo, sent: Option<&Form>) -> String {
    let value = |name: &str| esc(sent.and_then(|f| f.one(name)).unwrap_or(""));
    let checked: Vec<&str> = sent.map(|f| f.all("events")).unwrap_or_default();
    let mut events = String::new();
    for (i, t) in EVENT_TYPES.iter().enumerate() {
        let on = if checked.contains(t) { " checked" } else { "" };
        let _ = write!(
            events,
            "<span class=\"check\"><input type=\"checkbox\" id=\"event-{i}\" name=\"events\" \
value=\"{t}\"{on}><label for=\"event-{i}\">{t}</label></span>"
        );
    }
    format!(
        "<section aria-labelledby=\"add-h\"><h2 id=\"add-h\">Add an endpoint</h2>\
<form method=\"post\" action=\"/ui/webhooks\" class=\"form\" id=\"webhook-form\">{csrf}\
<input type=\"hidden\" name=\"project\" value=\"{project}\">\
<label for=\"webhook-url\">URL (http or https; deliveries are POSTed here)</label>\
<input id=\"webhook-url\" name=\"url\" required spellcheck=\"false\" value=\"{url}\">\
<fieldset><legend>Events</legend>{events}</fieldset>\
<label for=\"webhook-description\">Description (optional)</label>\
<input id=\"webhook-description\" name=\"description\" value=\"{description}\">\
<label for=\"webhook-secret\">Signing secret (optional: one is generated; 16 to 256 bytes)</label>\
<input id=\"webhook-secret\" name=\"secret\" type=\"password\" autocomplete=\"off\">\
<button type=\"submit\">Add endpoint</button></form>\
<p class=\"hint\">A host written as an address must be public unless the operator allows it \
(<code>webhooks.allow_private_hosts</code>). Every delivery is signed with the secret \
(header <code>Pipeline-Signature</code>); see docs/webhooks.md to verify it.</p></section>",
        csrf = html::csrf_field(session),
        project = project.id,
        url = value("url"),
        description = value("description"),
    )
}

fn page(session: &Session, status: StatusCode, title: &str, body: &str) -> Response {
    let mut r = html::layout(
        Page {
            title,
            nav: Nav::Webhooks,
            refresh_secs: 0,
        },
        session,
        body,
    );
    *r.status_mut() = status;
    r
}

async fn find_project(state: &AppState, reference: &str) -> Result<ProjectInfo, Response> {
    if reference.contains('\0') || reference.chars().count() > 200 {
        return Err(not_found("project"));
    }
    match facts::find_project(&state.services.db, reference).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(not_found("project")),
        Err(e) => Err(html::unavailable(&e)),
    }
}

/// `GET /ui/webhooks?project=`: a project's endpoints and the form to add one.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let project = match form.some("project") {
        Some(p) => match find_project(&state, p).await {
            Ok(p) => Some(p),
            Err(r) => return r,
        },
        None => None,
    };
    project_page(
        &state,
        &session,
        StatusCode::OK,
        project.as_ref(),
        Shown::default(),
    )
    .await
}

/// `POST /ui/webhooks`: adds an endpoint; the answer shows its secret once.
pub async fn add(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = session.check(&headers, &form) {
        return r;
    }
    let project = match find_project(&state, form.one("project").unwrap_or("")).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let input = EndpointInput {
        url: form.one("url").unwrap_or("").to_owned(),
        events: form.all("events").into_iter().map(str::to_owned).collect(),
        secret: form.some("secret").map(str::to_owned),
        description: form.some("description").map(str::to_owned),
    };
    match ops::create(&state.services, project.id, &input).await {
        Ok(created) => {
            tracing::info!(webhook_id = %created.endpoint.id, project_id = %project.id,
                "webhook endpoint registered through the console");
            project_page(
                &state,
                &session,
                StatusCode::CREATED,
                Some(&project),
                Shown {
                    created: Some((created.endpoint.id, created.secret)),
                    ..Shown::default()
                },
            )
            .await
        }
        Err(WebhookError::Invalid(e)) => {
            project_page(
                &state,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&project),
                Shown {
                    form: Some(&form),
                    error: Some(format!("Not added: {e}")),
                    ..Shown::default()
                },
            )
            .await
        }
        Err(e) => html::unavailable(&e),
    }
}

async fn endpoint_of(state: &AppState, raw: &str) -> Result<Endpoint, Response> {
    let id = parse_uuid(raw, "webhook endpoint")?;
    match store::get_endpoint(&state.services.db, id).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(not_found("webhook endpoint")),
        Err(e) => Err(html::unavailable(&e)),
    }
}

/// `GET /ui/webhooks/{id}?status=&before=`: an endpoint and its recent deliveries.
pub async fn endpoint(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let e = match endpoint_of(&state, &id).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let status = form.some("status").filter(|s| STATUSES.contains(s));
    let before = form.some("before").and_then(|b| Uuid::parse_str(b).ok());
    let db = &state.services.db;
    let project_ids = [e.project_id];
    let (counts, rows, project) = match tokio::try_join!(
        store::delivery_counts(db, e.id),
        store::list_deliveries(db, e.id, status, before, DELIVERIES_PAGE),
        pipeline_store::console::project_names(db, &project_ids),
    ) {
        Ok(x) => x,
        Err(err) => return html::unavailable(&err),
    };
    let project_name = project
        .get(&e.project_id)
        .cloned()
        .unwrap_or_else(|| e.project_id.to_string());
    let mut body = String::new();
    match form.one("done") {
        Some("ping") => body.push_str(
            "<p class=\"notice\" role=\"status\">A test delivery (<code>ping</code>) is on its way.</p>",
        ),
        Some("enabled") => body.push_str("<p class=\"notice\" role=\"status\">Enabled.</p>"),
        Some("disabled") => body.push_str(
            "<p class=\"notice\" role=\"status\">Disabled: no deliveries until it is enabled again.</p>",
        ),
        _ => {}
    }
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>Project</dt><dd><a href=\"/ui/webhooks?project={pid}\">{project}</a></dd>\
<dt>URL</dt><dd class=\"url\">{url}</dd><dt>Events</dt><dd>{events}</dd>\
<dt>Enabled</dt><dd id=\"webhook-enabled\">{enabled}</dd><dt>Description</dt><dd>{description}</dd>\
<dt>Deliveries</dt><dd>{counts}</dd><dt>Created</dt><dd>{created}</dd></dl>",
        pid = e.project_id,
        project = esc(&project_name),
        url = esc(&e.url),
        events = esc(&e.events.join(", ")),
        enabled = if e.enabled { "yes" } else { "no" },
        description = esc(if e.description.is_empty() {
            "—"
        } else {
            &e.description
        }),
        counts = counts_line(e.id, &counts),
        created = html::time(e.created_at),
    );
    let (to, label) = if e.enabled {
        ("false", "Disable")
    } else {
        ("true", "Enable")
    };
    let _ = write!(
        body,
        "<div class=\"filters\"><form method=\"post\" action=\"/ui/webhooks/{id}/test\">{csrf}\
<button type=\"submit\">Send a test delivery</button></form>\
<form method=\"post\" action=\"/ui/webhooks/{id}/enabled\">{csrf}\
<input type=\"hidden\" name=\"enabled\" value=\"{to}\"><button type=\"submit\">{label}</button></form></div>",
        id = e.id,
        csrf = html::csrf_field(&session),
    );
    body.push_str("<h2>Deliveries</h2><nav class=\"tabs\" aria-label=\"Status\">");
    let current = |s: Option<&str>| {
        if s == status {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    let _ = write!(
        body,
        "<a href=\"/ui/webhooks/{}\"{}>all</a> ",
        e.id,
        current(None)
    );
    for s in STATUSES {
        let _ = write!(
            body,
            "<a href=\"/ui/webhooks/{}?status={s}\"{}>{s}</a> ",
            e.id,
            current(Some(s))
        );
    }
    body.push_str(
        "</nav><div class=\"table-wrap\"><table id=\"deliveries\"><caption>Deliveries, newest first</caption><thead><tr>\
<th scope=\"col\">Delivery</th><th scope=\"col\">Event</th><th scope=\"col\">Status</th>\
<th scope=\"col\">Attempts</th><th scope=\"col\">HTTP</th><th scope=\"col\">Last error</th>\
<th scope=\"col\">Created</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"7\">No deliveries.</td></tr>");
    }
    for d in &rows {
        let _ = write!(
            body,
            "<tr data-delivery=\"{id}\"><th scope=\"row\"><a href=\"/ui/webhook-deliveries/{id}\">{short}</a></th>\
<td>{event}</td><td>{status}</td><td class=\"n\">{attempts}</td><td class=\"n\">{http}</td>\
<td class=\"err\">{error}</td><td>{created}</td></tr>",
            id = d.id,
            short = html::short_id(d.id),
            event = esc(&d.event),
            status = status_badge(&d.status),
            attempts = d.attempts,
            http = d.last_status.map(|s| s.to_string()).unwrap_or_default(),
            error = html::long_text(d.last_error.as_deref().unwrap_or(""), 120),
            created = html::time(d.created_at),
        );
    }
    body.push_str("</tbody></table></div>");
    if rows.len() as i64 == DELIVERIES_PAGE
        && let Some(last) = rows.last()
    {
        let filter = status
            .map(|s| format!("status={s}&amp;"))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<nav class=\"pager\" aria-label=\"Deliveries\"><a href=\"/ui/webhooks/{}?{filter}before={}\" rel=\"next\">Older →</a></nav>",
            e.id, last.id
        );
    }
    page(
        &session,
        StatusCode::OK,
        &format!("Webhook {}", e.url),
        &body,
    )
}

/// `POST /ui/webhooks/{id}/test`: writes a `ping` delivery.
pub async fn test(
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
    let id = match parse_uuid(&id, "webhook endpoint") {
        Ok(id) => id,
        Err(r) => return r,
    };
    match store::ping(&state.services.db, id).await {
        Ok(Some(_)) => Redirect::to(&format!("/ui/webhooks/{id}?done=ping")).into_response(),
        Ok(None) => not_found("webhook endpoint"),
        Err(e) => html::unavailable(&e),
    }
}

/// `POST /ui/webhooks/{id}/enabled` (`enabled=true|false`): starts or stops deliveries.
pub async fn set_enabled(
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
    let id = match parse_uuid(&id, "webhook endpoint") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let enabled = match form.one("enabled") {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return html::error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not changed",
                "The form must say enabled=true or enabled=false.",
            );
        }
    };
    let change = EndpointChange {
        enabled: Some(enabled),
        ..EndpointChange::default()
    };
    match ops::update(&state.services, id, &change).await {
        Ok(Some(_)) => {
            let done = if enabled { "enabled" } else { "disabled" };
            Redirect::to(&format!("/ui/webhooks/{id}?done={done}")).into_response()
        }
        Ok(None) => not_found("webhook endpoint"),
        Err(e) => html::unavailable(&e),
    }
}

/// `GET /ui/webhook-deliveries/{id}`: a delivery, its payload and trail, and a replay
/// button unless it is still pending.
pub async fn delivery(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let id = match parse_uuid(&id, "webhook delivery") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let d = match store::get_delivery(&state.services.db, id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found("webhook delivery"),
        Err(e) => return html::unavailable(&e),
    };
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let x = &d.delivery;
    let mut body = String::new();
    match form.one("done") {
        Some("replayed") => body.push_str(
            "<p class=\"notice\" role=\"status\">Replayed: it will be sent again with the same id.</p>",
        ),
        Some("redriven") => body.push_str(
            "<p class=\"notice\" role=\"status\">Redriven from the webhooks DLQ into its queue.</p>",
        ),
        _ => {}
    }
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>Endpoint</dt><dd><a href=\"/ui/webhooks/{endpoint}\">{endpoint}</a></dd>\
<dt>Event</dt><dd>{event}</dd><dt>Status</dt><dd id=\"delivery-status\">{status}</dd>\
<dt>Attempts</dt><dd>{attempts}</dd><dt>Last HTTP status</dt><dd>{http}</dd>\
<dt>Last error</dt><dd class=\"err\">{error}</dd><dt>Created</dt><dd>{created}</dd>\
<dt>Delivered</dt><dd>{delivered}</dd></dl>",
        endpoint = x.endpoint_id,
        event = esc(&x.event),
        status = status_badge(&x.status),
        attempts = x.attempts,
        http = x
            .last_status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "—".into()),
        error = esc(x.last_error.as_deref().unwrap_or("—")),
        created = html::time(x.created_at),
        delivered = x.delivered_at.map(html::time).unwrap_or_else(|| "—".into()),
    );
    if x.status != "pending" {
        let how = if matches!(x.status.as_str(), "dead_lettered" | "parked") {
            "It is in the webhooks DLQ: a replay redrives it into its queue."
        } else {
            "A replay sends it again with the same id (receivers dedupe on it)."
        };
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/webhook-deliveries/{id}/replay\" class=\"retry\">{csrf}\
<p>{how}</p><button type=\"submit\">Replay</button></form>",
            csrf = html::csrf_field(&session),
        );
    }
    let pretty = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
    let _ = write!(
        body,
        "<h2>Payload</h2><pre class=\"text\" id=\"payload\">{}</pre>",
        esc(&html::clip(&pretty, html::MAX_DETAIL_CHARS))
    );
    body.push_str(
        "<h2>Trail</h2><div class=\"table-wrap\"><table id=\"trail\"><caption>Attempts and changes, oldest first</caption><thead><tr>\
<th scope=\"col\">When</th><th scope=\"col\">Kind</th><th scope=\"col\">Attempt</th>\
<th scope=\"col\">HTTP</th><th scope=\"col\">Latency</th><th scope=\"col\">By</th>\
<th scope=\"col\">Error</th></tr></thead><tbody>",
    );
    if d.events.is_empty() {
        body.push_str("<tr><td colspan=\"7\">Not attempted yet.</td></tr>");
    }
    for e in &d.events {
        let _ = write!(
            body,
            "<tr><td>{at}</td><td>{kind}</td><td class=\"n\">{attempt}</td><td class=\"n\">{http}</td>\
<td class=\"n\">{latency}</td><td>{actor}</td><td class=\"err\">{error}</td></tr>",
            at = html::time(e.at),
            kind = status_badge(&e.kind),
            attempt = e.attempt.map(|a| a.to_string()).unwrap_or_default(),
            http = e.http_status.map(|s| s.to_string()).unwrap_or_default(),
            latency = e
                .latency_ms
                .map(|l| format!("{} ms", num(l.max(0) as u64)))
                .unwrap_or_default(),
            actor = esc(e.actor.as_deref().unwrap_or("")),
            error = html::long_text(e.error.as_deref().unwrap_or(""), 160),
        );
    }
    body.push_str("</tbody></table></div>");
    page(
        &session,
        StatusCode::OK,
        &format!("Delivery {}", x.id),
        &body,
    )
}

/// `POST /ui/webhook-deliveries/{id}/replay`: sends a delivery again (409 while pending).
pub async fn replay(
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
    let id = match parse_uuid(&id, "webhook delivery") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let done = match ops::replay(&state.services, id, ACTOR).await {
        Ok(Replay::Replayed) => "replayed",
        Ok(Replay::Redriven) => "redriven",
        Ok(Replay::NotFound) => return not_found("webhook delivery"),
        Ok(Replay::AlreadyPending) => {
            return html::error_page(
                StatusCode::CONFLICT,
                "Still pending",
                "This delivery is still pending: it is on its way already.",
            );
        }
        Err(e) => return html::unavailable(&e),
    };
    Redirect::to(&format!(
        "/ui/webhook-deliveries/{id}?done={}",
        url_escape(done)
    ))
    .into_response()
}
