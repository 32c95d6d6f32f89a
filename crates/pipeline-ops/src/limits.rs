//! A project's share and limits per queue family, as the API, the CLI and the requeue
//! daemon manage them: input parsed once into checked values, written to Postgres
//! (`project_queue_limits`, the truth), then copied into Redis, where the queue's scripts
//! apply them to the project's lane (`work_queue::LaneLimits`; the lane's key is the
//! project id). The work queue's README ("Fair share") says how the scripts use them.
//!
//! Redis keeps no other copy of the limits, so [`sync_all`] writes every row again; the
//! requeue daemon calls it at start and on every pass of its reconciler, which repairs
//! Redis after it lost its data and after shards were added. A write whose Redis half
//! failed keeps its row, and the next pass applies it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline_store::queue_limits::{self as store, LimitValues, QueueLimits};
use serde::Serialize;
use uuid::Uuid;
use work_queue::LaneLimits;

use crate::{Family, Services};

/// Largest weight.
pub const MAX_WEIGHT: u32 = LaneLimits::MAX_WEIGHT;
/// Largest cap of messages in flight.
pub const MAX_IN_FLIGHT: u32 = 1_000_000;
/// Largest start rate per second (one start per millisecond).
pub const MAX_PER_SECOND: f64 = 1000.0;
/// Smallest start rate per second: one start a day (a slower rate would be an interval
/// no clock the queue keeps can hold; pausing the family stops it instead).
pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Largest burst.
pub const MAX_BURST: u32 = 10_000;

/// What a person asks for: every field optional, an absent one takes its default (weight
/// 1, no cap, no rate, burst 1). `per_second` and `per_minute` are two ways to give one
/// rate; at most one may be given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitsInput {
    /// The project's share against other projects with ready work, 1..=1000.
    pub weight: Option<u32>,
    /// At most this many of its messages in flight, 1..=1,000,000.
    pub max_in_flight: Option<u32>,
    /// At most this many starts per second, in (0, 1000].
    pub per_second: Option<f64>,
    /// At most this many starts per minute, in (0, 60,000].
    pub per_minute: Option<f64>,
    /// Starts allowed at once by the rate, 1..=10,000.
    pub burst: Option<u32>,
}

/// Input that cannot make limits; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidLimits {
    /// The field at fault (`family`, `weight`, `max_in_flight`, `per_second`, `per_minute`,
    /// `burst`).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidLimits {
    InvalidLimits {
        field,
        reason: reason.into(),
    }
}

/// Checked limits of one project in one family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// The project's share against other projects with ready work (1..=1000).
    pub weight: u32,
    /// At most this many of its messages in flight; `None`: no cap.
    pub max_in_flight: Option<u32>,
    /// At most this many starts per second on average; `None`: no rate.
    pub per_second: Option<f64>,
    /// Starts allowed at once by the rate.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            weight: 1,
            max_in_flight: None,
            per_second: None,
            burst: 1,
        }
    }
}

impl Limits {
    /// Checks `input`: every bound above, and at most one of `per_second` and `per_minute`
    /// (which becomes `per_minute / 60` per second).
    pub fn parse(input: &LimitsInput) -> Result<Self, InvalidLimits> {
        let weight = input.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(invalid(
                "weight",
                format!("must be between 1 and {MAX_WEIGHT}, not {weight}"),
            ));
        }
        if let Some(m) = input.max_in_flight
            && !(1..=MAX_IN_FLIGHT).contains(&m)
        {
            return Err(invalid(
                "max_in_flight",
                format!(
                    "must be between 1 and {MAX_IN_FLIGHT}, not {m} (pause the family to stop its work)"
                ),
            ));
        }
        let per_second = match (input.per_second, input.per_minute) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "per_minute",
                    "give per_second or per_minute, not both",
                ));
            }
            (Some(s), None) => Some(check_rate("per_second", s, MIN_PER_SECOND, MAX_PER_SECOND)?),
            (None, Some(m)) => Some(
                check_rate(
                    "per_minute",
                    m,
                    MIN_PER_SECOND * 60.0,
                    MAX_PER_SECOND * 60.0,
                )? / 60.0,
            ),
            (None, None) => None,
        };
        let burst = input.burst.unwrap_or(1);
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(invalid(
                "burst",
                format!("must be between 1 and {MAX_BURST}, not {burst}"),
            ));
        }
        Ok(Self {
            weight,
            max_in_flight: input.max_in_flight,
            per_second,
            burst,
        })
    }

    /// Whether these are the defaults (the same as no row).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// What the queue's scripts apply: the rate as the interval between starts.
    pub fn lane_limits(&self) -> LaneLimits {
        LaneLimits {
            weight: self.weight,
            max_in_flight: self.max_in_flight,
            start_interval: self.per_second.map(|r| Duration::from_secs_f64(1.0 / r)),
            burst: self.burst,
        }
    }

    fn values(&self) -> LimitValues {
        // The bounds checked in `parse` fit an i32.
        LimitValues {
            weight: self.weight as i32,
            max_in_flight: self.max_in_flight.map(|m| m as i32),
            per_second: self.per_second,
            burst: self.burst as i32,
        }
    }

    /// The limits a stored row holds (a row outside the bounds, written by hand, is read
    /// with its values clamped into them).
    pub fn of_row(row: &QueueLimits) -> Self {
        Self {
            weight: row.weight.clamp(1, MAX_WEIGHT as i32) as u32,
            max_in_flight: row
                .max_in_flight
                .map(|m| m.clamp(1, MAX_IN_FLIGHT as i32) as u32),
            per_second: row
                .per_second
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| r.clamp(MIN_PER_SECOND, MAX_PER_SECOND)),
            burst: row.burst.clamp(1, MAX_BURST as i32) as u32,
        }
    }
}

