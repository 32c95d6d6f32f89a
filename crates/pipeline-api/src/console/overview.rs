//! The overview (every family's queue, DLQ, pause state and last hour), the workers page,
//! and pausing and resuming a family from the console.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Redirect, Response};
use chrono::Utc;
use pipeline_ops::heartbeat;
use pipeline_ops::{Family, pause, queues};

use super::html::{self, Nav, Page, esc, num};
use super::session::Session;
use super::{Form, family};
use crate::AppState;

/// Minutes the charts cover.
const CHART_MINUTES: i64 = 60;

/// `GET /ui/`: per family, the queue by state, the DLQ by kind, the pause state with its
/// button, and processed / failed / dead-lettered per minute over the last hour.
pub async fn overview(State(state): State<AppState>, session: Session) -> Response {
    let snapshot = match queues::snapshot(&state.services).await {
        Ok(s) => s,
        Err(e) => return html::unavailable(&e),
    };
    let mut body = String::from(
        "<div class=\"table-wrap\"><table class=\"queues\"><caption>Queues and dead letters, per family</caption><thead><tr>\
<th scope=\"col\">Family</th><th scope=\"col\">State</th><th scope=\"col\">Ready</th>\
<th scope=\"col\">In flight</th><th scope=\"col\">Delayed</th>\
<th scope=\"col\">DLQ transient</th><th scope=\"col\">DLQ permanent</th>\
<th scope=\"col\">DLQ parked</th><th scope=\"col\">Action</th></tr></thead><tbody>",
    );
    for f in &snapshot {
        let name = f.family.as_str();
        let (badge, button) = match &f.paused {
            Some(p) => (
                format!(
                    "<span class=\"badge paused\">paused</span> <small>by {} at {}</small>",
                    esc(&p.by),
                    html::time(p.at)
                ),
                "resume",
            ),
            None => (
                "<span class=\"badge running\">running</span>".to_owned(),
                "pause",
            ),
        };
        let _ = write!(
            body,
            "<tr data-family=\"{name}\"><th scope=\"row\">{name}</th><td>{badge}</td>\
<td class=\"n\" data-count=\"ready\">{}</td><td class=\"n\" data-count=\"in_flight\">{}</td>\
<td class=\"n\" data-count=\"delayed\">{}</td>\
<td class=\"n\"><a href=\"/ui/dlq/{name}?kind=transient\">{}</a></td>\
<td class=\"n\"><a href=\"/ui/dlq/{name}?kind=permanent\">{}</a></td>\
<td class=\"n\"><a href=\"/ui/dlq/{name}?kind=parked\">{}</a></td>\
<td><form method=\"post\" action=\"/ui/queues/{name}/{button}\">{csrf}\
<button type=\"submit\" class=\"{button}\" aria-label=\"{Button} {name}\">{Button}</button></form></td></tr>",
            num(f.ready),
            num(f.in_flight),
            num(f.delayed),
            num(f.dlq_transient),
            num(f.dlq_permanent),
            num(f.dlq_parked),
            csrf = html::csrf_field(&session),
            Button = if button == "pause" { "Pause" } else { "Resume" },
        );
    }
    body.push_str("</tbody></table></div><h2>Last hour</h2><div class=\"charts\">");
    for family in Family::ALL {
        let series = match queues::per_minute(&state.services, family, CHART_MINUTES).await {
            Ok(s) => s,
            Err(e) => return html::unavailable(&e),
        };
        let minutes: Vec<i64> = series.iter().map(|(m, _)| *m).collect();
        body.push_str(&html::chart(
            &format!("{} per minute", family.as_str()),
            &minutes,
            &[
                (
                    "processed",
                    "s-processed",
                    series.iter().map(|(_, c)| c.processed).collect(),
                ),
                (
                    "failed",
                    "s-failed",
                    series.iter().map(|(_, c)| c.failed).collect(),
                ),
                (
                    "dead-lettered",
                    "s-dead",
                    series.iter().map(|(_, c)| c.dead_lettered).collect(),
                ),
            ],
        ));
    }
    let _ = write!(
        body,
        "</div><p class=\"hint\">Updated {} · refreshes every 5 s. Failed counts every failed \
attempt (retried or dead-lettered).</p>",
        html::time(Utc::now())
    );
    html::layout(
        Page {
            title: "Overview",
            nav: Nav::Overview,
            refresh_secs: 5,
        },
        &session,
        &body,
    )
}

/// `GET /ui/workers`: every live daemon from its heartbeat.
pub async fn workers(State(state): State<AppState>, session: Session) -> Response {
    let beats = match heartbeat::live(
        &state.services.redis,
        &state.services.settings.redis.key_prefix,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return html::unavailable(&e),
    };
    let mut body = format!(
        "<p>{} live daemons. Each writes a heartbeat every {} s that expires after {} s, so \
a daemon that died drops off within {} s.</p>",
        beats.len(),
        heartbeat::EVERY.as_secs(),
        heartbeat::TTL.as_secs(),
        heartbeat::TTL.as_secs()
    );
    body.push_str(
        "<div class=\"table-wrap\"><table><caption>Live daemons</caption><thead><tr><th scope=\"col\">Kind</th>\
<th scope=\"col\">Family</th><th scope=\"col\">Host</th><th scope=\"col\">PID</th>\
<th scope=\"col\">Version</th><th scope=\"col\">Concurrency</th><th scope=\"col\">In flight</th>\
<th scope=\"col\">Last heartbeat</th><th scope=\"col\">Up since</th></tr></thead><tbody>",
    );
    let now = Utc::now();
    for b in &beats {
        let paused = if b.paused {
            " <span class=\"badge paused\">paused</span>"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<tr data-kind=\"{kind}\"><th scope=\"row\">{kind}</th><td>{family}{paused}</td><td>{host}</td>\
<td class=\"n\">{pid}</td><td>{version}</td><td class=\"n\">{conc}</td><td class=\"n\">{inflight}</td>\
<td>{ago} s ago</td><td>{started}</td></tr>",
            kind = esc(&b.kind),
            family = esc(b.family.as_deref().unwrap_or("—")),
            host = esc(&b.host),
            pid = b.pid,
            version = esc(&b.version),
            conc = b.concurrency,
            inflight = b.in_flight,
            ago = (now - b.last_beat).num_seconds().max(0),
            started = html::time(b.started_at),
        );
    }
    body.push_str("</tbody></table></div>");
    html::layout(
        Page {
            title: "Workers",
            nav: Nav::Workers,
            refresh_secs: 5,
        },
        &session,
        &body,
    )
}

/// `POST /ui/queues/{family}/{pause|resume}`.
pub async fn pause_resume(
    State(state): State<AppState>,
    session: Session,
    Path((word, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = session.check(&headers, &Form::parse(&body)) {
        return r;
    }
    let family = match family(&word) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let done = match action.as_str() {
        "pause" => pause::pause(&state.services, family, "console")
            .await
            .map(|_| ()),
        "resume" => pause::resume(&state.services, family, "console")
            .await
            .map(|_| ()),
        _ => {
            return html::error_page(
                axum::http::StatusCode::NOT_FOUND,
                "Not found",
                "The actions are pause and resume.",
            );
        }
    };
    match done {
        Ok(()) => axum::response::IntoResponse::into_response(Redirect::to("/ui/")),
        Err(e) => html::unavailable(&e),
    }
}
