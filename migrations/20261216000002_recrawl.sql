-- Recrawl: repeating an ended crawl, without extracting again the pages whose content did
-- not change.
--
-- sources.etag / last_modified: the validators of the body stored in raw_content, sent back
-- as If-None-Match / If-Modified-Since when the page is fetched again for a recrawl.
-- sources.content_sha256: the SHA-256 of the stored body (hex).
-- sources.extracted_sha256: content_sha256 as it was when the extraction worker last
-- finished the source. "Unchanged" means unchanged since the last *extraction*: a body that
-- was stored but never extracted (its extraction failed) is extracted when fetched again,
-- whatever the server says.
-- crawls.recrawl_of: the crawl a recrawl repeats.
--
-- Idempotent: IF NOT EXISTS.

ALTER TABLE sources ADD COLUMN IF NOT EXISTS etag text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS last_modified text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS content_sha256 text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS extracted_sha256 text;
ALTER TABLE crawls ADD COLUMN IF NOT EXISTS recrawl_of uuid
    REFERENCES crawls (job_id) ON DELETE SET NULL;

COMMENT ON COLUMN sources.content_sha256 IS 'SHA-256 (hex) of raw_content as fetched.';
COMMENT ON COLUMN sources.extracted_sha256 IS
    'content_sha256 when the source was last extracted: a recrawl skips extraction when a page still hashes to it.';
COMMENT ON COLUMN crawls.recrawl_of IS 'For a recrawl: the crawl it repeats.';
