//! The work of one facts delivery. The runner decodes the message and records failures.

use std::sync::Arc;

use chat_client::ChatClient;
use extract_core::Limits;
use facts_core::ground::PageText;
use facts_core::{Filled, Record, Schema};
use pipeline_ops::Family;
use pipeline_ops::ledger::SourceLedger;
use pipeline_ops::messages::SourceMessage;
use pipeline_runner::{Failure, FailureLog, Handler};
use pipeline_store::facts::{self, FactRun, FactsInput, NewFact};
use pipeline_store::progress::Progress;
use pipeline_store::{Actor, sources};
use serde_json::json;
use sqlx::PgPool;
use work_queue::Delivery;

use crate::llm::{self, AskError, LlmOptions};

/// Turns each delivered page into the records its project's schema asks for.
#[derive(Debug, Clone)]
pub struct FactsHandler {
    db: PgPool,
    progress: Progress,
    ledger: SourceLedger,
    chat: Arc<ChatClient>,
    llm: LlmOptions,
    limits: Limits,
    max_values: usize,
}

/// What the backend produced for a page, before it is stored.
struct Outcome {
    filled: Filled,
    backend: &'static str,
    capped: bool,
    requests: i32,
    prompt_tokens: i64,
    completion_tokens: i64,
}

impl FactsHandler {
    /// A handler writing to `db` (refreshing job progress through `progress`), asking
    /// models through `chat` with `llm`'s sizes, parsing markup within `limits`, failing a
    /// page that gives more than `max_values` values.
    pub fn new(
        db: PgPool,
        progress: Progress,
        chat: Arc<ChatClient>,
        llm: LlmOptions,
        limits: Limits,
        max_values: usize,
    ) -> Self {
        Self {
            ledger: SourceLedger::new(db.clone(), progress.clone()),
            db,
            progress,
            chat,
            llm,
            limits,
            max_values,
        }
    }

    async fn process(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        let source_id = msg.source_id;
        let attempt = (delivery.attempts + 1) as i32;
        let input = facts::load_input(&self.db, source_id)
            .await
            .map_err(|e| database(&e))?
            .ok_or_else(|| Failure::permanent(format!("source {source_id} not found")))?;
        // A redelivery after the run committed (a crash before the ack), a page a person
        // dropped, or one submitted again and queued for a new fetch: nothing to do here.
        if !input.waits_for_facts() {
            tracing::info!(
                status = %input.status,
                "the page does not wait for the facts stage; nothing to do"
            );
            return Ok(());
        }
        self.event(
            &msg,
            "started",
            attempt,
            json!({ "deliveries": delivery.deliveries, "redrives": delivery.redrives }),
        )
        .await?;
        let Some(version) = input.schema_version else {
            facts::skip(&self.db, &self.progress, source_id, msg.job_id, attempt)
                .await
                .map_err(|e| database(&e))?;
            tracing::info!("the project has no extraction schema any more; skipped");
            return Ok(());
        };
        let stored = facts::schema_version(&self.db, input.project_id, version)
            .await
            .map_err(|e| database(&e))?
            .ok_or_else(|| Failure::permanent(format!("schema version {version} not found")))?;
        let schema = Schema::parse(&stored.schema.to_string()).map_err(|e| {
            Failure::permanent(format!(
                "stored schema version {version} does not validate: {e}"
            ))
        })?;

        let outcome = match stored.backend.as_str() {
            "llm" => self.ask_model(&msg, attempt, &input, &schema).await?,
            _ => self.read_markup(&input, schema.clone()).await?,
        };
        let records = facts_core::consolidate_for(&schema.name, outcome.filled.records);
        let rows = fact_rows(&records);
        if rows.len() > self.max_values {
            return Err(Failure::permanent(format!(
                "the page gave {} values, over facts.max_values_per_page ({})",
                rows.len(),
                self.max_values
            )));
        }
        let grounded = rows.iter().filter(|r| r.grounded).count();
        let ungrounded = rows.len() - grounded;
        let dropped = outcome.filled.dropped.len();
        record_metrics(outcome.backend, grounded, ungrounded, dropped);
        let outcome_word = if outcome.capped { "capped" } else { "complete" };
        let detail = json!({
            "backend": outcome.backend,
            "schema_version": version,
            "outcome": outcome_word,
            "records": records.len(),
            "grounded": grounded,
            "ungrounded": ungrounded,
            "dropped": outcome.filled.dropped.iter().take(20).map(|d| format!("{}: {}", d.field, d.reason)).collect::<Vec<_>>(),
            "requests": outcome.requests,
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
        });
        let run = FactRun {
            source_id,
            job_id: msg.job_id,
            attempt,
            schema_version: version,
            backend: outcome.backend,
            outcome: outcome_word,
            records: records.len() as i32,
            dropped: dropped as i32,
            requests: outcome.requests,
            prompt_tokens: outcome.prompt_tokens,
            completion_tokens: outcome.completion_tokens,
            detail,
            // Capped before anything was asked: the page's stored values stay.
            keep_values: outcome.capped && outcome.requests == 0,
        };
        let stored = facts::store_run(&self.db, &self.progress, &run, &rows)
            .await
            .map_err(|e| database(&e))?;
        if !stored {
            tracing::info!("the page no longer waits for the facts stage; its run is dropped");
            return Ok(());
        }
        tracing::info!(
            backend = outcome.backend,
            records = records.len(),
            grounded,
            ungrounded,
            capped = outcome.capped,
            "facts stored"
        );
        Ok(())
    }

