-- Documents: every extracted page's Markdown and metadata in columns of `sources`, and each
-- chunk's heading trail ("Guide › Install › Linux") in a column of `extractions`.
--
-- The extraction worker writes the sources columns in the transaction that stores the
-- content and chunks (pipeline_store::extractions::store_analysis). Rows extracted before
-- this migration have NULL `markdown` until `pipelinectl reextract` (or any new extraction)
-- rebuilds them from `raw_content`; an extracted page always gets a non-NULL `markdown`
-- (possibly empty), so `markdown IS NULL` means "not extracted since these columns exist".
--
-- Times keep their timezone: `published_at` / `modified_at` are the instants, and
-- `published_offset_seconds` / `modified_offset_seconds` the UTC offset the page wrote them
-- with (seconds east of UTC: 3600 for +01:00, -18000 for -05:00; 0 when the page gave none
-- or gave a date alone). The page's own reading is
-- `published_at AT TIME ZONE make_interval(secs => published_offset_seconds)`.
--
-- `extractions.heading_trail` is generated from the `heading_path` every chunk's `data`
-- already holds, so chunks stored before this migration have it too, and it cannot disagree
-- with `data`. It is NULL for chunks before the page's first heading.
--
-- trace.sources gains the metadata as columns at its end (CREATE OR REPLACE VIEW allows
-- nothing else; every earlier column is unchanged).
--
-- Idempotent: ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE, constraints dropped and added
-- again, COMMENT.

ALTER TABLE sources ADD COLUMN IF NOT EXISTS markdown text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS authors text[];
ALTER TABLE sources ADD COLUMN IF NOT EXISTS byline text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS published_at timestamptz;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS published_offset_seconds integer;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS modified_at timestamptz;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS modified_offset_seconds integer;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS language text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS language_source text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS site_name text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS description text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS canonical_url text;
ALTER TABLE sources ADD COLUMN IF NOT EXISTS image_url text;

-- New columns are all NULL, so the checks cost nothing to validate here.
ALTER TABLE sources DROP CONSTRAINT IF EXISTS sources_language_source_check;
ALTER TABLE sources ADD CONSTRAINT sources_language_source_check CHECK (
    language_source IS NULL OR language_source IN ('declared', 'detected'));
ALTER TABLE sources DROP CONSTRAINT IF EXISTS sources_offsets_check;
ALTER TABLE sources ADD CONSTRAINT sources_offsets_check CHECK (
    (published_offset_seconds IS NULL OR abs(published_offset_seconds) < 86400)
    AND (modified_offset_seconds IS NULL OR abs(modified_offset_seconds) < 86400));

COMMENT ON COLUMN sources.title IS
    'The page''s title (its extracted title; kept from an earlier extraction when a new one finds none).';
COMMENT ON COLUMN sources.markdown IS
    'The main content as Markdown (headings, lists, tables, code, links and images with absolute URLs); NULL until the source is extracted (again) after the documents migration.';
COMMENT ON COLUMN sources.authors IS 'Authors'' names, in the page''s order (empty when it names none).';
COMMENT ON COLUMN sources.byline IS 'The authors as one line.';
COMMENT ON COLUMN sources.published_at IS 'When the page was first published (midnight UTC for a date alone).';
COMMENT ON COLUMN sources.published_offset_seconds IS
    'The UTC offset published_at was written with, in seconds east of UTC (0 when none was given).';
COMMENT ON COLUMN sources.modified_at IS 'When the page was last modified.';
COMMENT ON COLUMN sources.modified_offset_seconds IS
    'The UTC offset modified_at was written with, in seconds east of UTC (0 when none was given).';
COMMENT ON COLUMN sources.language IS
    'BCP 47 tag as the page declared it (en-US), or the ISO 639-1 code of the language detected in its text.';
COMMENT ON COLUMN sources.language_source IS 'declared (by the page) or detected (in its text).';
COMMENT ON COLUMN sources.site_name IS 'The site''s or publication''s name.';
COMMENT ON COLUMN sources.description IS 'The page''s description: declared, else the start of its main text.';
COMMENT ON COLUMN sources.canonical_url IS 'The page''s canonical address, absolute.';
COMMENT ON COLUMN sources.image_url IS 'The page''s main image, absolute.';

