-- The schema stage (queue family `facts`): a project's extraction schema, versioned; the
-- values each page gave for it, each with its quote; and the views that consolidate them
-- into records (schema `knowledge`, documented in docs/facts.md like the trace views).
--
-- A source of a project with a schema goes `scraped` -> `facts_pending` (extracted, waiting
-- in the facts queue) -> `extracted` (done). A project without a schema never uses the new
-- status. Jobs may cap the model tokens their pages spend (the `llm` backend).
--
-- Idempotent: IF NOT EXISTS, CREATE OR REPLACE, constraints dropped and added again.

ALTER TABLE sources DROP CONSTRAINT IF EXISTS sources_status_check;
ALTER TABLE sources ADD CONSTRAINT sources_status_check CHECK (status IN
    ('queued', 'retrying', 'scraped', 'facts_pending', 'extracted', 'dead_lettered', 'parked',
     'discarded'))
    NOT VALID;
ALTER TABLE sources VALIDATE CONSTRAINT sources_status_check;
COMMENT ON COLUMN sources.status IS
    'queued -> scraped -> [facts_pending, for a project with a schema ->] extracted (done); '
    'retrying while a transient failure waits; dead_lettered while in a DLQ; parked once '
    'automatic redrive gave up; discarded by a person';

-- Which stage the last failure happened in (a family: scrape, extraction, facts), so a
-- redrive or the reconciler puts a failed source back in front of the stage that failed.
ALTER TABLE sources ADD COLUMN IF NOT EXISTS last_error_stage text;
COMMENT ON COLUMN sources.last_error_stage IS
    'The family (scrape, extraction, facts) whose stage failed last; NULL before any failure';

------------------------------------------------------------------------------------------
-- Schemas: every version a project had. `projects.schema_version` names the current one
-- (NULL: no schema, pages skip the stage).
CREATE TABLE IF NOT EXISTS project_schemas (
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version > 0),
    name        text NOT NULL,
    backend     text NOT NULL CHECK (backend IN ('markup', 'llm')),
    schema      jsonb NOT NULL,
    source_text text NOT NULL,
    template    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, version)
);
COMMENT ON TABLE project_schemas IS
    'Every version of every project''s extraction schema; a change adds a version, never edits one';
COMMENT ON COLUMN project_schemas.schema IS 'The validated schema as canonical JSON';
COMMENT ON COLUMN project_schemas.source_text IS 'The schema as the user wrote it (YAML or JSON)';
COMMENT ON COLUMN project_schemas.template IS 'The shipped template it was made from, if any';

ALTER TABLE projects ADD COLUMN IF NOT EXISTS schema_version integer;
COMMENT ON COLUMN projects.schema_version IS
    'The current version in project_schemas; NULL when the project has no schema';

------------------------------------------------------------------------------------------
-- Model tokens: a job may cap what its pages spend; every request adds its usage.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS model_token_cap bigint
    CHECK (model_token_cap IS NULL OR model_token_cap > 0);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS model_tokens_used bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN jobs.model_token_cap IS
    'Most model tokens (prompt + completion) the job''s pages may spend; NULL: no cap';
COMMENT ON COLUMN jobs.model_tokens_used IS 'Model tokens the job''s pages spent so far';

