//! What the operator sees of each family at a glance: its work queue by state, its DLQ by
//! kind, whether it is paused, its work per minute, and its ready work per project
//! ([`lanes`]). The API's `GET /api/v1/queues`, `pipelinectl queues` and the console's
//! overview all read it from here, so they agree.

use serde::Serialize;
pub use work_queue::LaneState;

use crate::activity::{self, Minute};
use crate::pause::{self, Paused};
use crate::{Family, Services};

/// One family's counts.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyQueues {
    /// The family.
    pub family: Family,
    /// Messages waiting to be reserved.
    pub ready: u64,
    /// Messages reserved by a worker now (leased).
    pub in_flight: u64,
    /// Messages waiting for their retry backoff.
    pub delayed: u64,
    /// DLQ items that failed transiently (automatic redrive pending), parked excluded.
    pub dlq_transient: u64,
    /// DLQ items that failed permanently, parked excluded.
    pub dlq_permanent: u64,
    /// DLQ items parked after their last automatic redrive.
    pub dlq_parked: u64,
    /// Who paused the family and when; `None` while it runs.
    pub paused: Option<Paused>,
}

/// Every family's counts, in pipeline order.
///
/// # Errors
/// Redis failures, as text.
pub async fn snapshot(services: &Services) -> Result<Vec<FamilyQueues>, String> {
    let mut out = Vec::new();
    for family in Family::ALL {
        let depth = services
            .queue(family)
            .depth()
            .await
            .map_err(|e| e.to_string())?;
        let dlq = services
            .dlq(family)
            .stats()
            .await
            .map_err(|e| e.to_string())?;
        let paused = pause::state(&services.redis, services.queue(family).keys())
            .await
            .map_err(|e| e.to_string())?;
        out.push(FamilyQueues {
            family,
            ready: depth.ready,
            in_flight: depth.leased,
            delayed: depth.delayed,
            dlq_transient: dlq.transient,
            dlq_permanent: dlq.permanent,
            dlq_parked: dlq.parked,
            paused,
        });
    }
    Ok(out)
}

/// Most lanes [`lanes`] returns per family by default: what an answer or a page shows.
pub const MAX_LANES_SHOWN: usize = 100;

/// One project's share of a family's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectLane {
    /// The project (its lane's key); `None` for the default lane (messages of no project).
    pub project_id: Option<uuid::Uuid>,
    /// The lane's key as the queue stores it (the project id, or empty).
    pub lane: String,
    /// Ready messages.
    pub ready: u64,
    /// Messages in flight counted against the project's cap (only lanes with a cap count).
    pub in_flight: u64,
    /// Whether the lane is served now: `serving`, `held` (its start rate) or `capped` (its
    /// cap of messages in flight).
    pub state: work_queue::LaneState,
}

/// A family's lanes with work, most ready first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FamilyLanes {
    /// At most the limit asked for.
    pub lanes: Vec<ProjectLane>,
    /// Whether more lanes have work than are listed.
    pub truncated: bool,
}

impl FamilyLanes {
    /// Whether the breakdown says more than the family's totals: several lanes, or one
    /// that is not the default lane.
    pub fn worth_showing(&self) -> bool {
        self.lanes.len() > 1 || self.lanes.iter().any(|l| !l.lane.is_empty())
    }
}

/// The lanes of `family` with ready work or counted messages in flight, most ready first,
/// at most `limit` of them (summed over the shards in use).
///
/// # Errors
/// Redis failures, as text.
pub async fn lanes(
    services: &Services,
    family: Family,
    limit: usize,
) -> Result<FamilyLanes, String> {
    let all = services
        .queue(family)
        .lanes()
        .await
        .map_err(|e| e.to_string())?;
    let truncated = all.len() > limit;
    let lanes = all
        .into_iter()
        .take(limit)
        .map(|l| ProjectLane {
            project_id: uuid::Uuid::parse_str(&l.lane).ok(),
            lane: l.lane,
            ready: l.ready,
            in_flight: l.in_flight,
            state: l.state,
        })
        .collect();
    Ok(FamilyLanes { lanes, truncated })
}

/// A family's work per minute over the last `minutes` minutes, oldest first.
///
/// # Errors
/// Redis failures, as text.
pub async fn per_minute(
    services: &Services,
    family: Family,
    minutes: i64,
) -> Result<Vec<(i64, Minute)>, String> {
    activity::last_minutes(&services.redis, services.queue(family).keys(), minutes)
        .await
        .map_err(|e| e.to_string())
}

/// Sets the cluster-wide gauges of every family (`pipeline_queue_depth{family,state}`,
/// `pipeline_dlq_items{family,state}`, `pipeline_family_paused{family}`). One kind of
/// process publishes them, the requeue daemon: they describe Redis, and a copy from every
/// process would make a `sum` over processes count each queue several times.
pub fn publish(snapshot: &[FamilyQueues]) {
    for f in snapshot {
        let family = f.family.as_str();
        for (state, n) in [
            ("ready", f.ready),
            ("leased", f.in_flight),
            ("delayed", f.delayed),
        ] {
            metrics::gauge!("pipeline_queue_depth", "family" => family, "state" => state)
                .set(n as f64);
        }
        // The parts only: a total beside them would double any `sum` over the states.
        for (state, n) in [
            ("transient", f.dlq_transient),
            ("permanent", f.dlq_permanent),
            ("parked", f.dlq_parked),
        ] {
            metrics::gauge!("pipeline_dlq_items", "family" => family, "state" => state)
                .set(n as f64);
        }
        metrics::gauge!("pipeline_family_paused", "family" => family).set(if f.paused.is_some() {
            1.0
        } else {
            0.0
        });
    }
}