fn check_rate(field: &'static str, rate: f64, min: f64, max: f64) -> Result<f64, InvalidLimits> {
    if !rate.is_finite() || rate < min || rate > max {
        return Err(invalid(
            field,
            format!(
                "must be at least {min} (one start a day) and at most {max}, not {rate} \
                 (pause the family to stop its starts)"
            ),
        ));
    }
    Ok(rate)
}

/// Parses a family that can carry limits: any family with a work queue (all of them).
pub fn parse_family(word: &str) -> Result<Family, InvalidLimits> {
    word.parse::<Family>()
        .map_err(|e| invalid("family", e.to_string()))
}

/// One project's limits in one family, stored or default.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyLimits {
    /// The family.
    pub family: Family,
    /// The limits in force.
    pub limits: Limits,
    /// Whether a row holds them (`false`: the defaults).
    pub stored: bool,
    /// When the row last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

impl FamilyLimits {
    fn of_row(family: Family, row: &QueueLimits) -> Self {
        Self {
            family,
            limits: Limits::of_row(row),
            stored: true,
            updated_at: Some(row.updated_at),
        }
    }

    fn default_for(family: Family) -> Self {
        Self {
            family,
            limits: Limits::default(),
            stored: false,
            updated_at: None,
        }
    }
}

/// Why a change of limits failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// The input is not acceptable.
    #[error(transparent)]
    Invalid(#[from] InvalidLimits),
    /// Postgres failed (or the project does not exist: `StoreError::NotFound`).
    #[error(transparent)]
    Store(#[from] pipeline_store::StoreError),
    /// The row is written but Redis could not take it; the requeue daemon's next pass
    /// applies it.
    #[error("stored, but not applied to the queue yet (the next sync applies it): {0}")]
    Queue(#[from] work_queue::QueueError),
}

/// The limits of project `project_id` in every family, in pipeline order (defaults where
/// no row is stored).
pub async fn show(
    services: &Services,
    project_id: Uuid,
) -> Result<Vec<FamilyLimits>, pipeline_store::StoreError> {
    let rows = store::for_project(&services.db, project_id).await?;
    Ok(Family::ALL
        .into_iter()
        .map(|family| {
            rows.iter()
                .find(|r| r.family == family.as_str())
                .map(|r| FamilyLimits::of_row(family, r))
                .unwrap_or_else(|| FamilyLimits::default_for(family))
        })
        .collect())
}

/// Sets the limits of project `project_id` in `family` to `input` (absent fields take their
/// defaults): checked, stored, then applied to the project's lane on every shard in use.
///
/// # Errors
/// [`LimitsError::Invalid`] naming the field; `Store(NotFound)` for an unknown project;
/// [`LimitsError::Queue`] when Redis failed after the row was stored.
pub async fn set(
    services: &Services,
    project_id: Uuid,
    family: Family,
    input: &LimitsInput,
) -> Result<FamilyLimits, LimitsError> {
    let limits = Limits::parse(input)?;
    let row = store::upsert(&services.db, project_id, family.as_str(), &limits.values()).await?;
    apply(services, project_id, family, &limits).await?;
    tracing::info!(project_id = %project_id, family = family.as_str(), ?limits, "queue limits set");
    Ok(FamilyLimits::of_row(family, &row))
}

/// Removes the limits of project `project_id` in `family` (back to the defaults), in
/// Postgres and at once in Redis. Returns whether a row was removed; Redis is reset either
/// way, so a clear also repairs a lane whose limits outlived their row.
///
/// # Errors
/// Postgres failures; [`LimitsError::Queue`] when Redis failed after the row was removed
/// (the lane keeps its old limits until Redis is reset: a later clear, or a restart of
/// Redis without persistence).
pub async fn clear(
    services: &Services,
    project_id: Uuid,
    family: Family,
) -> Result<bool, LimitsError> {
    let removed = store::delete(&services.db, project_id, family.as_str()).await?;
    apply(services, project_id, family, &Limits::default()).await?;
    tracing::info!(project_id = %project_id, family = family.as_str(), removed = removed.is_some(), "queue limits cleared");
    Ok(removed.is_some())
}

async fn apply(
    services: &Services,
    project_id: Uuid,
    family: Family,
    limits: &Limits,
) -> Result<(), work_queue::QueueError> {
    services
        .queue(family)
        .set_lane_limits(&project_id.to_string(), &limits.lane_limits())
        .await
}

/// What [`sync_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Rows written to Redis.
    pub applied: u64,
    /// Rows naming no family (written by hand), skipped.
    pub skipped: u64,
}

/// Writes every stored row to Redis, on every shard in use: what repairs the lanes' limits
/// after Redis lost its data or shards were added. Setting limits a lane already has
/// changes nothing (a lane waiting at its cap or rate is placed again under the same
/// limits).
///
/// # Errors
/// Postgres or Redis failures (rows before the failure are applied).
pub async fn sync_all(services: &Services) -> anyhow::Result<SyncReport> {
    let rows = store::all(&services.db).await?;
    let mut report = SyncReport::default();
    for row in &rows {
        let Ok(family) = row.family.parse::<Family>() else {
            tracing::warn!(project_id = %row.project_id, family = row.family, "queue limits for an unknown family: skipped");
            report.skipped += 1;
            continue;
        };
        apply(services, row.project_id, family, &Limits::of_row(row)).await?;
        report.applied += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LimitsInput {
        LimitsInput::default()
    }

    #[test]
    fn absent_fields_are_the_defaults() {
        let l = Limits::parse(&input()).unwrap();
        assert!(l.is_default());
        assert!(l.lane_limits().is_default());
    }

    #[test]
    fn a_rate_per_minute_is_a_rate_per_second() {
        let l = Limits::parse(&LimitsInput {
            per_minute: Some(60.0),
            burst: Some(3),
            ..input()
        })
        .unwrap();
        assert_eq!(l.per_second, Some(1.0));
        let lane = l.lane_limits();
        assert_eq!(lane.start_interval, Some(Duration::from_secs(1)));
        assert_eq!(lane.burst, 3);
        let fast = Limits::parse(&LimitsInput {
            per_second: Some(1000.0),
            ..input()
        })
        .unwrap();
        assert_eq!(
            fast.lane_limits().start_interval,
            Some(Duration::from_millis(1))
        );
        let slowest = Limits::parse(&LimitsInput {
            per_second: Some(MIN_PER_SECOND),
            ..input()
        })
        .unwrap();
        let day = slowest.lane_limits().start_interval.unwrap();
        assert!((day.as_secs_f64() - 86_400.0).abs() < 1e-6, "{day:?}");
    }

    #[test]
    fn values_out_of_bounds_name_their_field() {
        let cases = [
            (
                LimitsInput {
                    weight: Some(0),
                    ..input()
                },
                "weight",
            ),
            (
                LimitsInput {
                    weight: Some(1001),
                    ..input()
                },
                "weight",
            ),
            (
                LimitsInput {
                    max_in_flight: Some(0),
                    ..input()
                },
                "max_in_flight",
            ),
            (
                LimitsInput {
                    per_second: Some(0.0),
                    ..input()
                },
                "per_second",
            ),
            (
                LimitsInput {
                    per_second: Some(1000.5),
                    ..input()
                },
                "per_second",
            ),
            // Found by the API's fuzzing: 1 / rate overflowed the interval (a 500).
            (
                LimitsInput {
                    per_second: Some(3.040_354_134_468_851_5e-168),
                    ..input()
                },
                "per_second",
            ),
            (
                LimitsInput {
                    per_minute: Some(0.0004),
                    ..input()
                },
                "per_minute",
            ),
            (
                LimitsInput {
                    per_second: Some(f64::NAN),
                    ..input()
                },
                "per_second",
            ),
            (
                LimitsInput {
                    per_minute: Some(-1.0),
                    ..input()
                },
                "per_minute",
            ),
            (
                LimitsInput {
                    per_second: Some(1.0),
                    per_minute: Some(60.0),
                    ..input()
                },
                "per_minute",
            ),
            (
                LimitsInput {
                    burst: Some(0),
                    ..input()
                },
                "burst",
            ),
        ];
        for (i, field) in cases {
            let err = Limits::parse(&i).unwrap_err();
            assert_eq!(err.field, field, "{i:?}: {err}");
        }
        assert_eq!(parse_family("scrap").unwrap_err().field, "family");
        assert_eq!(parse_family("facts").unwrap(), Family::Facts);
    }
}