------------------------------------------------------------------------------------------
-- One row per source the stage finished: what it did the last time.
CREATE TABLE IF NOT EXISTS fact_runs (
    source_id         uuid PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    project_id        uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    job_id            uuid REFERENCES jobs (id) ON DELETE SET NULL,
    schema_version    integer NOT NULL,
    backend           text NOT NULL,
    outcome           text NOT NULL CHECK (outcome IN ('complete', 'capped')),
    records           integer NOT NULL,
    grounded          integer NOT NULL,
    ungrounded        integer NOT NULL,
    dropped           integer NOT NULL,
    requests          integer NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    finished_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fact_runs_job_idx ON fact_runs (job_id);
COMMENT ON COLUMN fact_runs.outcome IS
    'complete, or capped: the job''s model token cap was reached before every chunk was asked';

-- Every value a page gave. A run replaces its source's rows in one transaction, so a
-- redelivered message leaves no duplicates.
CREATE TABLE IF NOT EXISTS facts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id     uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    source_id      uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    job_id         uuid REFERENCES jobs (id) ON DELETE SET NULL,
    schema_version integer NOT NULL,
    entity         text NOT NULL,
    entity_key     text,
    record_key     text GENERATED ALWAYS AS
                       (COALESCE(entity_key, 'source:' || source_id::text)) STORED,
    field          text NOT NULL,
    value          jsonb NOT NULL,
    list_item      boolean NOT NULL,
    quote          text NOT NULL,
    origin         text NOT NULL,
    chunk_index    integer,
    confidence     real,
    grounded       boolean NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS facts_source_idx ON facts (source_id);
CREATE INDEX IF NOT EXISTS facts_record_idx ON facts (project_id, entity, record_key);
CREATE INDEX IF NOT EXISTS facts_field_value_idx ON facts (project_id, field, value) WHERE grounded;
COMMENT ON COLUMN facts.entity IS
    'The schema''s name for the page''s own record, else the entity list''s name';
COMMENT ON COLUMN facts.entity_key IS
    'The record''s key-field values, normalised and joined by " | "; NULL: the record is its page''s';
COMMENT ON COLUMN facts.grounded IS
    'Whether the quote occurs in the page (whitespace-normalised); ungrounded values are never facts';

------------------------------------------------------------------------------------------
-- Job progress counts `facts_pending` like every other status (in flight).
CREATE OR REPLACE FUNCTION pipeline_refresh_job_progress(p_job uuid) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_invalid   bigint;
    v_counts    jsonb := '{"queued": 0, "retrying": 0, "scraped": 0, "facts_pending": 0,
                           "extracted": 0, "dead_lettered": 0, "parked": 0, "discarded": 0}';
    v_total     bigint := 0;
    v_terminal  bigint := 0;
    v_extracted bigint := 0;
    v_untouched bigint := 0;
    v_status    text;
    r           record;
BEGIN
    SELECT COALESCE(jsonb_array_length(payload -> 'invalid_urls'), 0)::bigint
      INTO v_invalid
      FROM jobs WHERE id = p_job FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    FOR r IN
        SELECT s.status,
               COALESCE(s.status = 'dead_lettered' AND s.last_error_kind = 'permanent', false)
                   AS permanent,
               count(*)::bigint AS n
          FROM job_sources js JOIN sources s ON s.id = js.source_id
         WHERE js.job_id = p_job
         GROUP BY 1, 2
    LOOP
        v_counts := jsonb_set(v_counts, ARRAY[r.status],
                              to_jsonb(COALESCE((v_counts ->> r.status)::bigint, 0) + r.n));
        v_total := v_total + r.n;
        IF r.status = 'extracted' THEN
            v_extracted := v_extracted + r.n;
            v_terminal := v_terminal + r.n;
        ELSIF r.status IN ('parked', 'discarded') OR (r.status = 'dead_lettered' AND r.permanent) THEN
            v_terminal := v_terminal + r.n;
        ELSIF r.status = 'queued' THEN
            v_untouched := v_untouched + r.n;
        END IF;
    END LOOP;
    v_counts := v_counts || jsonb_build_object(
        'total', v_total, 'terminal', v_terminal, 'failed', v_terminal - v_extracted,
        'invalid_urls', v_invalid);

    IF v_total > 0 AND v_terminal < v_total THEN
        v_status := CASE WHEN v_untouched = v_total THEN 'queued' ELSE 'running' END;
    ELSIF v_extracted = v_total AND v_invalid = 0 THEN
        v_status := 'completed';
    ELSIF v_extracted = 0 THEN
        v_status := 'failed';
    ELSE
        v_status := 'completed_with_errors';
    END IF;

    UPDATE jobs SET status = v_status, result = v_counts, updated_at = now(),
           started_at = CASE WHEN v_status <> 'queued' THEN COALESCE(started_at, now()) END,
           completed_at = CASE WHEN v_status NOT IN ('queued', 'running')
                               THEN COALESCE(completed_at, now()) END
     WHERE id = p_job;
    RETURN v_status;
END
$$;

