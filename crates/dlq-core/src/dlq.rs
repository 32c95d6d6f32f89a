//! The [`Dlq`] handle: push, list, stats, get, pop, discard, park, purge.
//! Redrives live in `redrive.rs`.

use serde::{Deserialize, Serialize};

use crate::FamilyKeys;
use crate::RedisPool;
use crate::error::{DlqError, Result};
use crate::item::{DlqItem, ListedItem};
use crate::lua::{Row, SCRIPTS, parse_rows};

/// The largest page [`Dlq::list`] returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Items removed per script call by [`Dlq::purge`]: bounds how long one call blocks Redis.
const PURGE_BATCH: usize = 1000;

/// Ids per script call of [`Dlq::release`].
const RELEASE_BATCH: usize = 1000;

/// Options of one DLQ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqOptions {
    /// Retention bound: when set, a push that takes the DLQ above this many items drops the
    /// oldest ones, counts them (see [`DlqStats::dropped`]) and logs them. `None` (the
    /// default) never drops anything.
    #[serde(default)]
    pub max_items: Option<u64>,
    /// How long a redriven message waits, held back in its work queue's delayed set, for
    /// [`Dlq::release`]: a caller that books each redrive (an event in Postgres) before any
    /// worker may start it sets this, so a trail never shows a redrive's consequence before
    /// the redrive. A caller that dies before releasing delays the message by this much;
    /// nothing is lost. `0` (the default): redriven messages are ready at once.
    #[serde(default)]
    pub redrive_hold_ms: u64,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushOutcome {
    /// The item's insertion sequence number (its position in newest-first order).
    pub seq: u64,
    /// Whether an earlier entry with the same id was replaced (a DLQ holds one entry per id).
    pub replaced: bool,
    /// Ids dropped by the retention bound to make room (already logged).
    pub dropped: Vec<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The entries, malformed ones included.
    pub items: Vec<ListedItem>,
    /// Pass this to get the next (older) page; `None` when this page is the last.
    pub next_cursor: Option<String>,
}

/// Counts of one DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqStats {
    /// The queue kind.
    pub kind: String,
    /// Every item, parked included.
    pub total: u64,
    /// Items not parked (`total - parked`).
    pub active: u64,
    /// Parked items: kept and listed, redriven only by a person.
    pub parked: u64,
    /// Active transient items: the ones automatic redrive will consider.
    pub transient: u64,
    /// Active permanent items (plus malformed ones taken out of automatic redrive): they
    /// wait for a person.
    pub permanent: u64,
    /// Items ever dropped by the retention bound.
    pub dropped: u64,
}

/// A handle on one family's DLQ. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Dlq {
    pub(crate) pool: RedisPool,
    pub(crate) keys: FamilyKeys,
    pub(crate) opts: DlqOptions,
}

