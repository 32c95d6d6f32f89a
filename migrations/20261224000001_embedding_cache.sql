-- Embedding cache: one vector per (model, exact embedded text), so a chunk text that
-- appears on many pages (a site's legal notice, a newsletter box, the same article under
-- several URLs, the same page in two projects) is embedded once per model.
--
-- Keyed by the SHA-256 of the text the model read (the chunk with its title and heading
-- context, as the extraction worker embeds it), never by the chunk alone: the same words
-- under another title are another input and get their own vector. Bounded: the extraction
-- worker deletes the least recently used rows of a model beyond
-- `embedding.cache.max_entries`. Losing a row costs one embedding, nothing else; nothing
-- references this table.
--
-- Idempotent: IF NOT EXISTS, COMMENT.

CREATE TABLE IF NOT EXISTS embedding_cache (
    model        text NOT NULL,
    text_sha256  bytea NOT NULL CHECK (length(text_sha256) = 32),
    dims         int NOT NULL CHECK (dims > 0),
    embedding    real[] NOT NULL CHECK (cardinality(embedding) = dims),
    hits         bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, text_sha256)
);
-- Eviction walks a model's rows from the most recently used.
CREATE INDEX IF NOT EXISTS embedding_cache_model_used_idx
    ON embedding_cache (model, last_used_at DESC);

COMMENT ON TABLE embedding_cache IS
    'Vectors by (model, SHA-256 of the embedded text), reused across chunks with identical text; bounded by embedding.cache.max_entries per model (least recently used rows deleted)';
