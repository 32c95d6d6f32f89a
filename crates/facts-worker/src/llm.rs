//! The `llm` backend: a page's chunks packed into requests within a token budget, each
//! answer checked against the schema on our side, and the job's token cap honoured.

use chat_client::{ChatClient, ChatError, ChatRequest, Usage, estimate_tokens};
use facts_core::ground::PageText;
use facts_core::{Filled, Schema};
use pipeline_runner::Failure;
use pipeline_store::facts::{self, ChunkText};
use sqlx::PgPool;
use uuid::Uuid;

/// Request sizes of the `llm` backend.
#[derive(Debug, Clone, Copy)]
pub struct LlmOptions {
    /// Page text per request, in estimated tokens.
    pub max_input_tokens: u32,
    /// The longest answer asked for (`max_tokens`).
    pub max_output_tokens: u32,
}

/// What asking the model about one page gave.
#[derive(Debug, Default)]
pub struct Asked {
    pub filled: Filled,
    pub requests: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The job's token cap was reached before every batch was asked.
    pub capped: bool,
}

/// Why a page could not be answered.
#[derive(Debug)]
pub enum AskError {
    /// Transient (retried by the queue) or permanent.
    Failed(Failure),
    /// The answer was not JSON or did not conform to the schema, twice in a row.
    Rejected { answer: String, reason: String },
}

impl From<Failure> for AskError {
    fn from(f: Failure) -> Self {
        Self::Failed(f)
    }
}

/// Groups consecutive chunks into batches of at most `budget` estimated tokens (a chunk
/// larger than the budget goes alone: chunks are bounded by the extraction's size).
pub fn pack(chunks: &[ChunkText], budget: u32) -> Vec<&[ChunkText]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut used = 0u32;
    for (i, c) in chunks.iter().enumerate() {
        let cost = estimate_tokens(&c.text);
        if i > start && used.saturating_add(cost) > budget {
            batches.push(&chunks[start..i]);
            start = i;
            used = 0;
        }
        used = used.saturating_add(cost);
    }
    if start < chunks.len() {
        batches.push(&chunks[start..]);
    }
    batches
}

/// Asks the model about every batch of the page's chunks, one request at a time.
#[allow(clippy::too_many_arguments)]
pub async fn ask(
    chat: &ChatClient,
    db: &PgPool,
    job_id: Option<Uuid>,
    schema: &Schema,
    url: &str,
    chunks: &[ChunkText],
    page: &PageText,
    opts: LlmOptions,
) -> Result<Asked, AskError> {
    let instructions = facts_core::answer::instructions(schema);
    let json_schema = facts_core::answer::answer_schema(schema);
    let mut asked = Asked::default();
    let mut records = Vec::new();
    // What the job has left: read once, then from each request's own accounting (the
    // update that adds its usage returns what is left), not by a query per batch.
    let mut left = facts::tokens_left(db, job_id).await.map_err(database)?;
    for batch in pack(chunks, opts.max_input_tokens) {
        if left.is_some_and(|l| l <= 0) {
            asked.capped = true;
            break;
        }
        let mut text = String::new();
        for c in batch {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&c.text);
        }
        let request = ChatRequest {
            system: instructions.clone(),
            user: format!("Page: {url}\n\nText:\n{text}"),
            schema_name: schema.name.clone(),
            json_schema: json_schema.clone(),
            max_tokens: Some(opts.max_output_tokens),
        };
        let mut last_rejection = None;
        let mut filled = None;
        // A malformed or non-conforming answer is asked again once.
        for _ in 0..2 {
            let answer = chat.complete(&request).await;
            asked.requests += 1;
            let answer = match answer {
                Ok(answer) => {
                    left = spend(db, job_id, &mut asked, &answer.usage).await?;
                    answer
                }
                Err(ChatError::Malformed {
                    message,
                    answer,
                    usage,
                }) => {
                    if let Some(u) = usage {
                        left = spend(db, job_id, &mut asked, &u).await?;
                    }
                    metrics::counter!("pipeline_facts_model_answers_total", "outcome" => "malformed")
                        .increment(1);
                    last_rejection = Some((answer, message));
                    continue;
                }
                Err(e) => return Err(AskError::Failed(model_failure(e))),
            };
            match facts_core::answer::parse_answer(schema, &answer.value, None, page) {
                Ok(f) => {
                    metrics::counter!("pipeline_facts_model_answers_total", "outcome" => "conforming")
                        .increment(1);
                    filled = Some(f);
                    break;
                }
                Err(violations) => {
                    metrics::counter!("pipeline_facts_model_answers_total", "outcome" => "nonconforming")
                        .increment(1);
                    last_rejection = Some((answer.content, violations.to_string()));
                }
            }
        }
        let Some(mut f) = filled else {
            let (answer, reason) = last_rejection.unwrap_or_default();
            return Err(AskError::Rejected { answer, reason });
        };
        locate_chunks(&mut f, batch);
        records.append(&mut f.records);
        asked.filled.dropped.append(&mut f.dropped);
    }
    asked.filled.records = records;
    Ok(asked)
}

