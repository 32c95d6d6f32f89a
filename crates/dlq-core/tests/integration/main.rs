//! Integration tests against a real Redis (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
//! Each test uses its own key prefix and deletes its keys when done, so tests run in
//! parallel. Logs stay silent unless `TEST_LOG` is set.

mod common;
mod concurrency;
mod lifecycle;
mod listing;
mod malformed;
mod redrive;