impl std::fmt::Debug for Dlq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dlq")
            .field("keys", &self.keys)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Dlq {
    /// A handle on the DLQ of `keys.family()`.
    pub fn new(pool: RedisPool, keys: FamilyKeys, opts: DlqOptions) -> Self {
        Self {
            pool,
            keys: keys.shard(0),
            opts,
        }
    }

    /// The handle on shard `index`'s own DLQ.
    pub(crate) fn on(&self, index: u16) -> Self {
        Self {
            pool: self.pool.clone(),
            keys: self.keys.shard(index),
            opts: self.opts.clone(),
        }
    }

    /// How many shards the family has in use (the DLQ reads all of them); see
    /// [`FamilyKeys::shards_in_use`].
    ///
    /// # Errors
    /// Redis failures.
    pub async fn shards(&self) -> Result<u16> {
        let mut conn = self.pool.get();
        Ok(pipeline_redis::shards_in_use(&mut conn, &self.keys).await?)
    }

    /// The shard an id lives in first (its home among `shards`), then every other one.
    pub(crate) fn shards_for(id: &str, shards: u16) -> impl Iterator<Item = u16> {
        let home = crate::shard_of(id, shards);
        std::iter::once(home).chain((0..shards).filter(move |&s| s != home))
    }

    /// The family's keys.
    pub fn keys(&self) -> &FamilyKeys {
        &self.keys
    }

    /// The by-id op that redrives (holding the messages back when the options say so), at
    /// the priority the item's message had, or at `priority` (a one-letter code of the work
    /// queue's priorities: `h`, `n` or `l`).
    pub(crate) fn redrive_op_as(&self, priority: Option<&str>) -> String {
        let prio = priority.unwrap_or_default();
        format!("redrive:{}:{prio}", self.opts.redrive_hold_ms)
    }

    /// [`redrive_op_as`](Self::redrive_op_as) keeping each message's priority.
    pub(crate) fn redrive_op(&self) -> String {
        self.redrive_op_as(None)
    }

    /// Makes the held-back messages of redriven `ids` ready (see
    /// [`DlqOptions::redrive_hold_ms`]); an id that is not held back any more (its hold ran
    /// out and a worker took it) is left alone. Returns how many were released. Does
    /// nothing without a hold.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn release(&self, ids: &[&str]) -> Result<usize> {
        if self.opts.redrive_hold_ms == 0 || ids.is_empty() {
            return Ok(0);
        }
        let mut released = 0;
        // An id's message lives in the shard its DLQ entry was in, which is usually its home
        // shard; asking every shard in use costs one script per shard and batch.
        for shard in 0..self.shards().await? {
            let dlq = self.on(shard);
            for chunk in ids.chunks(RELEASE_BATCH) {
                let n: usize = dlq.run(&SCRIPTS.release, &[], chunk).await?;
                released += n;
            }
        }
        Ok(released)
    }

    /// The queue kind.
    pub fn kind(&self) -> &str {
        self.keys.family()
    }

    /// Runs `script` with the family's fixed keys (plus `extra_keys`) and `args` after the tag.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        extra_keys: &[String],
        args: &[&str],
    ) -> Result<T> {
        let mut conn = self.pool.get();
        let mut inv = script.prepare_invoke();
        for key in self.keys.dlq_script_keys().iter().chain(extra_keys) {
            inv.key(key);
        }
        inv.arg(self.keys.tag());
        for arg in args {
            inv.arg(*arg);
        }
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// Runs the by-id script for `op` over `ids`.
    pub(crate) async fn by_id(&self, op: &str, ids: &[&str]) -> Result<Vec<Row>> {
        let item_keys: Vec<String> = ids.iter().map(|id| self.keys.dlq_item(id)).collect();
        let mut args = Vec::with_capacity(ids.len() + 1);
        args.push(op);
        args.extend_from_slice(ids);
        let flat: Vec<Option<String>> = self.run(&SCRIPTS.by_id, &item_keys, &args).await?;
        let rows = parse_rows(flat)?;
        if rows.len() != ids.len() {
            return Err(DlqError::Protocol(format!(
                "{op}: {} rows for {} ids",
                rows.len(),
                ids.len()
            )));
        }
        Ok(rows)
    }

    /// Adds `item` (its `dlq_type` must be this DLQ's kind). An earlier entry with the same id
    /// is replaced. With a retention bound, the oldest items beyond it are dropped, counted
    /// and logged. O(log N).
    pub async fn push(&self, item: &DlqItem) -> Result<PushOutcome> {
        if item.dlq_type != self.kind() {
            return Err(DlqError::InvalidArgument(format!(
                "item of kind {:?} pushed to the {:?} DLQ",
                item.dlq_type,
                self.kind()
            )));
        }
        let enc = item.encode()?;
        let shards = self.shards().await?;
        // A retention bound applies per shard: split over the shards.
        let max_items = self.opts.max_items.map(|m| m.div_ceil(u64::from(shards)));
        let argv = enc.push_argv(max_items);
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let shard = self.on(crate::shard_of(&item.id, shards));
        let (seq, replaced, dropped): (u64, u8, Vec<String>) = shard
            .run(&SCRIPTS.push, &[shard.keys.dlq_item(&item.id)], &args)
            .await?;
        if !dropped.is_empty() {
            tracing::warn!(
                dlq = self.kind(),
                count = dropped.len(),
                max_items = self.opts.max_items,
                dropped_ids = ?dropped,
                "DLQ retention bound reached: dropped the oldest items"
            );
        }
        Ok(PushOutcome {
            seq,
            replaced: replaced == 1,
            dropped,
        })
    }

    /// Lists newest first, `limit` in `1..=1000`, starting after `cursor` (from a previous
    /// page). Entries that cannot be parsed are listed as malformed. O(log N + limit), and the
    /// page is read in one script, so it is a consistent snapshot.
    ///
    /// With several shards in use, every shard's newest items are read and merged by
    /// `failed_at`; the cursor then holds one position per shard (one script per shard,
    /// each a consistent snapshot of its shard).
    pub async fn list(&self, limit: usize, cursor: Option<&str>) -> Result<Page> {
        check_limit(limit)?;
        let shards = self.shards().await?;
        if shards > 1 {
            return self.list_merged(shards, limit, cursor).await;
        }
        let max = match cursor {
            Some(c) => format!("({}", decode_cursor(c)?),
            None => "+inf".to_owned(),
        };
        // One extra row tells whether an older page exists, so the last page has no cursor.
        let count = (limit + 1).to_string();
        let flat: Vec<Option<String>> = self.run(&SCRIPTS.list, &[], &[&max, &count]).await?;
        let mut rows = parse_rows(flat)?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            let last = rows.last().and_then(|r| r.extra.as_deref());
            Some(encode_cursor(parse_seq(last)?))
        } else {
            None
        };
        Ok(Page {
            items: rows.into_iter().map(|r| r.fields.decode()).collect(),
            next_cursor,
        })
    }

    /// [`Dlq::list`] over several shards.
    async fn list_merged(&self, shards: u16, limit: usize, cursor: Option<&str>) -> Result<Page> {
        let mut positions = crate::shards::decode(cursor, shards)?;
        let mut runs = Vec::with_capacity(positions.len());
        let mut more = Vec::with_capacity(positions.len());
        for (shard, pos) in (0..shards).zip(&positions) {
            let Some(max) = pos.max_score() else {
                runs.push(std::collections::VecDeque::new());
                more.push(false);
                continue;
            };
            let count = (limit + 1).to_string();
            let flat: Vec<Option<String>> = self
                .on(shard)
                .run(&SCRIPTS.list, &[], &[&max, &count])
                .await?;
            let mut rows = parse_rows(flat)?;
            more.push(rows.len() > limit);
            rows.truncate(limit);
            let mut run = std::collections::VecDeque::with_capacity(rows.len());
            for row in rows {
                run.push_back((parse_seq(row.extra.as_deref())?, row.fields.decode()));
            }
            runs.push(run);
        }
        let items = crate::shards::merge(&mut runs, &mut positions, limit);
        for ((pos, run), more) in positions.iter_mut().zip(&runs).zip(more) {
            if run.is_empty() && !more {
                *pos = crate::shards::Pos::End;
            }
        }
        let next_cursor = positions
            .iter()
            .any(|p| *p != crate::shards::Pos::End)
            .then(|| crate::shards::encode(&positions));
        Ok(Page { items, next_cursor })
    }

    /// Counts over every shard in use, each shard read atomically. O(shards).
    pub async fn stats(&self) -> Result<DlqStats> {
        let mut total = DlqStats {
            kind: self.kind().to_owned(),
            total: 0,
            active: 0,
            parked: 0,
            transient: 0,
            permanent: 0,
            dropped: 0,
        };
        for shard in 0..self.shards().await? {
            let s = self.on(shard).stats_of_shard().await?;
            total.total += s.total;
            total.active += s.active;
            total.parked += s.parked;
            total.transient += s.transient;
            total.permanent += s.permanent;
            total.dropped += s.dropped;
        }
        Ok(total)
    }

    async fn stats_of_shard(&self) -> Result<DlqStats> {
        let mut conn = self.pool.get();
        let (total, parked, transient, dropped): (u64, u64, u64, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("ZCARD")
            .arg(self.keys.dlq_order())
            .cmd("ZCARD")
            .arg(self.keys.dlq_parked())
            .cmd("ZCARD")
            .arg(self.keys.dlq_due())
            .cmd("GET")
            .arg(self.keys.dlq_dropped())
            .query_async(&mut conn)
            .await?;
        let active = total.saturating_sub(parked);
        Ok(DlqStats {
            kind: self.kind().to_owned(),
            total,
            active,
            parked,
            transient,
            permanent: active.saturating_sub(transient),
            dropped: dropped.unwrap_or(0),
        })
    }

    /// The item with this id, without removing it. A malformed entry is an
    /// [`DlqError::Malformed`] error. O(1).
    pub async fn get(&self, id: &str) -> Result<Option<DlqItem>> {
        Ok(match self.get_listed(id).await? {
            Some(listed) => Some(listed.into_result()?),
            None => None,
        })
    }

    /// Like [`Dlq::get`], but a malformed entry is returned as such.
    pub async fn get_listed(&self, id: &str) -> Result<Option<ListedItem>> {
        let row = self.one("get", id).await?;
        Ok(match row.status.as_str() {
            "found" => Some(row.fields.decode()),
            _ => None,
        })
    }

    /// Removes and returns the item. Of concurrent pops of one id exactly one gets it. A
    /// malformed entry is left in place and reported as [`DlqError::Malformed`] (use
    /// [`Dlq::discard`] to remove it). O(log N).
    pub async fn pop(&self, id: &str) -> Result<Option<DlqItem>> {
        let row = self.one("pop", id).await?;
        match row.status.as_str() {
            "missing" => Ok(None),
            "malformed" => Err(row.fields.decode().into_result().err().unwrap_or_else(|| {
                DlqError::Protocol("entry reported malformed but parses".into())
            })),
            "taken" => taken(row).map(Some),
            other => Err(unexpected("pop", other)),
        }
    }

    /// Removes the entry whatever its state (malformed ones included) and returns what was
    /// stored. O(log N).
    pub async fn discard(&self, id: &str) -> Result<Option<ListedItem>> {
        let row = self.one("discard", id).await?;
        match row.status.as_str() {
            "missing" => Ok(None),
            "taken" => {
                let listed = row.fields.decode();
                tracing::info!(dlq = self.kind(), id, "DLQ item discarded");
                Ok(Some(listed))
            }
            other => Err(unexpected("discard", other)),
        }
    }

    /// Parks the item: it stays listed and counted, and automatic redrive skips it. Returns
    /// the item (`None` if absent); parking a parked item changes nothing. O(log N).
    pub async fn park(&self, id: &str) -> Result<Option<ListedItem>> {
        let row = self.one("park", id).await?;
        match row.status.as_str() {
            "missing" => Ok(None),
            "parked" | "already_parked" => Ok(Some(row.fields.decode())),
            other => Err(unexpected("park", other)),
        }
    }

    /// Removes every item whose `failed_at` is more than `older_than` before now (Redis
    /// clock), parked items included, and returns how many. Works in batches of 1000, one
    /// script each, against a cutoff fixed by the first. O(log N) per removed item.
    pub async fn purge(&self, older_than: chrono::Duration) -> Result<u64> {
        let age_ms = older_than.num_milliseconds();
        if age_ms < 0 {
            return Err(DlqError::InvalidArgument(format!(
                "purge age must not be negative, got {older_than}"
            )));
        }
        let mut total = 0;
        for shard in 0..self.shards().await? {
            total += self.on(shard).purge_shard(age_ms).await?;
        }
        if total > 0 {
            tracing::info!(dlq = self.kind(), removed = total, age_ms, "DLQ purged");
        }
        Ok(total)
    }

    async fn purge_shard(&self, age_ms: i64) -> Result<u64> {
        let batch = PURGE_BATCH.to_string();
        let (mut mode, mut value) = ("age", age_ms.to_string());
        let mut total = 0u64;
        loop {
            let (removed, cutoff): (u64, String) = self
                .run(&SCRIPTS.purge, &[], &[mode, &value, &batch])
                .await?;
            total += removed;
            if removed < PURGE_BATCH as u64 {
                break;
            }
            (mode, value) = ("cutoff", cutoff);
        }
        Ok(total)
    }

    async fn one(&self, op: &str, id: &str) -> Result<Row> {
        check_id(id)?;
        self.by_id_any(op, &[id])
            .await?
            .pop()
            .ok_or_else(|| DlqError::Protocol(format!("{op}: empty reply")))
    }

    /// Runs the by-id script for `op` over `ids` in every shard in use: each id first in its
    /// home shard, then (while it is `missing`) in the others, since a resharding can leave
    /// an item in a shard that is not its home. Rows come in the order of `ids`.
    pub(crate) async fn by_id_any(&self, op: &str, ids: &[&str]) -> Result<Vec<Row>> {
        let shards = self.shards().await?;
        if shards == 1 {
            return self.by_id(op, ids).await;
        }
        let mut rows: Vec<Option<Row>> = (0..ids.len()).map(|_| None).collect();
        let tries: Vec<Vec<u16>> = ids
            .iter()
            .map(|id| Self::shards_for(id, shards).collect::<Vec<_>>())
            .collect();
        // Round k asks every id that is still missing in its k-th shard; one script per
        // shard per round.
        for round in 0..usize::from(shards) {
            for shard in 0..shards {
                let wanted: Vec<usize> = (0..ids.len())
                    .filter(|&i| {
                        tries[i].get(round) == Some(&shard)
                            && rows[i].as_ref().is_none_or(|r| r.status == "missing")
                    })
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let these: Vec<&str> = wanted.iter().map(|&i| ids[i]).collect();
                for (&i, row) in wanted.iter().zip(self.on(shard).by_id(op, &these).await?) {
                    rows[i] = Some(row);
                }
            }
        }
        rows.into_iter()
            .map(|r| r.ok_or_else(|| DlqError::Protocol(format!("{op}: an id got no reply"))))
            .collect()
    }
}

