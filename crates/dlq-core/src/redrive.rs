//! Redrives: by id, by list of ids, in bulk at a bounded rate, and automatically under a
//! [`RedrivePolicy`]. Each is one script per call (or per batch): the item leaves the DLQ and
//! enters the work queue in the same atomic step.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dlq::{Dlq, check_id, parse_seq, taken, unexpected};
use crate::error::{DlqError, Result};
use crate::item::{DlqItem, ListedItem, MalformedItem};
use crate::lua::{Row, SCRIPTS};

/// Ids per script call in [`Dlq::redrive_many`] and unlimited [`Dlq::redrive_all`]: bounds
/// how long one call blocks Redis.
const REDRIVE_BATCH: u32 = 100;

/// A redriven item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveOutcome {
    /// The item as it was in the DLQ.
    pub item: DlqItem,
    /// `true` if it was put on the work queue; `false` if the message was already queued
    /// (re-enqueued by someone else meanwhile), so it was not enqueued twice.
    pub enqueued: bool,
}

/// The result of redriving one id of [`Dlq::redrive_many`].
#[derive(Debug, Clone, PartialEq)]
pub enum RedriveResult {
    /// Out of the DLQ and into the work queue.
    Redriven(RedriveOutcome),
    /// No such id in the DLQ.
    NotFound(String),
    /// The entry cannot be parsed; it was left in the DLQ.
    Malformed(MalformedItem),
}

/// What [`Dlq::redrive_all`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkRedrive {
    /// The redriven items, oldest first.
    pub redriven: Vec<RedriveOutcome>,
    /// Entries skipped because they cannot be parsed (left in the DLQ).
    pub malformed: Vec<MalformedItem>,
}

/// When automatic redrive happens and when it gives up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    /// An item already redriven this many times is parked instead.
    pub max_redrives: u32,
    /// Backoff after the first failure; doubles with each redrive.
    pub base: Duration,
    /// Upper bound of the backoff (before jitter).
    pub cap: Duration,
    /// Extra delay as a fraction of the backoff, in `0.0..=1.0`, spread by the item id.
    pub jitter: f64,
}

impl Default for RedrivePolicy {
    fn default() -> Self {
        Self {
            max_redrives: 5,
            base: Duration::from_secs(60),
            cap: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl RedrivePolicy {
    /// When an item becomes eligible for automatic redrive:
    /// `failed_at + min(cap, base * 2^retry_count) * (1 + jitter * frac(id))`, in ms. The Lua
    /// script computes exactly this (same IEEE operations in the same order).
    pub fn due_at_ms(&self, id: &str, failed_at_ms: i64, retry_count: u32) -> i64 {
        let base = self.base.as_millis() as f64;
        let cap = self.cap.as_millis() as f64;
        let exp = retry_count.min(62) as i32;
        let delay = cap.min(base * 2f64.powi(exp)) * (1.0 + self.jitter * jitter_fraction(id));
        failed_at_ms + delay.floor() as i64
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(DlqError::InvalidArgument(format!(
                "jitter must be in 0..=1, got {}",
                self.jitter
            )));
        }
        Ok(())
    }
}

/// A fraction in `[0, 1)` derived from the id, the same on every replica (and in Lua).
pub fn jitter_fraction(id: &str) -> f64 {
    const M: u64 = 2_147_483_647;
    let h = id.bytes().fold(0u64, |h, b| (h * 31 + u64::from(b)) % M);
    h as f64 / M as f64
}

/// What [`Dlq::redrive_due`] did with one item.
#[derive(Debug, Clone, PartialEq)]
pub struct DueAction {
    /// Item id.
    pub id: String,
    /// What happened.
    pub outcome: DueOutcome,
    /// The item, for `Redriven` and `Parked` (also `None` in the unlikely case that a
    /// redriven entry does not parse; that case is logged with its raw text).
    pub item: Option<DlqItem>,
}

/// The outcome of one item in [`Dlq::redrive_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueOutcome {
    /// Moved to the work queue (`enqueued: false`: the message was already queued).
    Redriven {
        /// Whether it was put on the work queue.
        enqueued: bool,
    },
    /// `retry_count` reached `max_redrives`: parked for a person.
    Parked,
    /// Its backoff has not elapsed: it will be considered again at `until_ms`.
    Deferred {
        /// Eligibility time, ms since the epoch.
        until_ms: i64,
    },
    /// Cannot be parsed: taken out of automatic redrive, still listed as malformed.
    Malformed,
}

impl Dlq {
    /// Redrives one item at once, whatever its retry count or parked state: out of the DLQ
    /// and into the work queue in one script. Of concurrent redrives of one id exactly one
    /// gets `Some`. A malformed entry is left in place ([`DlqError::Malformed`]). O(log N).
    pub async fn redrive(&self, id: &str) -> Result<Option<RedriveOutcome>> {
        self.redrive_as(id, None).await
    }