/// Each value's chunk: the first chunk of its batch whose text holds its quote.
fn locate_chunks(filled: &mut Filled, batch: &[ChunkText]) {
    let texts: Vec<PageText> = batch.iter().map(|c| PageText::new(&c.text)).collect();
    for record in &mut filled.records {
        for v in &mut record.values {
            v.chunk_index = texts
                .iter()
                .position(|t| t.contains(&v.quote))
                .map(|i| batch[i].chunk_index)
                .or(batch.first().map(|c| c.chunk_index));
        }
    }
}

/// Counts a request's usage on the page and the job; returns what the job has left under
/// its cap (`None`: no cap).
async fn spend(
    db: &PgPool,
    job_id: Option<Uuid>,
    asked: &mut Asked,
    usage: &Usage,
) -> Result<Option<i64>, AskError> {
    asked.prompt_tokens += usage.prompt_tokens as i64;
    asked.completion_tokens += usage.completion_tokens as i64;
    metrics::counter!("pipeline_facts_model_tokens_total", "kind" => "prompt")
        .increment(usage.prompt_tokens);
    metrics::counter!("pipeline_facts_model_tokens_total", "kind" => "completion")
        .increment(usage.completion_tokens);
    facts::spend_tokens(db, job_id, usage.total_tokens as i64)
        .await
        .map_err(database)
}

/// A model server's error as the queue's failure: 429, 5xx and timeouts are transient
/// (with the server's Retry-After), the rest permanent.
fn model_failure(e: ChatError) -> Failure {
    let retry_after = e.retry_after();
    if e.is_transient() {
        metrics::counter!("pipeline_facts_model_answers_total", "outcome" => "transient")
            .increment(1);
        Failure::Transient {
            message: format!("model server: {e}"),
            retry_after,
        }
    } else {
        metrics::counter!("pipeline_facts_model_answers_total", "outcome" => "refused")
            .increment(1);
        Failure::permanent(format!("model server refused the request: {e}"))
    }
}

fn database(e: pipeline_store::StoreError) -> AskError {
    AskError::Failed(Failure::transient(format!("database error: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: i32, chars: usize) -> ChunkText {
        ChunkText {
            chunk_index: i,
            text: "x".repeat(chars),
        }
    }

    #[test]
    fn packing_keeps_batches_under_the_budget_and_every_chunk_once() {
        let chunks: Vec<ChunkText> = (0..10).map(|i| chunk(i, 1200)).collect();
        let per_chunk = estimate_tokens(&chunks[0].text);
        let batches = pack(&chunks, per_chunk * 3);
        assert_eq!(batches.len(), 4, "3 + 3 + 3 + 1");
        let indexes: Vec<i32> = batches
            .iter()
            .flat_map(|b| b.iter().map(|c| c.chunk_index))
            .collect();
        assert_eq!(indexes, (0..10).collect::<Vec<_>>());
        // A chunk over the budget goes alone rather than being dropped.
        let big = pack(&chunks[..2], 1);
        assert_eq!(big.len(), 2);
        assert!(pack(&[], 100).is_empty());
    }
}
