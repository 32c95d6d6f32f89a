//! Start-up's wait for the schema: a daemon does not run against a database that lacks a
//! migration it knows. It waits (and says so) instead of crashing, so daemons may start
//! before `pipelinectl migrate` has run: in any order under systemd, or beside a migration
//! Job or init container under Kubernetes.

use std::time::Duration;

use pipeline_core::probes::SchemaGate;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the schema is looked at while waiting.
pub const POLL: Duration = Duration::from_secs(1);

/// How often the wait is logged (the first look is logged at once).
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaWait {
    /// Every migration this binary knows is applied; the gate is open.
    Current,
    /// `cancel` fired (SIGTERM or SIGINT) first; the gate stays closed.
    Cancelled,
}

/// Closes `gate` (so `/ready` answers 503) and looks at `_sqlx_migrations` every [`POLL`]
/// until every migration this binary knows is applied, then opens it. A database that cannot
/// be reached is waited for too. Logs a warning at most every [`LOG_EVERY`] while waiting;
/// returns as soon as `cancel` fires.
pub async fn wait_for_schema(
    db: &PgPool,
    gate: &SchemaGate,
    cancel: &CancellationToken,
) -> SchemaWait {
    gate.wait("checking migrations");
    let mut last_log: Option<Instant> = None;
    let mut waited = false;
    loop {
        let status = tokio::select! {
            () = cancel.cancelled() => return SchemaWait::Cancelled,
            status = pipeline_store::schema_status(db) => status,
        };
        let reason = match status {
            Ok(s) if s.is_current() => {
                gate.open();
                if waited {
                    tracing::info!(have = s.have, need = s.need, "migrations applied; starting");
                }
                return SchemaWait::Current;
            }
            Ok(s) => format!(
                "waiting for migrations: have {}, need {}; run `pipelinectl migrate`",
                s.have, s.need
            ),
            Err(err) => format!(
                "waiting for the database ({}): {err}",
                pipeline_core::pools::pg_endpoint(db)
            ),
        };
        waited = true;
        if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!("{reason}");
            last_log = Some(Instant::now());
        }
        gate.wait(reason);
        tokio::select! {
            () = cancel.cancelled() => return SchemaWait::Cancelled,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
