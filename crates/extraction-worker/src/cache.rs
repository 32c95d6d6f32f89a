//! The embedding cache: one vector per (model, exact embedded text), in Postgres
//! (`embedding_cache`), so a text that many pages share is embedded once per model.
//!
//! Why Postgres and not Redis: the vectors are already Postgres rows, the cache must hold
//! hundreds of thousands of them (about 1.6 KB each), and Redis here carries the work
//! queues. Bounding a cache in Redis means an eviction policy (`maxmemory-policy`), which
//! is the server's, not the cache's: under memory pressure `allkeys-*` would evict queue
//! keys, and a server without the policy would just grow. In Postgres the bound is the
//! cache's own (`embedding.cache.max_entries`, least recently used rows deleted), a lookup
//! is one indexed query per page, and losing the table loses nothing but work.
//!
//! The key is the SHA-256 of the text the model reads (for a chunk: its title and heading
//! context, then its text; see `extract_core::Chunk::embedding_text`), so a hit is exactly
//! the vector the model would compute for that input.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// SHA-256 of an embedded text.
pub type TextKey = [u8; 32];

/// The key of `text`.
pub fn text_key(text: &str) -> TextKey {
    Sha256::digest(text.as_bytes()).into()
}

/// Rows inserted (by this process) between two evictions; an eviction is one indexed
/// query, so the bound may be overrun by at most this many rows per process.
const EVICT_EVERY: u64 = 1024;

/// Handle to the cache table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    db: PgPool,
    max_entries: u64,
    /// Rows inserted since the last eviction, shared by every clone.
    inserted: Arc<AtomicU64>,
}

impl EmbeddingCache {
    /// A cache of at most `max_entries` vectors per model in `db`; 0 turns it off (every
    /// lookup misses, nothing is stored).
    pub fn new(db: PgPool, max_entries: u64) -> Self {
        Self {
            db,
            max_entries,
            inserted: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether lookups can hit.
    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// The cached vectors of `model` among `keys`, by key, each of length `dims`. The hits
    /// count as used (their `last_used_at` and `hits` move; approximate under contention,
    /// see below).
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(
        &self,
        model: &str,
        dims: usize,
        keys: &[TextKey],
    ) -> Result<HashMap<TextKey, Vec<f32>>, sqlx::Error> {
        if !self.enabled() || keys.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let rows: Vec<(Vec<u8>, Vec<f32>)> = sqlx::query_as(
            "SELECT text_sha256, embedding FROM embedding_cache
             WHERE model = $1 AND dims = $2 AND text_sha256 = ANY($3)",
        )
        .bind(model)
        .bind(dims as i32)
        .bind(&keys)
        .fetch_all(&self.db)
        .await?;
        let found: HashMap<TextKey, Vec<f32>> = rows
            .into_iter()
            .filter_map(|(k, v)| Some((TextKey::try_from(k.as_slice()).ok()?, v)))
            .filter(|(_, v)| v.len() == dims)
            .collect();
        if !found.is_empty() {
            let mut hit: Vec<&[u8]> = found.keys().map(|k| &k[..]).collect();
            hit.sort_unstable();
            // Rows locked in key order (no deadlock between workers touching the same
            // rows); a row another worker holds right now is skipped, as its
            // `last_used_at` is being moved anyway. `hits` may undercount.
            sqlx::query(
                "UPDATE embedding_cache c SET hits = c.hits + 1, last_used_at = now()
                 FROM (SELECT text_sha256 FROM embedding_cache
                        WHERE model = $1 AND text_sha256 = ANY($2)
                        ORDER BY text_sha256 FOR UPDATE SKIP LOCKED) s
                 WHERE c.model = $1 AND c.text_sha256 = s.text_sha256",
            )
            .bind(model)
            .bind(&hit)
            .execute(&self.db)
            .await?;
        }
        Ok(found)
    }

    /// Stores new vectors of `model` (a key already present keeps its row), then evicts the
    /// least recently used rows beyond the bound when enough rows were added since the
    /// last eviction.
    ///
    /// # Errors
    /// Database errors.
    pub async fn put(
        &self,
        model: &str,
        dims: usize,
        entries: &[(TextKey, &[f32])],
    ) -> Result<(), sqlx::Error> {
        if !self.enabled() || entries.is_empty() {
            return Ok(());
        }
        let mut entries: Vec<&(TextKey, &[f32])> =
            entries.iter().filter(|(_, v)| v.len() == dims).collect();
        // Inserted in key order, so two workers inserting overlapping sets wait on each
        // other in the same order instead of deadlocking.
        entries.sort_unstable_by_key(|(k, _)| *k);
        entries.dedup_by_key(|(k, _)| *k);
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| &k[..]).collect();
        // One flat array and a slice per row: Postgres cannot unnest an array of arrays.
        let flat: Vec<f32> = entries
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        let inserted = sqlx::query(
            "INSERT INTO embedding_cache (model, text_sha256, dims, embedding)
             SELECT $1, ($2::bytea[])[i], $3::int, ($4::real[])[(i - 1) * $3 + 1 : i * $3]
             FROM generate_subscripts($2::bytea[], 1) AS i
             ORDER BY i
             ON CONFLICT (model, text_sha256) DO NOTHING",
        )
        .bind(model)
        .bind(&keys)
        .bind(dims as i32)
        .bind(&flat)
        .execute(&self.db)
        .await?
        .rows_affected();
        let since = self.inserted.fetch_add(inserted, Ordering::Relaxed) + inserted;
        if since >= EVICT_EVERY.min(self.max_entries) {
            self.inserted.store(0, Ordering::Relaxed);
            self.evict(model).await?;
        }
        Ok(())
    }

    /// Deletes the rows of `model` beyond the `max_entries` most recently used. Returns how
    /// many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn evict(&self, model: &str) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query(
            "DELETE FROM embedding_cache c
             USING (SELECT text_sha256 FROM embedding_cache WHERE model = $1
                     ORDER BY last_used_at DESC, text_sha256 OFFSET $2) old
             WHERE c.model = $1 AND c.text_sha256 = old.text_sha256",
        )
        .bind(model)
        .bind(i64::try_from(self.max_entries).unwrap_or(i64::MAX))
        .execute(&self.db)
        .await?
        .rows_affected();
        if deleted > 0 {
            metrics::counter!("pipeline_embedding_cache_evicted_total").increment(deleted);
            tracing::debug!(
                model,
                deleted,
                "embedding cache: least recently used rows evicted"
            );
        }
        Ok(deleted)
    }
}