    /// [`redrive`](Self::redrive) at another priority within the message's lane: `priority`
    /// is the work queue's one-letter code (`h`, `n`, `l`); `None` keeps the message's own.
    ///
    /// # Errors
    /// As [`redrive`](Self::redrive); an unknown priority code is
    /// [`DlqError::InvalidArgument`].
    pub async fn redrive_as(
        &self,
        id: &str,
        priority: Option<&str>,
    ) -> Result<Option<RedriveOutcome>> {
        check_id(id)?;
        if priority.is_some_and(|p| !matches!(p, "h" | "n" | "l")) {
            return Err(DlqError::InvalidArgument(format!(
                "unknown priority code {priority:?}"
            )));
        }
        let row = self
            .by_id_any(&self.redrive_op_as(priority), &[id])
            .await?
            .pop()
            .ok_or_else(|| DlqError::Protocol("redrive: empty reply".into()))?;
        match redrive_result(row)? {
            RedriveResult::Redriven(outcome) => Ok(Some(outcome)),
            RedriveResult::NotFound(_) => Ok(None),
            RedriveResult::Malformed(m) => Err(m.into()),
        }
    }

    /// Redrives each id (at once, like [`Dlq::redrive`]), 100 ids per script call. The
    /// results are in the order of `ids`.
    pub async fn redrive_many(&self, ids: &[&str]) -> Result<Vec<RedriveResult>> {
        let mut results = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(REDRIVE_BATCH as usize) {
            for id in chunk {
                check_id(id)?;
            }
            for row in self.by_id_any(&self.redrive_op(), chunk).await? {
                results.push(redrive_result(row)?);
            }
        }
        Ok(results)
    }

    /// Redrives up to `limit` items (`None`: all) that were in the DLQ when the call began,
    /// **oldest first**, parked and permanent ones included (this is the manual "retry all").
    /// Items that fail again meanwhile come back with newer sequence numbers and are not
    /// redriven twice by one call. Works in batches, each one script; with `rate_per_sec` it
    /// sleeps between batches to stay under that rate (batches are then at most one second's
    /// worth). Dropping the future between batches loses nothing.
    ///
    /// With several shards in use and a `limit`, the `limit` oldest items by `failed_at`
    /// across the shards are redriven, oldest first, as on one shard; without a limit the
    /// shards are redriven one after the other (oldest first within each).
    pub async fn redrive_all(
        &self,
        limit: Option<u64>,
        rate_per_sec: Option<NonZeroU32>,
    ) -> Result<BulkRedrive> {
        let shards = self.shards().await?;
        if shards > 1
            && let Some(limit) = limit
        {
            return self.redrive_oldest(shards, limit, rate_per_sec).await;
        }
        let mut remaining = limit.unwrap_or(u64::MAX);
        let mut report = BulkRedrive::default();
        let started = Instant::now();
        for shard in 0..shards {
            if remaining == 0 {
                break;
            }
            self.on(shard)
                .redrive_all_shard(&mut remaining, rate_per_sec, &mut report, started)
                .await?;
        }
        self.log_bulk(&report);
        Ok(report)
    }

