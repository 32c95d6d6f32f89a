//! Logging through `tracing`, as human text or JSON lines.
//!
//! Environment variables read here: `RUST_LOG` (wins over `telemetry.level` when set),
//! `NO_COLOR` (no colour even on a terminal).

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FmtSpan, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests and binaries share it.
pub fn init(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        // Postgres NOTICEs ("already exists, skipping") are noise at info.
        .or_else(|_| EnvFilter::try_new(format!("{},sqlx::postgres::notice=warn", settings.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        // Colour only for a person at a terminal: escape codes in a log file or a journal
        // break grep and log shippers. NO_COLOR (no-color.org) turns it off there too.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    // A second initialisation fails; that is expected in tests and ignored on purpose.
    let _ = match settings.format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// JSON lines with every field at the top level: the event's own fields and those of the
/// spans it happened in (the worker runner's span carries `family`, `message_id`,
/// `source_id`, `job_id` and `url`), so a log shipper can filter on `source_id` without
/// knowing which span set it. tracing-subscriber's own JSON format nests span fields under
/// `span`. Values stay plain: strings, numbers and booleans as such, anything else as its
/// display text.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut out = Map::new();
        out.insert("timestamp".into(), Value::String(now_rfc3339()));
        out.insert("level".into(), Value::String(meta.level().to_string()));
        out.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            // Outermost first, so an inner span's field wins over an outer one's.
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                {
                    out.extend(map);
                }
                out.insert("span".into(), Value::String(span.name().to_owned()));
            }
        }
        event.record(&mut Fields(&mut out));
        let line = serde_json::to_string(&Value::Object(out)).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields as plain JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields arrive here as their Display text; `?x` ones as Debug text.
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

/// Now, RFC 3339 in UTC with microseconds.
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// For tests: logs only when `TEST_LOG` is set, so test output stays quiet by default.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(&TelemetrySettings {
            format: LogFormat::Human,
            level: "debug".into(),
        });
    }
}
