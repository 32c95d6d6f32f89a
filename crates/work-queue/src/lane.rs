//! Lanes: fair share between projects, priorities within a project, limits per project.
//!
//! Every message belongs to a [`Lane`]: a key (the pipeline uses the project id; the empty
//! key is the default lane) and a [`Priority`]. Reserve serves the lanes that have ready
//! work in turn, weighted ([`LaneLimits::weight`]), so a lane with ten messages waits behind
//! about one turn of every other lane, not behind their backlogs; within a lane, messages
//! are served by rank: `high` before `normal` before `low`, each priority step worth
//! [`DEFAULT_PRIORITY_LEAD`] enqueues of the lane, which bounds how long a lower priority
//! can starve. [`LaneLimits`] can cap a lane's messages in flight and its starts per second,
//! for every replica at once. All of it lives in the queue's Lua scripts; the crate's
//! README ("Fair share") gives the layout and the bounds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scripts::SCRIPTS;
use crate::{QueueError, Result, WorkQueue};

/// How many enqueues of its lane one priority step is worth, unless
/// [`WorkQueue::set_priority_lead`] says otherwise: a `high` message goes ahead of the
/// `normal` messages its lane queued up to this many enqueues before it, and a `low`
/// message is overtaken by at most twice this many messages queued after it.
pub const DEFAULT_PRIORITY_LEAD: u64 = 100_000;

/// Longest lane key, in bytes.
pub const MAX_LANE_KEY: usize = 128;

/// The priority of a message within its lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served before the lane's `normal` and `low` work.
    High,
    /// The default.
    #[default]
    Normal,
    /// Served after the lane's other work, within the starvation bound.
    Low,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The word used by the API, the CLI and the database: `high`, `normal` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// The one-letter code stored in the message hash (a DLQ redrive at another priority
    /// names it so, the DLQ knowing nothing of this type).
    pub fn code(self) -> &'static str {
        match self {
            Self::High => "h",
            Self::Normal => "n",
            Self::Low => "l",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "high" => Ok(Self::High),
            "normal" => Ok(Self::Normal),
            "low" => Ok(Self::Low),
            other => Err(QueueError::InvalidArgument(format!(
                "priority must be high, normal or low, not {other:?}"
            ))),
        }
    }
}

/// Where a message waits: its lane's key and its priority there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Lane {
    key: String,
    priority: Priority,
}

impl Lane {
    /// The lane `key` (for the pipeline, a project id) at `priority`. The key is checked
    /// when the message is enqueued: at most [`MAX_LANE_KEY`] bytes, without `|` or NUL.
    pub fn new(key: impl Into<String>, priority: Priority) -> Self {
        Self {
            key: key.into(),
            priority,
        }
    }

    /// The lane's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

pub(crate) fn check_lane_key(key: &str) -> Result<()> {
    if key.len() > MAX_LANE_KEY || key.contains(['|', '\0']) {
        return Err(QueueError::InvalidArgument(format!(
            "lane key must be at most {MAX_LANE_KEY} bytes without '|' or NUL: {key:?}"
        )));
    }
    Ok(())
}

/// The share and the limits of one lane, for every replica (stored in Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    /// The lane's share against other lanes with ready work (`1..=1000`): a lane of weight
    /// 2 is served two messages for every one of a lane of weight 1.
    pub weight: u32,
    /// At most this many of the lane's messages in flight (reserved and not yet acked,
    /// retried or dead-lettered) at once.
    pub max_in_flight: Option<u32>,
    /// At most one start per this interval on average (with `burst` starts at once).
    pub start_interval: Option<Duration>,
    /// Starts allowed at once by `start_interval` (at least 1).
    pub burst: u32,
}

impl Default for LaneLimits {
    fn default() -> Self {
        Self {
            weight: 1,
            max_in_flight: None,
            start_interval: None,
            burst: 1,
        }
    }
}

impl LaneLimits {
    /// The largest weight.
    pub const MAX_WEIGHT: u32 = 1000;

