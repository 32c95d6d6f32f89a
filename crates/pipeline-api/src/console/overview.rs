//! The overview (every family's queue, DLQ, pause state, and its work over the last hour,
//! day or week), the workers page, and pausing and resuming a family from the console.

use std::fmt::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Redirect, Response};
use chrono::Utc;
use pipeline_ops::heartbeat;
use pipeline_ops::{Family, pause, queues};
use pipeline_store::console::{self as store, Bucket};

use super::html::{self, Nav, Page, esc, num};
use super::session::Session;
use super::{Form, family};
use crate::AppState;

/// Minutes the last-hour charts cover.
const CHART_MINUTES: i64 = 60;
/// Longest a longer range's count of the event trail may take before the page gives up on
/// its charts (the rest of the page is still shown).
const HISTORY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How far back the charts look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    /// Per minute, from the workers' counters in Redis (kept two hours).
    Hour,
    /// Per hour, from the event trail.
    Day,
    /// Per six hours, from the event trail.
    Week,
}

impl Range {
    const ALL: [Range; 3] = [Range::Hour, Range::Day, Range::Week];

    fn parse(word: Option<&str>) -> Option<Self> {
        match word {
            None | Some("") | Some("1h") => Some(Self::Hour),
            Some("24h") => Some(Self::Day),
            Some("7d") => Some(Self::Week),
            Some(_) => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Hour => "Last hour",
            Self::Day => "Last 24 hours",
            Self::Week => "Last 7 days",
        }
    }

    /// The bucket length and the number of buckets.
    fn buckets(self) -> (i64, i64) {
        match self {
            Self::Hour => (60, CHART_MINUTES),
            Self::Day => (3600, 24),
            Self::Week => (6 * 3600, 28),
        }
    }

    fn span(self) -> html::Span<'static> {
        match self {
            Self::Hour => html::Span {
                name: "last hour",
                per: "min",
                dated: false,
            },
            Self::Day => html::Span {
                name: "last 24 hours",
                per: "h",
                dated: true,
            },
            Self::Week => html::Span {
                name: "last 7 days",
                per: "6 h",
                dated: true,
            },
        }
    }
}

/// One family's series: bucket starts (unix seconds) and processed, failed, dead-lettered.
type Series = (Vec<i64>, Vec<u64>, Vec<u64>, Vec<u64>);

/// Every family's series over `range`: the last hour from the Redis counters, longer
/// ranges from the event trail (succeeded, failed and dead-lettered attempts by stage), with
/// empty buckets as zeros. `Err` carries what to say instead of the charts.
async fn history(state: &AppState, range: Range) -> Result<Vec<(Family, Series)>, Response> {
    let mut out = Vec::new();
    if range == Range::Hour {
        for family in Family::ALL {
            let series = queues::per_minute(&state.services, family, CHART_MINUTES)
                .await
                .map_err(|e| html::unavailable(&e))?;
            out.push((
                family,
                (
                    series.iter().map(|(m, _)| m * 60).collect(),
                    series.iter().map(|(_, c)| c.processed).collect(),
                    series.iter().map(|(_, c)| c.failed).collect(),
                    series.iter().map(|(_, c)| c.dead_lettered).collect(),
                ),
            ));
        }
        return Ok(out);
    }
    let (len, count) = range.buckets();
    let first = (Utc::now().timestamp().div_euclid(len) - (count - 1)) * len;
    let rows = store::work_history(&state.services.db, first, len, HISTORY_TIMEOUT)
        .await
        .map_err(|e| html::unavailable(&e))?;
    let starts: Vec<i64> = (0..count).map(|i| first + i * len).collect();
    for family in Family::ALL {
        let of = |pick: fn(&Bucket) -> i64| -> Vec<u64> {
            starts
                .iter()
                .map(|s| {
                    rows.iter()
                        .find(|(stage, b)| stage == family.as_str() && b.start == *s)
                        .map_or(0, |(_, b)| pick(b).max(0) as u64)
                })
                .collect()
        };
        out.push((
            family,
            (
                starts.clone(),
                of(|b| b.succeeded),
                of(|b| b.failed),
                of(|b| b.dead_lettered),
            ),
        ));
    }
    Ok(out)
}

/// `GET /ui/?range=1h|24h|7d`: per family, the queue by state, the DLQ by kind, the pause
/// state with its button, and processed / failed / dead-lettered over the range.
pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let asked = Range::parse(form.some("range"));
    let range = asked.unwrap_or(Range::Hour);
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
<td class=\"n\"><a href=\"/ui/queues/{name}?state=ready\" data-count=\"ready\">{}</a></td>\
<td class=\"n\"><a href=\"/ui/queues/{name}?state=in_flight\" data-count=\"in_flight\">{}</a></td>\
<td class=\"n\"><a href=\"/ui/queues/{name}?state=delayed\" data-count=\"delayed\">{}</a></td>\
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
    body.push_str("</tbody></table></div>");
    let _ = write!(
        body,
        "<h2>{}</h2><nav class=\"tabs\" aria-label=\"Time range\"><ul>",
        range.label()
    );
    for r in Range::ALL {
        let cur = if r == range {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<li><a href=\"/ui/?range={w}\"{cur}>{w}</a></li>",
            w = r.word()
        );
    }
    body.push_str("</ul></nav>");
    if asked.is_none() {
        body.push_str(
            "<p class=\"error\" role=\"alert\">Unknown range; the ranges are 1h, 24h and 7d.</p>",
        );
    }
    match history(&state, range).await {
        Ok(families) => {
            body.push_str("<div class=\"charts\">");
            for (family, (starts, processed, failed, dead)) in families {
                body.push_str(&html::chart(
                    &format!("{} per {}", family.as_str(), range.span().per),
                    range.span(),
                    &starts,
                    &[
                        ("processed", "s-processed", processed),
                        ("failed", "s-failed", failed),
                        ("dead-lettered", "s-dead", dead),
                    ],
                ));
            }
            body.push_str("</div>");
        }
        // The queue table above is worth showing without the charts.
        Err(_) => body.push_str(
            "<p class=\"error\" role=\"alert\" id=\"history-error\">The history could not be \
read in time (for the longer ranges the event trail is counted; try a shorter one).</p>",
        ),
    }
    let source = if range == Range::Hour {
        "the workers' per-minute counters"
    } else {
        "the event trail"
    };
    let _ = write!(
        body,
        "<p class=\"hint\">Updated {} · from {source}{refresh}. Failed counts every failed \
attempt (retried or dead-lettered).</p>",
        html::time(Utc::now()),
        refresh = if range == Range::Hour {
            " · refreshes every 5 s"
        } else {
            ""
        },
    );
    html::layout(
        Page {
            title: "Overview",
            nav: Nav::Overview,
            refresh_secs: if range == Range::Hour { 5 } else { 0 },
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
        "pause" => pause::pause(&state.services, family, pipeline_store::Actor::Console)
            .await
            .map(|_| ()),
        "resume" => pause::resume(&state.services, family, pipeline_store::Actor::Console)
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
