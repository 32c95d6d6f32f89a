//! Logging through `tracing`, as human text or JSON lines.
//!
//! Environment variables read here: `RUST_LOG` (wins over `telemetry.level` when set),
//! `NO_COLOR` (no colour even on a terminal).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

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
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
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