    /// [`Dlq::redrive_all`] with a limit over several shards: the `limit` oldest items by
    /// `failed_at` across the shards (each shard's oldest read from its time index, then
    /// merged), redriven by id, oldest first, at the same rate.
    async fn redrive_oldest(
        &self,
        shards: u16,
        limit: u64,
        rate_per_sec: Option<NonZeroU32>,
    ) -> Result<BulkRedrive> {
        let last = isize::try_from(limit.saturating_sub(1)).unwrap_or(isize::MAX);
        let mut oldest: Vec<(f64, u16, String)> = Vec::new();
        let mut conn = self.pool.get();
        for shard in 0..shards {
            let rows: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(self.keys.shard(shard).dlq_time())
                .arg(0)
                .arg(last)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            oldest.extend(rows.into_iter().map(|(id, at)| (at, shard, id)));
        }
        oldest.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        oldest.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let batch_cap = rate_per_sec.map_or(REDRIVE_BATCH, |r| r.get().min(REDRIVE_BATCH));
        let mut report = BulkRedrive::default();
        let started = Instant::now();
        for chunk in oldest.chunks(batch_cap as usize) {
            // Each id's shard is known: one script per shard of the chunk.
            for shard in 0..shards {
                let ids: Vec<&str> = chunk
                    .iter()
                    .filter(|(_, s, _)| *s == shard)
                    .map(|(_, _, id)| id.as_str())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                for row in self.on(shard).by_id(&self.redrive_op(), &ids).await? {
                    match redrive_result(row)? {
                        RedriveResult::Redriven(outcome) => report.redriven.push(outcome),
                        RedriveResult::Malformed(m) => report.malformed.push(m),
                        // Taken meanwhile (a concurrent retry or the daemon): nothing to do.
                        RedriveResult::NotFound(_) => {}
                    }
                }
            }
            keep_rate(&report, rate_per_sec, started).await;
        }
        self.log_bulk(&report);
        Ok(report)
    }

    async fn redrive_all_shard(
        &self,
        remaining: &mut u64,
        rate_per_sec: Option<NonZeroU32>,
        report: &mut BulkRedrive,
        started: Instant,
    ) -> Result<()> {
        let snapshot: Option<u64> = {
            let mut conn = self.pool.get();
            redis::cmd("GET")
                .arg(self.keys.dlq_seq())
                .query_async(&mut conn)
                .await?
        };
        let upto = snapshot.unwrap_or(0).to_string();
        let batch_cap = rate_per_sec.map_or(REDRIVE_BATCH, |r| r.get().min(REDRIVE_BATCH));
        let mut after = 0u64;
        while *remaining > 0 {
            let n = (*remaining).min(u64::from(batch_cap));
            let flat: Vec<Option<String>> = self
                .run(
                    &SCRIPTS.redrive_batch,
                    &[],
                    &[
                        &after.to_string(),
                        &upto,
                        &n.to_string(),
                        &self.opts.redrive_hold_ms.to_string(),
                    ],
                )
                .await?;
            let rows = crate::lua::parse_rows(flat)?;
            let fetched = rows.len() as u64;
            for row in rows {
                after = parse_seq(row.extra.as_deref())?;
                match redrive_result(row)? {
                    RedriveResult::Redriven(outcome) => {
                        report.redriven.push(outcome);
                        *remaining -= 1;
                    }
                    RedriveResult::Malformed(m) => report.malformed.push(m),
                    // Listed in `order` a moment ago inside the same script: cannot happen.
                    RedriveResult::NotFound(id) => {
                        return Err(DlqError::Protocol(format!("redrive_all: {id} vanished")));
                    }
                }
            }
            if fetched < n {
                break;
            }
            keep_rate(report, rate_per_sec, started).await;
        }
        Ok(())
    }

    /// Automatic redrive, for the requeue daemon: in one script, takes up to `limit` items
    /// whose recorded due time is at or before `now_ms` and for each parks it (when
    /// `retry_count >= max_redrives`), defers it (its backoff per
    /// [`RedrivePolicy::due_at_ms`] has not elapsed) or redrives it. Only transient, unparked
    /// items are considered. Concurrent callers never act on one item twice.
    /// O(limit * log N).
    ///
    /// With several shards in use, the shards are asked in turn for what is left of
    /// `limit`, starting at a shard that changes every second (so no shard is always
    /// served last); one call still acts on at most `limit` items.
    pub async fn redrive_due(
        &self,
        now_ms: i64,
        limit: usize,
        policy: &RedrivePolicy,
    ) -> Result<Vec<DueAction>> {
        if limit == 0 {
            return Err(DlqError::InvalidLimit { got: 0 });
        }
        policy.validate()?;
        let shards = self.shards().await?;
        let start =
            u16::try_from(now_ms.div_euclid(1000).rem_euclid(i64::from(shards))).unwrap_or(0);
        let mut actions = Vec::new();
        for k in 0..shards {
            if actions.len() >= limit {
                break;
            }
            let shard = (start + k) % shards;
            actions.extend(
                self.on(shard)
                    .redrive_due_shard(now_ms, limit - actions.len(), policy)
                    .await?,
            );
        }
        Ok(actions)
    }

