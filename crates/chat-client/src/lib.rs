//! A client of any OpenAI-compatible chat-completions server (vLLM, llama.cpp's server,
//! Ollama, OpenAI, LiteLLM) that asks for JSON conforming to a JSON Schema.
//!
//! One [`ChatClient::complete`] call sends one request with a system prompt, a user prompt
//! and a schema, and returns the answer parsed as JSON ([`ChatAnswer`]) or an error that says
//! whether a retry can help ([`ChatError::is_transient`], [`ChatError::retry_after`]).
//! The client does not retry by itself: the caller owns the retry policy (a queue's
//! back-off, a dead-letter queue), and it needs the classification, not a hidden loop.
//!
//! How strictly the server is held to the schema depends on [`ResponseFormat`]: servers
//! with structured output (`json_schema`) constrain decoding to it; the others are asked
//! for a JSON object and given the schema in the prompt. Either way the answer is only
//! checked to be JSON: checking it against the schema is the caller's job.
//!
//! With the `loopback` feature, [`loopback::ModelServer`] is a real HTTP server on
//! 127.0.0.1 that speaks the same protocol and stands in for a model server in tests and
//! benchmarks, with per-request behaviour the test decides.

#![warn(missing_docs)]

mod answer;
mod client;
mod error;
mod tokens;

#[cfg(feature = "loopback")]
pub mod loopback;

pub use client::{
    ChatAnswer, ChatClient, ChatConfig, ChatRequest, DEFAULT_MAX_ANSWER_BYTES, DEFAULT_TIMEOUT,
    ResponseFormat, Usage,
};
pub use error::ChatError;
pub use tokens::{MESSAGE_OVERHEAD_TOKENS, estimate_tokens};
