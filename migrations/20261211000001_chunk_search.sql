-- Search over chunks: full-text through a generated tsvector of each chunk's text (English
-- stemming, GIN-indexed), and a (created_at, extraction_id) index through which the API's
-- in-memory vector index reads only the vectors written since its last look.
ALTER TABLE extractions ADD COLUMN IF NOT EXISTS search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', coalesce(data ->> 'text', ''))) STORED;
CREATE INDEX IF NOT EXISTS extractions_search_tsv_idx ON extractions USING gin (search_tsv);
CREATE INDEX IF NOT EXISTS extraction_embeddings_created_idx
    ON extraction_embeddings (created_at, extraction_id);
