//! Dead-letter queues on Redis for the pipeline's queue families.
//!
//! A DLQ keeps every message a worker gave up on, with its error, its kind (transient or
//! permanent), its counts and the payload needed to redrive it. Every change that touches
//! more than one key is one Lua script, so a crash between round trips cannot lose or
//! duplicate an item, and pop, redrive, get and discard by id cost O(log N) in the DLQ's
//! size. The key layout and each script's cost are described in the crate's README.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dlq_core::DlqError> {
//! use std::time::Duration;
//! use dlq_core::{Dlq, DlqItem, DlqOptions, ErrorKind, FamilyKeys, build_pool};
//!
//! let pool = build_pool("redis://127.0.0.1:6379", 8, Duration::from_secs(10))?;
//! let dlq = Dlq::new(pool, FamilyKeys::new("pipeline:", "scrape"), DlqOptions::default());
//! let item = DlqItem::new("src-1", "scrape", "timeout", ErrorKind::Transient,
//!     serde_json::json!({"source_id": "src-1"}));
//! dlq.push(&item).await?;
//! let page = dlq.list(100, None).await?;
//! if let Some(done) = dlq.redrive("src-1").await? {
//!     assert!(done.enqueued);
//! }
//! # let _ = page; Ok(()) }
//! ```

mod browse;
mod dlq;
mod error;
mod item;
mod lua;
mod redrive;
mod shards;

use std::time::Duration;

pub use browse::{Filter, FilteredPage, KindFilter, SCAN_BUDGET};
pub use dlq::{Dlq, DlqOptions, DlqStats, MAX_LIST_LIMIT, Page, PushOutcome, check_limit};
pub use error::{DlqError, Result};
pub use item::{DlqItem, EncodedItem, ErrorKind, ListedItem, MalformedItem};
pub use lua::LUA_PUSH_FN;
pub use pipeline_redis::{FamilyKeys, MAX_SHARDS, shard_of};
pub use pipeline_redis::{LUA_PRELUDE, RedisConn, RedisPool, is_unreachable};
pub use redrive::{
    BulkRedrive, DueAction, DueOutcome, RedriveOutcome, RedrivePolicy, RedriveResult,
    jitter_fraction,
};

/// A pool of `size` connections to `url` whose response timeout is `response_timeout`
/// (connection attempts time out after 5 s). `redis` 1.x defaults to 500 ms, too short for
/// a bulk script over thousands of items, hence the explicit value.
///
/// # Errors
/// [`DlqError::PoolBuild`] when `url` is not a Redis URL.
pub fn build_pool(url: &str, size: usize, response_timeout: Duration) -> Result<RedisPool> {
    RedisPool::new(url, size, response_timeout, Duration::from_secs(5))
        .map_err(|e| DlqError::PoolBuild(e.to_string()))
}
