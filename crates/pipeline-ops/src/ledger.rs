//! Where the runner records a settled failure of the pipeline's messages: on the source it
//! names, the one way for every family (the source's status, its last error, and an event
//! in its trail). The stages hand a [`SourceLedger`] to the runner (`pipeline-runner`'s
//! `Handler::failure_log`); the runner itself knows nothing of Postgres.

use std::future::Future;
use std::pin::Pin;

use pipeline_runner::{Failure, FailureLog, FailureRecord, Settled};
use pipeline_store::progress::Progress;
use pipeline_store::sources::{self, Transition};
use pipeline_store::{Actor, SourceStatus};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Records failures on the sources of one database.
#[derive(Debug, Clone)]
pub struct SourceLedger {
    db: PgPool,
    progress: Progress,
}

impl SourceLedger {
    /// A ledger over `db`, refreshing job progress through `progress` (the process's, from
    /// `Services`).
    pub fn new(db: PgPool, progress: Progress) -> Self {
        Self { db, progress }
    }
}

impl FailureLog for SourceLedger {
    fn record<'a>(&'a self, r: FailureRecord<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let ids = match r.ids {
                Some(ids) => Some(ids),
                None => ids_of_malformed(&self.db, r.message_id).await,
            };
            match ids {
                Some((source_id, job_id)) => {
                    record_failure(
                        &self.db,
                        &self.progress,
                        r.family,
                        source_id,
                        job_id,
                        r.failure,
                        r.settled,
                    )
                    .await
                }
                None => tracing::warn!(
                    error = r.failure.message(),
                    "failed message names no source; only the DLQ holds it"
                ),
            }
        })
    }
}

/// The source and job of a message whose body did not decode: the message id is the source
/// id, and the source row knows the job that created it.
async fn ids_of_malformed(db: &PgPool, message_id: &str) -> Option<(Uuid, Option<Uuid>)> {
    let source_id = Uuid::parse_str(message_id).ok()?;
    // No row (or no database) only loses the job id; the source id is still recorded.
    let job_id = sources::get(db, source_id)
        .await
        .ok()
        .and_then(|s| s.created_by_job_id);
    Some((source_id, job_id))
}

/// Records a settled failure in Postgres: the source moves to `retrying` (with a `failed`
/// event) or `dead_lettered` (with a `dead_lettered` event naming the DLQ), with the error,
/// its kind and the attempts. A failure to record is logged: the queue has settled the
/// message already, and the reconciler repairs a stale status.
pub async fn record_failure(
    db: &PgPool,
    progress: &Progress,
    family: &str,
    source_id: Uuid,
    job_id: Option<Uuid>,
    failure: &Failure,
    settled: Settled,
) {
    // The settled kind is the failure's (a transient failure that ran out of attempts is
    // dead-lettered as transient), so the failure's kind is recorded throughout.
    let kind = failure.kind().as_str();
    let message = failure.message();
    let (to, event, attempts, detail) = match settled {
        Settled::RetryScheduled { attempts, delay } => (
            SourceStatus::Retrying,
            "failed",
            attempts,
            json!({
                "error": message,
                "kind": kind,
                "attempt": attempts,
                "delay_ms": delay.as_millis() as u64,
            }),
        ),
        Settled::DeadLettered { attempts, .. } => (
            SourceStatus::DeadLettered,
            "dead_lettered",
            attempts,
            json!({
                "error": message,
                "kind": kind,
                "attempts": attempts,
                "dlq": family,
            }),
        ),
        Settled::LeaseLost => return,
    };
    let transition = Transition {
        source_id,
        job_id,
        to,
        event,
        stage: family,
        actor: worker_of(family),
        attempt: Some(attempts as i32),
        detail,
        error: Some((kind, message)),
    };
    match sources::transition(db, progress, &transition).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("failure of an unknown source; only the DLQ holds it"),
        Err(err) => tracing::error!(
            error = %err,
            "could not record the failure in Postgres; the reconciler will find the source"
        ),
    }
}

/// The daemon that runs `family`'s work (records its failures).
fn worker_of(family: &str) -> Actor {
    match family.parse::<crate::Family>() {
        Ok(crate::Family::Extraction) => Actor::ExtractionWorker,
        Ok(crate::Family::Facts) => Actor::FactsWorker,
        _ => Actor::ScrapeWorker,
    }
}
