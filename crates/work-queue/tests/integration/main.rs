//! Integration tests against the real Redis (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
//! Every test works under its own key prefix and deletes it afterwards.

mod bulk;
mod common;
mod failures;
mod lanes;
mod lifecycle;
mod shards;
mod wake;