------------------------------------------------------------------------------------------
-- Whether a stored value satisfies `value op val` (the API's and CLI's record filters):
-- numbers compare as numbers when both sides are numbers, everything else as text
-- (equality ignores case; ISO dates sort as text, so ranges on dates work).
CREATE OR REPLACE FUNCTION pipeline_fact_matches(p_value jsonb, p_op text, p_val text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_value) = 'number' AND p_val ~ '^-?[0-9]+(\.[0-9]+)?$' THEN
            CASE p_op
                WHEN '='  THEN (p_value #>> '{}')::numeric =  p_val::numeric
                WHEN '!=' THEN (p_value #>> '{}')::numeric <> p_val::numeric
                WHEN '<'  THEN (p_value #>> '{}')::numeric <  p_val::numeric
                WHEN '<=' THEN (p_value #>> '{}')::numeric <= p_val::numeric
                WHEN '>'  THEN (p_value #>> '{}')::numeric >  p_val::numeric
                WHEN '>=' THEN (p_value #>> '{}')::numeric >= p_val::numeric
            END
        ELSE
            CASE p_op
                WHEN '='  THEN lower(p_value #>> '{}') =  lower(p_val)
                WHEN '!=' THEN lower(p_value #>> '{}') <> lower(p_val)
                WHEN '<'  THEN (p_value #>> '{}') <  p_val
                WHEN '<=' THEN (p_value #>> '{}') <= p_val
                WHEN '>'  THEN (p_value #>> '{}') >  p_val
                WHEN '>=' THEN (p_value #>> '{}') >= p_val
            END
    END
$$;

------------------------------------------------------------------------------------------
-- The stable surface for SQL users: grounded values, ungrounded ones apart, and records.
CREATE SCHEMA IF NOT EXISTS knowledge;

CREATE OR REPLACE VIEW knowledge.facts AS
SELECT f.project_id, p.name AS project, f.entity, f.record_key, f.entity_key, f.field,
       f.value, f.list_item, f.quote, f.origin, f.confidence, f.chunk_index,
       f.source_id, s.uri AS url, f.job_id, f.schema_version, f.created_at
  FROM facts f
  JOIN projects p ON p.id = f.project_id
  JOIN sources s ON s.id = f.source_id
 WHERE f.grounded;
COMMENT ON VIEW knowledge.facts IS
    'Every grounded value: its record (entity, record_key), field, value, verbatim quote and page';

CREATE OR REPLACE VIEW knowledge.ungrounded AS
SELECT f.project_id, f.entity, f.record_key, f.field, f.value, f.quote, f.origin,
       f.source_id, s.uri AS url, f.job_id, f.schema_version, f.created_at
  FROM facts f JOIN sources s ON s.id = f.source_id
 WHERE NOT f.grounded;
COMMENT ON VIEW knowledge.ungrounded IS
    'Values whose quote is not in their page: kept for the operator, never presented as facts';

CREATE OR REPLACE VIEW knowledge.record_fields AS
SELECT f.project_id, f.entity, f.record_key, f.field,
       bool_or(f.list_item) AS list,
       jsonb_agg(DISTINCT f.value) AS "values",
       NOT bool_or(f.list_item) AND count(DISTINCT f.value) > 1 AS conflict,
       count(DISTINCT f.source_id) AS sources,
       max(f.schema_version) AS schema_version
  FROM facts f
 WHERE f.grounded
 GROUP BY f.project_id, f.entity, f.record_key, f.field;
COMMENT ON VIEW knowledge.record_fields IS
    'One row per field of a consolidated record: its distinct values over every page, and '
    'conflict when a single-valued field has more than one';

CREATE OR REPLACE VIEW knowledge.records AS
SELECT rf.project_id, rf.entity, rf.record_key,
       jsonb_object_agg(rf.field, CASE WHEN rf.list OR rf.conflict THEN rf."values"
                                       ELSE rf."values" -> 0 END) AS fields,
       COALESCE(array_agg(rf.field ORDER BY rf.field) FILTER (WHERE rf.conflict), '{}')
           AS conflicts,
       (SELECT count(DISTINCT f.source_id) FROM facts f
         WHERE f.grounded AND f.project_id = rf.project_id AND f.entity = rf.entity
           AND f.record_key = rf.record_key) AS sources,
       max(rf.schema_version) AS schema_version
  FROM knowledge.record_fields rf
 GROUP BY rf.project_id, rf.entity, rf.record_key;
COMMENT ON VIEW knowledge.records IS
    'One row per consolidated record (entity and key within a project): fields as JSON (a '
    'list or a conflicting field holds every value), and which fields conflict';