/// Turns a row whose entry has already been taken out of the DLQ into the item. If Lua's
/// check passed but the schema check does not, the entry is gone from the DLQ, so its raw
/// text goes to the error log before the error is returned.
pub(crate) fn taken(row: Row) -> Result<DlqItem> {
    match row.fields.decode() {
        ListedItem::Ok(item) => Ok(item),
        ListedItem::Malformed(m) => {
            tracing::error!(id = %m.id, raw = ?m.raw, reason = %m.reason,
                "DLQ entry was taken out of the DLQ but does not parse");
            Err(m.into())
        }
    }
}

pub(crate) fn unexpected(op: &str, status: &str) -> DlqError {
    DlqError::Protocol(format!("{op}: unexpected status {status:?}"))
}

pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(DlqError::InvalidArgument("item id is empty".into()));
    }
    Ok(())
}

/// `Ok` for limits in `1..=1000`, else [`DlqError::InvalidLimit`].
pub fn check_limit(limit: usize) -> Result<()> {
    if (1..=MAX_LIST_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(DlqError::InvalidLimit { got: limit })
    }
}

/// Cursors wrap the last seq seen; the `c` prefix and hex keep them visibly opaque.
pub(crate) fn encode_cursor(seq: u64) -> String {
    format!("c{seq:x}")
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<u64> {
    cursor
        .strip_prefix('c')
        .filter(|hex| !hex.is_empty() && hex.len() <= 16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| DlqError::InvalidCursor(cursor.to_owned()))
}

pub(crate) fn parse_seq(s: Option<&str>) -> Result<u64> {
    s.and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| DlqError::Protocol(format!("bad sequence number {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for seq in [0, 1, 255, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(seq)).unwrap(), seq);
        }
        for bad in ["", "c", "x10", "c-1", "czz", "c11111111111111111"] {
            assert!(
                matches!(decode_cursor(bad), Err(DlqError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert!(check_limit(1).is_ok());
        assert!(check_limit(1000).is_ok());
        assert!(matches!(
            check_limit(0),
            Err(DlqError::InvalidLimit { got: 0 })
        ));
        assert!(matches!(
            check_limit(1001),
            Err(DlqError::InvalidLimit { got: 1001 })
        ));
    }
}
