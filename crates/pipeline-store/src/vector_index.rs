//! An exact in-memory index of the chunk vectors of one model, kept fresh from Postgres.
//!
//! Postgres is the system of record: the index is filled from `extraction_embeddings` when
//! it is first refreshed, then each [`VectorIndex::refresh`] reads only the vectors written
//! since the newest one it has seen (minus [`OVERLAP`], so a vector whose transaction
//! committed a little after a later one's is not missed; re-reading a vector is harmless).
//!
//! Search is exact: a dot product with every vector of the project, in contiguous `f32`
//! rows that the compiler vectorises, keeping the best `k` in a small heap. At 100,000
//! vectors of 384 dimensions that is 38 M multiply-adds per query. Vectors are stored at unit
//! length, so the dot product is the cosine.
//!
//! A chunk deleted from Postgres stays here until the process restarts; callers look the
//! hits up in Postgres ([`crate::search::chunks`]), which leaves such chunks out.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::Result;
use crate::search;

/// How far before the newest vector seen a refresh starts reading again.
pub const OVERLAP: Duration = Duration::from_secs(10);

const PAGE: i64 = 5_000;

/// The vectors of one model, by project. Shared behind an `Arc` by every request.
pub struct VectorIndex {
    model: String,
    shards: RwLock<HashMap<Uuid, Shard>>,
    /// Where the next refresh reads from. The mutex also makes concurrent refreshes take
    /// turns.
    watermark: Mutex<Watermark>,
}

/// How far the index has read `extraction_embeddings`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Watermark {
    /// Never refreshed: the first refresh reads every vector.
    #[default]
    Unloaded,
    /// Loaded, and the table held no vector of this model: the next refresh reads every
    /// vector again (there is nothing to skip, and "since now" would trust two clocks).
    Empty,
    /// Loaded up to the newest `created_at` seen.
    Newest(DateTime<Utc>),
}

#[derive(Default)]
struct Shard {
    dims: usize,
    ids: Vec<Uuid>,
    rows: Vec<f32>,
    slots: HashMap<Uuid, usize>,
}

