//! Building a Redis pool suitable for the DLQ scripts.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};

use crate::error::{DlqError, Result};

/// A pool of `max_size` multiplexed connections to `url` whose response timeout is
/// `response_timeout`. `redis` 1.x defaults to 500 ms, too short for a bulk script over
/// thousands of items (or any blocking pop that shares the pool), hence the explicit value.
pub fn build_pool(url: &str, max_size: usize, response_timeout: Duration) -> Result<Pool> {
    let connection = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let manager = Manager::new_with_config(url, connection)?;
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DlqError::PoolBuild(e.to_string()))
}