    /// Whether these are the defaults (nothing to store).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_WEIGHT).contains(&self.weight) {
            return Err(QueueError::InvalidArgument(format!(
                "weight must be between 1 and {}, not {}",
                Self::MAX_WEIGHT,
                self.weight
            )));
        }
        if self.max_in_flight == Some(0) {
            return Err(QueueError::InvalidArgument(
                "max_in_flight must be at least 1 (pause the family to stop it)".into(),
            ));
        }
        if self.start_interval.is_some_and(|d| d.as_millis() == 0) {
            return Err(QueueError::InvalidArgument(
                "the start interval must be at least 1 ms".into(),
            ));
        }
        if self.burst == 0 {
            return Err(QueueError::InvalidArgument(
                "burst must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One lane's state, summed over the shards in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneDepth {
    /// The lane's key (empty: the default lane).
    pub lane: String,
    /// Ready messages.
    pub ready: u64,
    /// Messages in flight counted against a cap (only lanes with `max_in_flight` count).
    pub in_flight: u64,
    /// `serving` (on the rota), `held` (its start rate forbids a start now) or `capped`
    /// (at its cap of messages in flight); with several shards, the first that applies.
    pub state: LaneState,
}

/// Whether a lane with ready work is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneState {
    /// Taking its turns.
    Serving,
    /// Waiting for its start rate.
    Held,
    /// Waiting for one of its messages in flight to finish.
    Capped,
}

/// The most lanes [`WorkQueue::lanes`] reads per shard: a listing, not a scan of every
/// project that ever queued work.
pub const MAX_LANES_LISTED: usize = 10_000;

/// The most leases [`WorkQueue::repair_lanes`] reads per shard to recount lanes in flight.
const REPAIR_MAX_LEASES: usize = 100_000;

impl WorkQueue {
    /// Sets the share and limits of lane `key` on every shard in use (each shard enforces
    /// its part: with `n` shards, `max_in_flight` is split as `ceil(max / n)` per shard and
    /// the start interval is `n` times longer per shard). A lane on the rota takes the new
    /// limits at its next turn; a capped or held lane is placed again at once.
    ///
    /// Redis keeps no other copy: a caller that owns the limits (the pipeline keeps them in
    /// Postgres) should set them again after Redis lost its data, and when shards are added.
    ///
    /// # Errors
    /// Invalid limits or key, or Redis/pool failures.
    pub async fn set_lane_limits(&self, key: &str, limits: &LaneLimits) -> Result<()> {
        check_lane_key(key)?;
        limits.validate()?;
        let n = self.shards_in_use().await?;
        let mut con = self.conn();
        for i in 0..n {
            let s = self.shard(i);
            let shards = u32::from(n);
            let cap = limits.max_in_flight.map(|m| m.div_ceil(shards));
            let every = limits
                .start_interval
                .map(|d| crate::reserve::duration_ms(d).saturating_mul(u64::from(shards)));
            let _: i64 = SCRIPTS
                .lane_set
                .key(&s.rota)
                .key(&s.wake)
                .arg(&s.tag)
                .arg(key)
                .arg(limits.weight)
                .arg(cap.map(|c| c.to_string()).unwrap_or_default())
                .arg(every.map(|e| e.to_string()).unwrap_or_default())
                .arg(limits.burst)
                .invoke_async(&mut con)
                .await?;
        }
        Ok(())
    }

    /// The limits of lane `key` as shard 0 holds them (defaults when none are set).
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn lane_limits(&self, key: &str) -> Result<LaneLimits> {
        let n = u32::from(self.shards_in_use().await?);
        let s = self.shard(0);
        let mut con = self.conn();
        let (w, cap, every, burst): (Option<u32>, Option<u32>, Option<u64>, Option<u32>) =
            redis::cmd("HMGET")
                .arg(s.keys.lane_cfg())
                .arg(format!("{key}|w"))
                .arg(format!("{key}|cap"))
                .arg(format!("{key}|every"))
                .arg(format!("{key}|burst"))
                .query_async(&mut con)
                .await?;
        Ok(LaneLimits {
            weight: w.unwrap_or(1),
            max_in_flight: cap.map(|c| c.saturating_mul(n)),
            start_interval: every.map(|e| Duration::from_millis(e / u64::from(n.max(1)))),
            burst: burst.unwrap_or(1),
        })
    }

    /// Sets how many enqueues of its lane one priority step is worth, on every shard in
    /// use (see [`DEFAULT_PRIORITY_LEAD`]). Messages already queued keep their ranks.
    ///
    /// # Errors
    /// A lead of zero, or Redis/pool failures.
    pub async fn set_priority_lead(&self, lead: u64) -> Result<()> {
        if lead == 0 {
            return Err(QueueError::InvalidArgument(
                "the priority lead must be at least 1".into(),
            ));
        }
        let n = self.shards_in_use().await?;
        let mut con = self.conn();
        for i in 0..n {
            let _: i64 = redis::cmd("HSET")
                .arg(self.shard(i).keys.lane_cfg())
                .arg("|lead")
                .arg(lead)
                .query_async(&mut con)
                .await?;
        }
        Ok(())
    }

    /// Lanes with ready work or counted messages in flight, summed over the shards in use,
    /// most ready first (at most [`MAX_LANES_LISTED`] lanes per shard are read).
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn lanes(&self) -> Result<Vec<LaneDepth>> {
        let n = self.shards_in_use().await?;
        let mut con = self.conn();
        let mut by_lane: std::collections::BTreeMap<String, LaneDepth> = Default::default();
        for i in 0..n {
            let s = self.shard(i);
            let rows: Vec<(String, u64, u64, String)> = SCRIPTS
                .lane_list
                .key(&s.rota)
                .arg(&s.tag)
                .arg(MAX_LANES_LISTED)
                .invoke_async(&mut con)
                .await?;
            for (lane, ready, in_flight, state) in rows {
                let state = match state.as_str() {
                    "held" => LaneState::Held,
                    "capped" => LaneState::Capped,
                    _ => LaneState::Serving,
                };
                let e = by_lane.entry(lane.clone()).or_insert(LaneDepth {
                    lane,
                    ready: 0,
                    in_flight: 0,
                    state,
                });
                e.ready += ready;
                e.in_flight += in_flight;
                if e.state == LaneState::Serving {
                    e.state = state;
                }
            }
        }
        let mut lanes: Vec<LaneDepth> = by_lane.into_values().collect();
        lanes.sort_by(|a, b| b.ready.cmp(&a.ready).then_with(|| a.lane.cmp(&b.lane)));
        Ok(lanes)
    }

    /// Repairs the lanes' bookkeeping on every shard in use: recounts each lane's counted
    /// messages in flight from the leases (unless a shard holds more than 100,000 leases),
    /// and places again every lane with ready work that is not being served, held or
    /// capped, or is capped below its cap. Only state changed outside the queue's scripts
    /// (a key deleted by hand, a partial restore) needs it; the requeue daemon calls it
    /// every reconcile pass. Returns the counts fixed and the lanes placed.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn repair_lanes(&self) -> Result<(u64, u64)> {
        let n = self.shards_in_use().await?;
        let mut con = self.conn();
        let (mut fixed, mut placed) = (0, 0);
        for i in 0..n {
            let s = self.shard(i);
            let (f, p): (u64, u64) = SCRIPTS
                .repair
                .key(&s.leases)
                .key(&s.rota)
                .key(&s.wake)
                .arg(&s.tag)
                .arg(REPAIR_MAX_LEASES)
                .invoke_async(&mut con)
                .await?;
            fixed += f;
            placed += p;
        }
        if fixed + placed > 0 {
            tracing::warn!(
                family = self.family(),
                fixed,
                placed,
                "lane bookkeeping repaired (changed outside the queue's scripts)"
            );
        }
        Ok((fixed, placed))
    }

    /// Up to `count` ready message ids of lane `key` in shard `shard`, from position `offset`
    /// in serving order, and how many the lane holds there.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn lane_ready_page(
        &self,
        shard: u16,
        key: &str,
        offset: usize,
        count: usize,
    ) -> Result<(u64, Vec<String>)> {
        let s = self.shard(shard);
        let mut con = self.conn();
        let lane = s.keys.lane(key);
        let stop = offset.saturating_add(count.max(1)) - 1;
        let (total, ids): (u64, Vec<String>) = redis::pipe()
            .zcard(&lane)
            .zrange(&lane, offset as isize, stop as isize)
            .query_async(&mut con)
            .await?;
        Ok((total, ids))
    }
}