    async fn redrive_due_shard(
        &self,
        now_ms: i64,
        limit: usize,
        policy: &RedrivePolicy,
    ) -> Result<Vec<DueAction>> {
        let args = [
            now_ms.to_string(),
            limit.to_string(),
            policy.max_redrives.to_string(),
            policy.base.as_millis().to_string(),
            policy.cap.as_millis().to_string(),
            policy.jitter.to_string(),
            self.opts.redrive_hold_ms.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let flat: Vec<Option<String>> = self.run(&SCRIPTS.redrive_due, &[], &args).await?;
        let mut actions = Vec::new();
        for row in crate::lua::parse_rows(flat)? {
            let id = row.fields.id.clone();
            let action = match row.status.as_str() {
                "enqueued" | "already_queued" => DueAction {
                    id,
                    outcome: DueOutcome::Redriven {
                        enqueued: row.status == "enqueued",
                    },
                    item: taken(row).ok(),
                },
                "parked" => DueAction {
                    id,
                    item: row.fields.decode().item().cloned(),
                    outcome: DueOutcome::Parked,
                },
                "deferred" => DueAction {
                    id,
                    outcome: DueOutcome::Deferred {
                        until_ms: parse_seq(row.extra.as_deref())? as i64,
                    },
                    item: None,
                },
                "malformed" => {
                    tracing::warn!(dlq = self.kind(), id = %id,
                        "malformed DLQ entry taken out of automatic redrive");
                    DueAction {
                        id,
                        outcome: DueOutcome::Malformed,
                        item: None,
                    }
                }
                other => return Err(unexpected("redrive_due", other)),
            };
            actions.push(action);
        }
        Ok(actions)
    }
}

impl Dlq {
    fn log_bulk(&self, report: &BulkRedrive) {
        tracing::info!(
            dlq = self.kind(),
            redriven = report.redriven.len(),
            malformed = report.malformed.len(),
            "bulk redrive finished"
        );
    }
}

/// Sleeps until `report.redriven` items since `started` are within `rate_per_sec`.
async fn keep_rate(report: &BulkRedrive, rate_per_sec: Option<NonZeroU32>, started: Instant) {
    if let Some(rate) = rate_per_sec {
        let target = Duration::from_secs_f64(report.redriven.len() as f64 / f64::from(rate.get()));
        if let Some(wait) = target.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

fn redrive_result(row: Row) -> Result<RedriveResult> {
    match row.status.as_str() {
        "missing" => Ok(RedriveResult::NotFound(row.fields.id)),
        "malformed" => Ok(match row.fields.decode() {
            ListedItem::Malformed(m) => RedriveResult::Malformed(m),
            ListedItem::Ok(item) => RedriveResult::Malformed(MalformedItem {
                id: item.id,
                raw: None,
                reason: "rejected by the script's format check".into(),
            }),
        }),
        "enqueued" | "already_queued" => {
            let enqueued = row.status == "enqueued";
            Ok(RedriveResult::Redriven(RedriveOutcome {
                item: taken(row)?,
                enqueued,
            }))
        }
        other => Err(unexpected("redrive", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_bounds() {
        let p = RedrivePolicy {
            max_redrives: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
            jitter: 0.0,
        };
        assert_eq!(p.due_at_ms("a", 0, 0), 1000);
        assert_eq!(p.due_at_ms("a", 0, 2), 4000);
        assert_eq!(p.due_at_ms("a", 0, 9), 10_000);
        assert_eq!(p.due_at_ms("a", 0, 10_000), 10_000);
        let j = RedrivePolicy { jitter: 0.5, ..p };
        for id in ["a", "b", "some-long-id-0123456789"] {
            let f = jitter_fraction(id);
            assert!((0.0..1.0).contains(&f));
            let due = j.due_at_ms(id, 0, 0);
            assert!((1000..1500).contains(&due), "{due}");
        }
        assert_ne!(jitter_fraction("a"), jitter_fraction("b"));
    }
}