impl Shard {
    fn upsert(&mut self, id: Uuid, v: &[f32]) {
        if self.ids.is_empty() {
            self.dims = v.len();
        }
        // A vector of another length cannot be compared with this project's others.
        if v.len() != self.dims {
            return;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        match self.slots.get(&id) {
            Some(&slot) => {
                let row = &mut self.rows[slot * self.dims..(slot + 1) * self.dims];
                row.iter_mut().zip(v).for_each(|(r, x)| *r = x * scale);
            }
            None => {
                self.slots.insert(id, self.ids.len());
                self.ids.push(id);
                self.rows.extend(v.iter().map(|x| x * scale));
            }
        }
    }
}

/// A scored candidate; ordered by score so a `BinaryHeap<Reverse<_>>` keeps the best `k`.
#[derive(PartialEq)]
struct Scored(f32, Uuid);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums: the loop vectorises without relying on float reassociation.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl VectorIndex {
    /// An empty index of `model`'s vectors; [`Self::refresh`] fills it.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            shards: RwLock::new(HashMap::new()),
            watermark: Mutex::new(Watermark::Unloaded),
        }
    }

    /// The model whose vectors this index holds.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the first load from Postgres has finished.
    pub async fn is_loaded(&self) -> bool {
        *self.watermark.lock().await != Watermark::Unloaded
    }

    /// Vectors held.
    pub async fn len(&self) -> usize {
        self.shards.read().await.values().map(|s| s.ids.len()).sum()
    }

    /// Whether the index holds no vector.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Adds or replaces one vector (what a refresh does for each row read).
    pub async fn upsert(&self, project: Uuid, id: Uuid, vector: &[f32]) {
        self.shards
            .write()
            .await
            .entry(project)
            .or_default()
            .upsert(id, vector);
    }

    /// Reads the vectors written since the last refresh (all of them the first time) and
    /// adds them. Returns how many rows were read.
    pub async fn refresh(&self, db: &sqlx::PgPool) -> Result<usize> {
        let mut watermark = self.watermark.lock().await;
        let overlap = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
        let mut newest = match *watermark {
            Watermark::Newest(w) => Some(w),
            Watermark::Unloaded | Watermark::Empty => None,
        };
        let since = newest.map(|w| w.checked_sub_signed(overlap).unwrap_or(w));
        let mut after = None;
        let mut read = 0;
        loop {
            let rows = search::vectors_since(db, &self.model, since, after, PAGE).await?;
            let full = rows.len() as i64 == PAGE;
            if let Some(last) = rows.last() {
                after = Some((last.created_at, last.extraction_id));
                newest = newest.max(Some(last.created_at));
            }
            read += rows.len();
            {
                let mut shards = self.shards.write().await;
                for r in &rows {
                    shards
                        .entry(r.project_id)
                        .or_default()
                        .upsert(r.extraction_id, &r.embedding);
                }
            }
            if !full {
                break;
            }
        }
        // An empty table still counts as loaded. Its watermark is not a made-up instant
        // (the earliest `DateTime` is outside Postgres' range, and every later refresh
        // failed with "timestamp out of range" when one was used here).
        *watermark = newest.map_or(Watermark::Empty, Watermark::Newest);
        Ok(read)
    }

    /// The `k` vectors most similar to `query` (cosine, best first), in `project` or in all
    /// projects. A query of another length than the stored vectors matches nothing.
    pub async fn search(&self, project: Option<Uuid>, query: &[f32], k: usize) -> Vec<(Uuid, f32)> {
        let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        if k == 0 || norm == 0.0 {
            return Vec::new();
        }
        let q: Vec<f32> = query.iter().map(|x| x / norm).collect();
        let shards = self.shards.read().await;
        let mut heap: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
        let selected: Vec<&Shard> = match project {
            Some(p) => shards.get(&p).into_iter().collect(),
            None => shards.values().collect(),
        };
        for shard in selected.into_iter().filter(|s| s.dims == q.len()) {
            for (row, id) in shard.rows.chunks_exact(shard.dims).zip(&shard.ids) {
                let score = dot(row, &q);
                if heap.len() < k {
                    heap.push(std::cmp::Reverse(Scored(score, *id)));
                } else if heap.peek().is_some_and(|w| score > w.0.0) {
                    heap.pop();
                    heap.push(std::cmp::Reverse(Scored(score, *id)));
                }
            }
        }
        let mut out: Vec<(Uuid, f32)> = heap.into_iter().map(|r| (r.0.1, r.0.0)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exact_top_k_by_cosine_per_project() {
        let index = VectorIndex::new("m");
        let (p, other) = (Uuid::now_v7(), Uuid::now_v7());
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        index.upsert(p, ids[0], &[1.0, 0.0, 0.0]).await;
        index.upsert(p, ids[1], &[2.0, 2.0, 0.0]).await; // unit length after storing
        index.upsert(p, ids[2], &[0.0, 0.0, 1.0]).await;
        index.upsert(other, ids[3], &[1.0, 0.0, 0.0]).await;
        let hits = index.search(Some(p), &[3.0, 0.0, 0.0], 2).await;
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].0, ids[0]);
        assert!((hits[0].1 - 1.0).abs() < 1e-6);
        assert_eq!(hits[1].0, ids[1]);
        assert!((hits[1].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        // Every project, and a replaced vector moves.
        assert_eq!(index.search(None, &[1.0, 0.0, 0.0], 10).await.len(), 4);
        index.upsert(p, ids[2], &[1.0, 0.0, 0.0]).await;
        assert_eq!(index.len().await, 4);
        let hits = index.search(Some(p), &[1.0, 0.0, 0.0], 2).await;
        assert!(hits.iter().any(|h| h.0 == ids[2]));
        // Wrong length or zero query: nothing.
        assert!(index.search(Some(p), &[1.0, 0.0], 2).await.is_empty());
        assert!(index.search(Some(p), &[0.0; 3], 2).await.is_empty());
    }

    #[test]
    fn dot_matches_the_plain_sum_for_any_length() {
        for n in [1usize, 7, 8, 9, 384, 385] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
    }
}
