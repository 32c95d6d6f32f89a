-- The whole schema of the pipeline. Every statement is idempotent (IF NOT EXISTS), so the
-- file is safe to apply twice even outside the migrator's bookkeeping.

CREATE TABLE IF NOT EXISTS projects (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- status: queued -> running -> completed | failed | completed_with_errors.
-- result holds the progress counts by outcome, refreshed at every source transition.
CREATE TABLE IF NOT EXISTS jobs (
    id            uuid PRIMARY KEY,
    project_id    uuid REFERENCES projects (id) ON DELETE CASCADE,
    type          text NOT NULL,
    status        text NOT NULL,
    payload       jsonb,
    result        jsonb,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_status_created_idx ON jobs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_type_created_idx ON jobs (type, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at DESC);

-- status: queued, retrying, scraped, extracting, extracted (done), dead_lettered, parked,
-- discarded, failed. Terminal: extracted, dead_lettered (permanent), parked, discarded, failed.
CREATE TABLE IF NOT EXISTS sources (
    id                 uuid PRIMARY KEY,
    project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    uri                text NOT NULL,
    source_group       text,
    status             text NOT NULL,
    title              text,
    raw_content        text,
    content            text,
    content_type       text,
    http_status        integer,
    fetched_at         timestamptz,
    last_error         text,
    last_error_kind    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    created_by_job_id  uuid REFERENCES jobs (id) ON DELETE SET NULL,
    UNIQUE (project_id, uri)
);
CREATE INDEX IF NOT EXISTS sources_created_by_job_id_idx ON sources (created_by_job_id);
CREATE INDEX IF NOT EXISTS sources_status_updated_idx ON sources (status, updated_at);

-- Which sources each job asked for. A URL submitted by a second job keeps the source of the
-- first (created_by_job_id) and joins the second job here, so both jobs see its progress.
CREATE TABLE IF NOT EXISTS job_sources (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    source_id  uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, source_id)
);
CREATE INDEX IF NOT EXISTS job_sources_source_idx ON job_sources (source_id);

CREATE TABLE IF NOT EXISTS extractions (
    id                  uuid PRIMARY KEY,
    source_id           uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    project_id          uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    extraction_type     text NOT NULL,
    data                jsonb NOT NULL,
    chunk_index         integer NOT NULL DEFAULT 0,
    embeddings_created  boolean NOT NULL DEFAULT false,
    entities_extracted  boolean NOT NULL DEFAULT false,
    entities_status     text,
    created_by_job_id   uuid REFERENCES jobs (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- A redelivered message upserts the same chunks instead of adding copies.
    UNIQUE (source_id, extraction_type, chunk_index)
);
CREATE INDEX IF NOT EXISTS extractions_missing_embeddings_idx
    ON extractions (source_id) WHERE NOT embeddings_created;

-- Written in the same transaction that sets extractions.embeddings_created.
CREATE TABLE IF NOT EXISTS extraction_embeddings (
    extraction_id  uuid PRIMARY KEY REFERENCES extractions (id) ON DELETE CASCADE,
    model          text NOT NULL,
    dims           integer NOT NULL,
    embedding      real[] NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS entities (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    name        text NOT NULL,
    normalized  text NOT NULL,
    data        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, kind, normalized)
);

CREATE TABLE IF NOT EXISTS extraction_entities (
    extraction_id  uuid NOT NULL REFERENCES extractions (id) ON DELETE CASCADE,
    entity_id      uuid NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (extraction_id, entity_id)
);
CREATE INDEX IF NOT EXISTS extraction_entities_entity_idx ON extraction_entities (entity_id);

-- kind: enqueued, started, succeeded, failed, retry_scheduled, dead_lettered, redriven,
-- parked, discarded, reconciled (and more as the design grows).
CREATE TABLE IF NOT EXISTS job_events (
    id         bigserial PRIMARY KEY,
    job_id     uuid REFERENCES jobs (id) ON DELETE SET NULL,
    source_id  uuid REFERENCES sources (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    stage      text,
    attempt    integer,
    detail     jsonb,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS job_events_source_idx ON job_events (source_id, id);
CREATE INDEX IF NOT EXISTS job_events_job_idx ON job_events (job_id, id);
