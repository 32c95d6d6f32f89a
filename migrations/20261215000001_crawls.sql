-- Crawl jobs: a job of type `crawl` starts from one URL and follows links within a scope.
--
-- `crawls` holds the crawl's settings (one row per crawl job). `crawl_pages` is the crawl's
-- frontier and its discovery graph: one row per normalised URL the crawl accepted, with the
-- source that fetches it, its depth and the source whose page linked to it (the edge). The
-- primary key (job_id, url) is the per-crawl de-duplication: a redelivered scrape message
-- that discovers the same links again inserts nothing. `crawl_skips` records each distinct
-- URL the crawl refused and why (scope, pattern, depth, limit, trap, nofollow), so the
-- progress counts are counts of distinct URLs, not of sightings.
--
-- Sources created by a crawl also carry their first discovery (discovered_from_source_id,
-- crawl_depth), as DESIGN asks; a source shared by several crawls keeps the first one there,
-- and each crawl's own edge stays in crawl_pages.
--
-- Idempotent: IF NOT EXISTS throughout.

CREATE TABLE IF NOT EXISTS crawls (
    job_id              uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    project_id          uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    start_url           text NOT NULL,
    scope               text NOT NULL CHECK (scope IN ('host', 'domain', 'prefix')),
    -- For scope = 'prefix': the URL prefix every page must start with.
    scope_prefix        text,
    include_patterns    text[] NOT NULL DEFAULT '{}',
    exclude_patterns    text[] NOT NULL DEFAULT '{}',
    max_depth           integer NOT NULL CHECK (max_depth >= 0),
    max_pages           integer NOT NULL CHECK (max_pages >= 1),
    follow_nofollow     boolean NOT NULL DEFAULT false,
    sitemaps            boolean NOT NULL DEFAULT false,
    -- Trap caps: distinct query strings accepted per path; path segments per URL.
    max_query_variants  integer NOT NULL CHECK (max_query_variants >= 1),
    max_path_depth      integer NOT NULL CHECK (max_path_depth >= 1),
    -- Query parameters removed when normalising a URL (utm_source, ...).
    tracking_params     text[] NOT NULL DEFAULT '{}',
    -- Pages accepted so far (the counter max_pages caps), written under the row lock.
    pages               integer NOT NULL DEFAULT 0,
    cancelled_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS crawl_pages (
    job_id           uuid NOT NULL REFERENCES crawls (job_id) ON DELETE CASCADE,
    -- The normalised URL.
    url              text NOT NULL,
    -- The URL without its query string: what the query-variant cap counts per.
    path_key         text NOT NULL,
    source_id        uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    depth            integer NOT NULL CHECK (depth >= 0),
    -- The source whose page linked here; NULL for the start URL.
    discovered_from  uuid REFERENCES sources (id) ON DELETE SET NULL,
    -- start, link, canonical, next, redirect.
    via              text NOT NULL,
    discovered_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, url)
);
CREATE INDEX IF NOT EXISTS crawl_pages_source_idx ON crawl_pages (source_id);
CREATE INDEX IF NOT EXISTS crawl_pages_path_idx ON crawl_pages (job_id, path_key);

CREATE TABLE IF NOT EXISTS crawl_skips (
    job_id           uuid NOT NULL REFERENCES crawls (job_id) ON DELETE CASCADE,
    url              text NOT NULL,
    reason           text NOT NULL
                     CHECK (reason IN ('scope', 'pattern', 'depth', 'limit', 'trap', 'nofollow')),
    discovered_from  uuid REFERENCES sources (id) ON DELETE SET NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, url)
);

ALTER TABLE sources ADD COLUMN IF NOT EXISTS discovered_from_source_id uuid
    REFERENCES sources (id) ON DELETE SET NULL;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS crawl_depth integer;

COMMENT ON TABLE crawls IS 'One row per crawl job: its settings, its page counter, its cancellation.';
COMMENT ON TABLE crawl_pages IS
    'Each normalised URL a crawl accepted: its source, depth and the source it was discovered from.';
COMMENT ON TABLE crawl_skips IS 'Each distinct URL a crawl refused, with the reason.';
COMMENT ON COLUMN sources.discovered_from_source_id IS
    'For a source created by a crawl: the source whose page linked to it first.';
COMMENT ON COLUMN sources.crawl_depth IS 'For a source created by a crawl: its depth (start URL: 0).';