    /// The markup backend, on a blocking thread (HTML trees are not `Send`).
    async fn read_markup(&self, input: &FactsInput, schema: Schema) -> Result<Outcome, Failure> {
        let html = input.raw_content.clone().unwrap_or_default();
        let url = input.url.clone();
        let limits = self.limits;
        let filled = tokio::task::spawn_blocking(move || {
            facts_core::markup::fill(&schema, &html, Some(&url), &limits)
        })
        .await
        .map_err(|e| Failure::transient(format!("markup task failed: {e}")))?
        .map_err(|e| Failure::permanent(format!("markup refused the page: {e}")))?;
        Ok(Outcome {
            filled,
            backend: "markup",
            capped: false,
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
        })
    }

    /// The llm backend over the page's chunks.
    async fn ask_model(
        &self,
        msg: &SourceMessage,
        attempt: i32,
        input: &FactsInput,
        schema: &Schema,
    ) -> Result<Outcome, Failure> {
        let chunks = facts::chunks(&self.db, msg.source_id)
            .await
            .map_err(|e| database(&e))?;
        let page = PageText::new(input.content.as_deref().unwrap_or_default());
        let asked = llm::ask(
            &self.chat, &self.db, msg.job_id, schema, &input.url, &chunks, &page, self.llm,
        )
        .await;
        match asked {
            Ok(a) => Ok(Outcome {
                filled: a.filled,
                backend: "llm",
                capped: a.capped,
                requests: a.requests,
                prompt_tokens: a.prompt_tokens,
                completion_tokens: a.completion_tokens,
            }),
            Err(AskError::Failed(f)) => Err(f),
            Err(AskError::Rejected { answer, reason }) => {
                // The answer is kept in the trail for the operator, cut to a size a trail
                // row should hold.
                let kept: String = answer.chars().take(16 * 1024).collect();
                self.event(
                    msg,
                    "rejected",
                    attempt,
                    json!({ "reason": reason, "answer": kept, "answer_chars": answer.chars().count() }),
                )
                .await?;
                Err(Failure::permanent(format!(
                    "the model's answer did not conform to the schema twice (kept in the trail's `rejected` event): {reason}"
                )))
            }
        }
    }

    async fn event(
        &self,
        msg: &SourceMessage,
        kind: &str,
        attempt: i32,
        detail: serde_json::Value,
    ) -> Result<(), Failure> {
        sources::record_event(
            &self.db,
            &sources::NewEvent {
                job_id: msg.job_id,
                source_id: msg.source_id,
                kind,
                stage: Family::Facts.as_str(),
                actor: Actor::FactsWorker,
                attempt: Some(attempt),
                detail: &detail,
            },
        )
        .await
        .map_err(|e| database(&e))
    }
}

/// The rows of consolidated records.
fn fact_rows(records: &[Record]) -> Vec<NewFact> {
    records
        .iter()
        .flat_map(|r| {
            r.values.iter().map(move |v| NewFact {
                entity: r.entity.clone(),
                entity_key: r.key.clone(),
                field: v.field.clone(),
                value: v.value.clone(),
                list_item: v.list_item,
                quote: v.quote.clone(),
                origin: v.origin.as_str().to_owned(),
                chunk_index: v.chunk_index,
                confidence: v.confidence,
                grounded: v.grounded,
            })
        })
        .collect()
}

fn record_metrics(backend: &'static str, grounded: usize, ungrounded: usize, dropped: usize) {
    metrics::counter!("pipeline_facts_values_total", "backend" => backend, "grounded" => "true")
        .increment(grounded as u64);
    metrics::counter!("pipeline_facts_values_total", "backend" => backend, "grounded" => "false")
        .increment(ungrounded as u64);
    metrics::counter!("pipeline_facts_dropped_values_total", "backend" => backend)
        .increment(dropped as u64);
}

impl Handler for FactsHandler {
    type Message = SourceMessage;

    async fn handle(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        self.process(delivery, msg).await
    }

    fn failure_log(&self) -> &dyn FailureLog {
        &self.ledger
    }

    /// Job-progress refreshes started in the background finish before a drain ends.
    async fn settled(&self) {
        self.progress.settled().await;
    }
}

/// A database error: worth a retry.
fn database(e: &dyn std::fmt::Display) -> Failure {
    Failure::transient(format!("database error: {e}"))
}