-- A heading path (a JSON array of strings) as one line. Immutable (a pure function of its
-- argument), as a generated column requires; anything but an array gives NULL rather than an
-- error, so a malformed `data` can never make an insert fail.
CREATE OR REPLACE FUNCTION pipeline_heading_trail(path jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN jsonb_typeof(path) = 'array' THEN
                   NULLIF((SELECT string_agg(h.value, ' › ' ORDER BY h.n)
                             FROM jsonb_array_elements_text(path) WITH ORDINALITY AS h(value, n)),
                          '')
               END
    $$;
COMMENT ON FUNCTION pipeline_heading_trail(jsonb) IS
    'A chunk''s heading path (JSON array) joined with " › ": "Guide › Install › Linux"; NULL when empty or not an array.';

ALTER TABLE extractions ADD COLUMN IF NOT EXISTS heading_trail text
    GENERATED ALWAYS AS (pipeline_heading_trail(data -> 'heading_path')) STORED;
COMMENT ON COLUMN extractions.heading_trail IS
    'The headings the chunk falls under, outermost first, joined with " › " (generated from data->''heading_path''; NULL before the first heading).';

------------------------------------------------------------------------------------------
-- trace.sources as in 20261210000002_trace_views.sql, with the metadata at the end.
CREATE OR REPLACE VIEW trace.sources AS
SELECT s.id                AS source_id,
       s.project_id        AS project_id,
       p.name              AS project,
       s.uri               AS uri,
       s.source_group      AS source_group,
       s.status            AS status,
       CASE WHEN s.status = 'extracted' THEN 'done'
            WHEN s.status IN ('parked', 'discarded')
                 OR (s.status = 'dead_lettered' AND s.last_error_kind = 'permanent') THEN 'failed'
            ELSE 'in_flight' END AS outcome,
       s.created_by_job_id AS created_by_job_id,
       j.type              AS created_by_job_type,
       j.created_at        AS created_by_job_at,
       ARRAY(SELECT js.job_id FROM job_sources js WHERE js.source_id = s.id ORDER BY js.job_id)
                           AS job_ids,
       s.title             AS title,
       s.http_status       AS http_status,
       s.content_type      AS content_type,
       s.fetched_at        AS fetched_at,
       s.last_error        AS last_error,
       s.last_error_kind   AS last_error_kind,
       s.created_at        AS created_at,
       s.updated_at        AS updated_at,
       (SELECT count(*) FROM job_events e WHERE e.source_id = s.id AND e.kind = 'started')
                           AS attempts,
       (SELECT count(*) FROM job_events e
         WHERE e.source_id = s.id AND e.kind IN ('failed', 'dead_lettered'))
                           AS failures,
       (SELECT count(*) FROM job_events e WHERE e.source_id = s.id AND e.kind = 'dead_lettered')
                           AS dead_letters,
       (SELECT count(*) FROM job_events e WHERE e.source_id = s.id AND e.kind = 'redriven')
                           AS redrives,
       (SELECT min(e.at) FROM job_events e WHERE e.source_id = s.id) AS first_event_at,
       (SELECT max(e.at) FROM job_events e WHERE e.source_id = s.id) AS last_event_at,
       (SELECT e.kind FROM job_events e WHERE e.source_id = s.id ORDER BY e.id DESC LIMIT 1)
                           AS last_event_kind,
       s.authors           AS authors,
       s.byline            AS byline,
       s.published_at      AS published_at,
       s.published_offset_seconds AS published_offset_seconds,
       s.modified_at       AS modified_at,
       s.modified_offset_seconds AS modified_offset_seconds,
       s.language          AS language,
       s.language_source   AS language_source,
       s.site_name         AS site_name,
       s.description       AS description,
       s.canonical_url     AS canonical_url,
       s.image_url         AS image_url,
       octet_length(s.markdown) AS markdown_bytes
  FROM sources s
  LEFT JOIN projects p ON p.id = s.project_id
  LEFT JOIN jobs j ON j.id = s.created_by_job_id;

COMMENT ON COLUMN trace.sources.authors IS 'Authors'' names, in the page''s order.';
COMMENT ON COLUMN trace.sources.byline IS 'The authors as one line.';
COMMENT ON COLUMN trace.sources.published_at IS 'When the page was first published.';
COMMENT ON COLUMN trace.sources.published_offset_seconds IS
    'The UTC offset published_at was written with, in seconds east of UTC.';
COMMENT ON COLUMN trace.sources.modified_at IS 'When the page was last modified.';
COMMENT ON COLUMN trace.sources.modified_offset_seconds IS
    'The UTC offset modified_at was written with, in seconds east of UTC.';
COMMENT ON COLUMN trace.sources.language IS 'The page''s language tag.';
COMMENT ON COLUMN trace.sources.language_source IS 'declared (by the page) or detected (in its text).';
COMMENT ON COLUMN trace.sources.site_name IS 'The site''s or publication''s name.';
COMMENT ON COLUMN trace.sources.description IS 'The page''s description.';
COMMENT ON COLUMN trace.sources.canonical_url IS 'The page''s canonical address.';
COMMENT ON COLUMN trace.sources.image_url IS 'The page''s main image.';
COMMENT ON COLUMN trace.sources.markdown_bytes IS
    'Size of the page''s Markdown in bytes (NULL: not extracted since the documents migration).';
