//! The shared handles of one process, built once at start-up from the settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dlq_core::{Dlq, DlqOptions, FamilyKeys};
use pipeline_core::Settings;
use sqlx::PgPool;
use work_queue::{QueueOptions, WorkQueue};

use crate::Family;

/// One Postgres pool, one Redis pool, and a queue and DLQ handle per family, shared (cheap
/// clones) by every task of the process.
#[derive(Clone)]
pub struct Services {
    /// The settings the process started with.
    pub settings: Arc<Settings>,
    /// The process's Postgres pool.
    pub db: PgPool,
    /// The process's Redis pool.
    pub redis: dlq_core::RedisPool,
    /// Closed while the process waits for migrations (`/ready` answers 503); open otherwise.
    pub schema: pipeline_core::probes::SchemaGate,
    /// The process's own parts that report to `/ready` (the API's vector index).
    pub components: pipeline_core::probes::Components,
    /// What this process's runner did and does (counts, deliveries in flight, pause flags
    /// seen), for its heartbeat; see [`crate::activity`].
    pub activity: pipeline_runner::Activity,
    /// This process's job-progress refreshes (coalesced per job, settled on drain); see
    /// [`pipeline_store::progress`].
    pub progress: pipeline_store::progress::Progress,
    queues: BTreeMap<Family, WorkQueue>,
    dlqs: BTreeMap<Family, Dlq>,
}

impl Services {
    /// Builds the pools (lazily connected) and the handles.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = pipeline_core::pools::pg_pool(&settings)?;
        let redis = pipeline_core::pools::redis_pool(&settings)?;
        Self::with_pools(settings, db, redis)
    }

    /// Builds the handles over existing pools (tests pass their own).
    pub fn with_pools(
        settings: Settings,
        db: PgPool,
        redis: dlq_core::RedisPool,
    ) -> anyhow::Result<Self> {
        let q = &settings.queue;
        let dlq_max = (settings.dlq.max_items > 0).then_some(settings.dlq.max_items);
        let opts = QueueOptions {
            visibility_timeout: Duration::from_secs(q.visibility_timeout_secs),
            block_timeout: Duration::from_millis(q.block_timeout_ms),
            max_attempts: q.max_attempts,
            backoff_base: Duration::from_millis(q.backoff_base_ms),
            backoff_cap: Duration::from_millis(q.backoff_cap_ms),
            dlq_max_items: dlq_max,
            shards: q.shards,
            ..QueueOptions::default()
        };
        let mut queues = BTreeMap::new();
        let mut dlqs = BTreeMap::new();
        for family in Family::ALL {
            let keys = FamilyKeys::new(&settings.redis.key_prefix, family.as_str());
            queues.insert(
                family,
                WorkQueue::new(redis.clone(), keys.clone(), opts.clone())?,
            );
            dlqs.insert(
                family,
                Dlq::new(
                    redis.clone(),
                    keys,
                    DlqOptions {
                        max_items: dlq_max,
                        redrive_hold_ms: crate::dlq_ops::REDRIVE_HOLD.as_millis() as u64,
                    },
                ),
            );
        }
        Ok(Self {
            settings: Arc::new(settings),
            db,
            redis,
            schema: Default::default(),
            components: Default::default(),
            activity: Default::default(),
            progress: Default::default(),
            queues,
            dlqs,
        })
    }

    /// The server `err` failed to reach, named for a log line (`redis at host:port/db` or
    /// `postgres at host:port/db as user`, never a password); `None` when `err` is not an
    /// unreachable server (a bad reply, a constraint, a bug), where the endpoint is noise.
    pub fn unreachable(&self, err: &(dyn std::error::Error + 'static)) -> Option<String> {
        if dlq_core::is_unreachable(err) {
            return Some(self.redis.endpoint().to_owned());
        }
        pipeline_core::pools::is_pg_unreachable(err)
            .then(|| pipeline_core::pools::pg_endpoint(&self.db))
    }

    /// The work queue of a family.
    pub fn queue(&self, family: Family) -> &WorkQueue {
        &self.queues[&family]
    }

    /// The DLQ of a family.
    pub fn dlq(&self, family: Family) -> &Dlq {
        &self.dlqs[&family]
    }

    /// The probe state over this process's pools.
    pub fn probe_state(&self) -> pipeline_core::probes::ProbeState {
        pipeline_core::probes::ProbeState {
            db: self.db.clone(),
            redis: self.redis.clone(),
            schema: self.schema.clone(),
            components: self.components.clone(),
        }
    }
}
