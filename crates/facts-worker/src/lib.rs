//! The facts worker: the schema stage. It consumes the facts queue, which holds the pages of
//! projects with an extraction schema once their extraction is done (`facts_pending`), and
//! turns each page into records that answer the schema, every value with the verbatim quote
//! it came from (`facts-core`).
//!
//! Per delivery ([`FactsHandler`]):
//! 1. load the page, its project's current schema version and the schema;
//! 2. fill the schema with the project's backend: `markup` reads what the page declares
//!    (JSON-LD, microdata, RDFa, OpenGraph, `<meta>`, the schema's selector and pattern
//!    rules) on a blocking thread; `llm` packs the page's chunks into requests within a
//!    token budget and asks an OpenAI-compatible chat server for JSON that conforms to the
//!    schema, one request at a time, checking the job's token cap before each;
//! 3. check every quote against the page text (a value whose quote is not there is kept,
//!    counted and flagged ungrounded, never a fact) and consolidate per record;
//! 4. in one transaction: replace the page's values, record the run, and move the page to
//!    `extracted` with a `succeeded` event of stage `facts`.
//!
//! A 429 or 5xx from the model server is transient (its `Retry-After` honoured), as is a
//! timeout; an answer that is not JSON or does not conform to the schema is asked again
//! once, then fails the page as permanent with the answer kept in its trail (`rejected`
//! event). A job whose token cap is reached stops asking: its pages end `capped`.
//!
//! Environment variables read here: `PIPELINE_LLM_API_KEY` (through
//! [`Settings::llm_api_key`]).

mod handler;
mod llm;

use std::sync::Arc;
use std::time::Duration;

use chat_client::{ChatClient, ChatConfig, ResponseFormat};
use extract_core::Limits;
use pipeline_core::{Settings, Sources};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_runner::RunnerOptions;
use tokio_util::sync::CancellationToken;

pub use handler::FactsHandler;
pub use llm::LlmOptions;

/// The chat client of the `[facts.llm]` settings; the key from `PIPELINE_LLM_API_KEY` or
/// the key file. Built at start even when no project uses the `llm` backend, so a broken
/// setting is found at once rather than at the first such page.
///
/// # Errors
/// An unreadable key file or an unusable URL.
pub fn chat_client_from_settings(settings: &Settings) -> anyhow::Result<ChatClient> {
    let key = settings.llm_api_key(&Sources::from_process())?;
    let llm = &settings.facts.llm;
    let response_format: ResponseFormat = llm
        .response_format
        .parse()
        .map_err(|e| anyhow::anyhow!("facts.llm.response_format: {e}"))?;
    Ok(ChatClient::new(ChatConfig {
        url: llm.url.clone(),
        model: llm.model.clone(),
        api_key: key,
        timeout: Duration::from_millis(llm.timeout_ms),
        response_format,
        temperature: Some(llm.temperature),
        ..ChatConfig::default()
    })?)
}

/// The `llm` backend's request sizes, from `[facts.llm]`.
pub fn llm_options(settings: &Settings) -> LlmOptions {
    LlmOptions {
        max_input_tokens: settings.facts.llm.max_input_tokens,
        max_output_tokens: settings.facts.llm.max_output_tokens,
    }
}

/// How much of a page's HTML the markup backend parses: the extraction's bounds.
pub fn markup_limits(settings: &Settings) -> Limits {
    let e = &settings.extraction;
    Limits {
        max_input_bytes: e.max_html_bytes,
        max_depth: e.max_depth,
        max_elements: e.max_elements,
        max_attributes: e.max_attributes,
        max_attributes_per_element: e.max_attributes_per_element,
        max_text_bytes: e.max_text_bytes,
        max_work: e.max_work_units,
        time_budget_ms: e.time_budget_ms,
        ..Limits::default()
    }
}

/// The handler for `services`, asking models through `chat`.
pub fn handler(services: &Services, chat: ChatClient) -> FactsHandler {
    FactsHandler::new(
        services.db.clone(),
        services.progress.clone(),
        Arc::new(chat),
        llm_options(&services.settings),
        markup_limits(&services.settings),
        services.settings.facts.max_values_per_page,
    )
}

/// The runner options of the `[facts]`, `[queue]` and `[shutdown]` settings.
pub fn runner_options(settings: &Settings) -> RunnerOptions {
    RunnerOptions {
        concurrency: settings.facts.concurrency,
        reserve_batch: settings.queue.reserve_batch,
        drain_timeout: settings.shutdown.drain_timeout(),
    }
}

/// Consumes the facts queue until `cancel` fires, then drains within the configured
/// timeout. Returns whether the drain was complete.
pub async fn run(services: &Services, chat: ChatClient, cancel: CancellationToken) -> bool {
    let queue = services.queue(Family::Facts).clone();
    let handler = Arc::new(handler(services, chat));
    let opts = runner_options(&services.settings);
    pipeline_runner::run(queue, handler, opts, services.activity.clone(), cancel).await
}
