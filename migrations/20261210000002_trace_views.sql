-- The traceability surface: views in the `trace` schema that SQL users (psql, BI tools,
-- their own services) query instead of the tables. They are a contract: a later migration
-- may add columns at the end of a view (CREATE OR REPLACE VIEW allows nothing else) and
-- may change the tables underneath, but it keeps every documented column's name, type and
-- meaning. docs/traceability.md documents each view with the questions it answers, and a
-- test runs every query printed there.
--
-- Event-derived columns are scalar subqueries in the select list: Postgres computes one
-- only when the query reads its column, so `SELECT status FROM trace.sources WHERE ...`
-- never touches job_events. Every one of them is an index scan of job_events by source or
-- by job (job_events_source_idx, job_events_job_idx).
--
-- Idempotent: CREATE SCHEMA / INDEX IF NOT EXISTS, CREATE OR REPLACE VIEW, COMMENT.

CREATE SCHEMA IF NOT EXISTS trace;
COMMENT ON SCHEMA trace IS
    'Stable, documented views of the pipeline''s system of record for SQL users (docs/traceability.md).';

-- Looking a source up by its URL (without its project) is the first thing an operator does;
-- the unique (project_id, uri) index cannot serve it. Hash: equality only, and no size limit
-- on long URLs.
CREATE INDEX IF NOT EXISTS sources_uri_hash_idx ON sources USING hash (uri);

------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW trace.events AS
SELECT e.id                                                       AS event_id,
       e.at                                                       AS at,
       e.source_id                                                AS source_id,
       s.uri                                                      AS uri,
       e.job_id                                                   AS job_id,
       e.kind                                                     AS kind,
       e.stage                                                    AS stage,
       e.attempt                                                  AS attempt,
       COALESCE(e.detail ->> 'error', e.detail ->> 'previous_error') AS error,
       COALESCE(e.detail ->> 'kind', e.detail ->> 'error_kind')   AS error_kind,
       e.detail ->> 'dlq'                                         AS dlq,
       e.detail                                                   AS detail
  FROM job_events e
  LEFT JOIN sources s ON s.id = e.source_id;

COMMENT ON VIEW trace.events IS
    'The event trail, one row per event: a source''s timeline is its rows in event_id order.';
COMMENT ON COLUMN trace.events.event_id IS
    'Unique, increasing in insertion order; order a timeline by it (two events may share a timestamp).';
COMMENT ON COLUMN trace.events.at IS 'When the event was recorded.';
COMMENT ON COLUMN trace.events.source_id IS 'The source the event is about.';
COMMENT ON COLUMN trace.events.uri IS 'The source''s URL.';
COMMENT ON COLUMN trace.events.job_id IS
    'The job on whose behalf the work ran (NULL when unknown, e.g. a reconciled source without a creating job).';
COMMENT ON COLUMN trace.events.kind IS
    'enqueued, started, succeeded, failed (a retry is scheduled), dead_lettered, redriven, parked, discarded, reconciled.';
COMMENT ON COLUMN trace.events.stage IS
    'Who recorded it: submit, scrape, extraction (workers), requeue (the daemon), api, cli (a person).';
COMMENT ON COLUMN trace.events.attempt IS 'Delivery attempt the event is about, when it is about one.';
COMMENT ON COLUMN trace.events.error IS
    'Error message of a failure, dead-letter, park or discard; for a redrive, the error it redrove.';
COMMENT ON COLUMN trace.events.error_kind IS 'transient or permanent, with error.';
COMMENT ON COLUMN trace.events.dlq IS 'The dead-letter queue (scrape, extraction) a DLQ event is about.';
COMMENT ON COLUMN trace.events.detail IS 'Everything the recorder added, as JSON (not part of the stable surface).';

------------------------------------------------------------------------------------------
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
                           AS last_event_kind
  FROM sources s
  LEFT JOIN projects p ON p.id = s.project_id
  LEFT JOIN jobs j ON j.id = s.created_by_job_id;

COMMENT ON VIEW trace.sources IS
    'One row per source: where it is now, which job created it, its last error, and counts from its trail.';
COMMENT ON COLUMN trace.sources.source_id IS 'The source.';
COMMENT ON COLUMN trace.sources.project_id IS 'Its project.';
COMMENT ON COLUMN trace.sources.project IS 'Its project''s name.';
COMMENT ON COLUMN trace.sources.uri IS 'Its URL (unique within the project).';
COMMENT ON COLUMN trace.sources.source_group IS 'The group given at submission, if any.';
COMMENT ON COLUMN trace.sources.status IS
    'queued, retrying, scraped, extracted, dead_lettered, parked, discarded.';
COMMENT ON COLUMN trace.sources.outcome IS
    'done (extracted), failed (parked, discarded, or dead-lettered with a permanent error: waits for a person), in_flight (anything else).';
COMMENT ON COLUMN trace.sources.created_by_job_id IS 'The job that first submitted the URL (NULL once that job is deleted).';
COMMENT ON COLUMN trace.sources.created_by_job_type IS 'That job''s type (scrape, crawl, ...).';
COMMENT ON COLUMN trace.sources.created_by_job_at IS 'When that job was created.';
COMMENT ON COLUMN trace.sources.job_ids IS 'Every job that asked for this source, the creating one included.';
COMMENT ON COLUMN trace.sources.title IS 'The fetched page''s title.';
COMMENT ON COLUMN trace.sources.http_status IS 'HTTP status of the last successful fetch.';
COMMENT ON COLUMN trace.sources.content_type IS 'Content type of the last successful fetch.';
COMMENT ON COLUMN trace.sources.fetched_at IS 'When the page was last fetched.';
COMMENT ON COLUMN trace.sources.last_error IS 'The last failure''s message (NULL after a success).';
COMMENT ON COLUMN trace.sources.last_error_kind IS 'transient or permanent, with last_error.';
COMMENT ON COLUMN trace.sources.created_at IS 'When the source was first submitted.';
COMMENT ON COLUMN trace.sources.updated_at IS 'When its status last changed.';
COMMENT ON COLUMN trace.sources.attempts IS 'Stage runs started (scrape and extraction), retries and redrives included.';
COMMENT ON COLUMN trace.sources.failures IS 'Failed attempts: failed (retry scheduled) plus dead_lettered events.';
COMMENT ON COLUMN trace.sources.dead_letters IS 'Times it went to a DLQ.';
COMMENT ON COLUMN trace.sources.redrives IS 'Times it was redriven out of a DLQ (by the daemon or a person).';
COMMENT ON COLUMN trace.sources.first_event_at IS 'Its first event still kept (retention may have dropped older ones).';
COMMENT ON COLUMN trace.sources.last_event_at IS 'Its latest event.';
COMMENT ON COLUMN trace.sources.last_event_kind IS 'The kind of its latest event.';

------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW trace.jobs AS
SELECT j.id                 AS job_id,
       j.project_id         AS project_id,
       p.name               AS project,
       j.type               AS type,
       j.status             AS status,
       j.created_at         AS created_at,
       j.started_at         AS started_at,
       j.completed_at       AS completed_at,
       COALESCE(j.completed_at, now()) - j.created_at AS elapsed,
       COALESCE((j.result ->> 'total')::bigint, 0)         AS sources_total,
       COALESCE((j.result ->> 'extracted')::bigint, 0)     AS extracted,
       COALESCE((j.result ->> 'failed')::bigint, 0)        AS failed,
       COALESCE((j.result ->> 'total')::bigint, 0)
           - COALESCE((j.result ->> 'terminal')::bigint, 0) AS in_flight,
       COALESCE((j.result ->> 'dead_lettered')::bigint, 0) AS dead_lettered,
       COALESCE((j.result ->> 'parked')::bigint, 0)        AS parked,
       COALESCE((j.result ->> 'discarded')::bigint, 0)     AS discarded,
       COALESCE((j.result ->> 'invalid_urls')::bigint, 0)  AS invalid_urls,
       j.error              AS error,
       (SELECT count(*) FROM job_events e WHERE e.job_id = j.id) AS events,
       (SELECT count(*) FROM job_events e
         WHERE e.job_id = j.id AND e.kind IN ('failed', 'dead_lettered')) AS failure_events,
       (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.kind = 'redriven')
                            AS redrives,
       (SELECT min(e.at) FROM job_events e WHERE e.job_id = j.id) AS first_event_at,
       (SELECT max(e.at) FROM job_events e WHERE e.job_id = j.id) AS last_event_at
  FROM jobs j
  LEFT JOIN projects p ON p.id = j.project_id;

COMMENT ON VIEW trace.jobs IS
    'One row per job: status, counts of its sources by outcome, how long it took, and its trail''s extent.';
COMMENT ON COLUMN trace.jobs.job_id IS 'The job.';
COMMENT ON COLUMN trace.jobs.project_id IS 'Its project.';
COMMENT ON COLUMN trace.jobs.project IS 'Its project''s name.';
COMMENT ON COLUMN trace.jobs.type IS 'scrape, crawl, ...';
COMMENT ON COLUMN trace.jobs.status IS 'queued, running, completed, failed, completed_with_errors.';
COMMENT ON COLUMN trace.jobs.created_at IS 'When it was submitted.';
COMMENT ON COLUMN trace.jobs.started_at IS 'When its first source moved.';
COMMENT ON COLUMN trace.jobs.completed_at IS 'When its last source became terminal (NULL while running).';
COMMENT ON COLUMN trace.jobs.elapsed IS 'completed_at (or now, while running) minus created_at.';
COMMENT ON COLUMN trace.jobs.sources_total IS 'Sources it asked for (valid URLs).';
COMMENT ON COLUMN trace.jobs.extracted IS 'Sources done.';
COMMENT ON COLUMN trace.jobs.failed IS 'Sources that ended in failure (parked, discarded, permanently dead-lettered).';
COMMENT ON COLUMN trace.jobs.in_flight IS 'Sources not terminal yet.';
COMMENT ON COLUMN trace.jobs.dead_lettered IS 'Sources in a DLQ now (transient ones still wait for a redrive).';
COMMENT ON COLUMN trace.jobs.parked IS 'Sources parked (automatic redrive gave up).';
COMMENT ON COLUMN trace.jobs.discarded IS 'Sources a person discarded.';
COMMENT ON COLUMN trace.jobs.invalid_urls IS 'URLs rejected at submission (listed in the job''s payload).';
COMMENT ON COLUMN trace.jobs.error IS 'The job''s own error, if any.';
COMMENT ON COLUMN trace.jobs.events IS 'Events recorded on its behalf.';
COMMENT ON COLUMN trace.jobs.failure_events IS 'Failed attempts recorded on its behalf (failed plus dead_lettered events).';
COMMENT ON COLUMN trace.jobs.redrives IS 'Redrives of its sources.';
COMMENT ON COLUMN trace.jobs.first_event_at IS 'Its first event still kept.';
COMMENT ON COLUMN trace.jobs.last_event_at IS 'Its latest event.';

------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW trace.job_sources AS
SELECT js.job_id                              AS job_id,
       js.source_id                           AS source_id,
       s.uri                                  AS uri,
       s.status                               AS status,
       s.created_by_job_id IS NOT DISTINCT FROM js.job_id AS created_by_this_job,
       s.last_error                           AS last_error,
       s.last_error_kind                      AS last_error_kind,
       s.updated_at                           AS updated_at
  FROM job_sources js
  JOIN sources s ON s.id = js.source_id;

COMMENT ON VIEW trace.job_sources IS
    'Which sources each job asked for: a URL submitted again by a later job keeps its source and joins that job too.';
COMMENT ON COLUMN trace.job_sources.job_id IS 'The job.';
COMMENT ON COLUMN trace.job_sources.source_id IS 'A source it asked for.';
COMMENT ON COLUMN trace.job_sources.uri IS 'The source''s URL.';
COMMENT ON COLUMN trace.job_sources.status IS 'The source''s status now.';
COMMENT ON COLUMN trace.job_sources.created_by_this_job IS 'Whether this job created the source (false: an earlier job had).';
COMMENT ON COLUMN trace.job_sources.last_error IS 'The source''s last error.';
COMMENT ON COLUMN trace.job_sources.last_error_kind IS 'transient or permanent.';
COMMENT ON COLUMN trace.job_sources.updated_at IS 'When the source''s status last changed.';

------------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW trace.dlq_history AS
SELECT e.id                                                          AS event_id,
       e.at                                                          AS at,
       e.source_id                                                   AS source_id,
       s.uri                                                         AS uri,
       e.job_id                                                      AS job_id,
       e.kind                                                        AS action,
       COALESCE(e.detail ->> 'dlq', e.stage)                         AS dlq,
       e.stage                                                       AS actor,
       (e.detail ->> 'retry_count')::integer                         AS redrive_count,
       e.attempt                                                     AS attempts,
       COALESCE(e.detail ->> 'error', e.detail ->> 'previous_error') AS error,
       COALESCE(e.detail ->> 'kind', e.detail ->> 'error_kind')      AS error_kind
  FROM job_events e
  LEFT JOIN sources s ON s.id = e.source_id
 WHERE e.kind IN ('dead_lettered', 'redriven', 'parked', 'discarded');

COMMENT ON VIEW trace.dlq_history IS
    'What went into a dead-letter queue and what became of it: dead-lettered, redriven, parked, discarded; by whom, when.';
COMMENT ON COLUMN trace.dlq_history.event_id IS 'The event (orders the history).';
COMMENT ON COLUMN trace.dlq_history.at IS 'When it happened.';
COMMENT ON COLUMN trace.dlq_history.source_id IS 'The source of the DLQ item.';
COMMENT ON COLUMN trace.dlq_history.uri IS 'Its URL.';
COMMENT ON COLUMN trace.dlq_history.job_id IS 'The job of the DLQ item.';
COMMENT ON COLUMN trace.dlq_history.action IS 'dead_lettered, redriven, parked or discarded.';
COMMENT ON COLUMN trace.dlq_history.dlq IS 'The dead-letter queue: scrape or extraction.';
COMMENT ON COLUMN trace.dlq_history.actor IS
    'Who did it: the worker (scrape, extraction) that dead-lettered it, requeue (the daemon), api or cli (a person).';
COMMENT ON COLUMN trace.dlq_history.redrive_count IS
    'The item''s redrive count after the action (NULL for dead_lettered).';
COMMENT ON COLUMN trace.dlq_history.attempts IS 'Delivery attempts the item had used.';
COMMENT ON COLUMN trace.dlq_history.error IS 'The item''s error (for a redrive: the error it redrove).';
COMMENT ON COLUMN trace.dlq_history.error_kind IS 'transient or permanent.';

------------------------------------------------------------------------------------------
-- A run is a `started` event and the next event of the same source and stage among
-- started/succeeded/failed/dead_lettered: when that next one is another `started`, the run
-- never settled (its worker died; the queue delivered the message again).
CREATE OR REPLACE VIEW trace.stage_runs AS
SELECT st.source_id                                     AS source_id,
       st.job_id                                        AS job_id,
       st.stage                                         AS stage,
       st.attempt                                       AS attempt,
       st.id                                            AS started_event_id,
       st.at                                            AS started_at,
       CASE WHEN nx.kind <> 'started' THEN nx.at END    AS ended_at,
       CASE WHEN nx.kind IS NULL THEN 'running'
            WHEN nx.kind = 'started' THEN 'abandoned'
            ELSE nx.kind END                            AS outcome,
       CASE WHEN nx.kind <> 'started' THEN nx.at - st.at END AS duration,
       CASE WHEN nx.kind <> 'started'
            THEN extract(epoch FROM nx.at - st.at)::double precision * 1000 END AS duration_ms,
       st.at - (SELECT pe.at FROM job_events pe
                 WHERE pe.source_id = st.source_id AND pe.id < st.id
                 ORDER BY pe.id DESC LIMIT 1)           AS waited
  FROM job_events st
  LEFT JOIN LATERAL (
        SELECT e.kind, e.at
          FROM job_events e
         WHERE e.source_id = st.source_id AND e.id > st.id AND e.stage = st.stage
           AND e.kind IN ('started', 'succeeded', 'failed', 'dead_lettered')
         ORDER BY e.id
         LIMIT 1) nx ON true
 WHERE st.kind = 'started';

COMMENT ON VIEW trace.stage_runs IS
    'One row per stage run (a worker''s attempt at a source): when it started and ended, how, and how long it took.';
COMMENT ON COLUMN trace.stage_runs.source_id IS 'The source worked on.';
COMMENT ON COLUMN trace.stage_runs.job_id IS 'The job on whose behalf.';
COMMENT ON COLUMN trace.stage_runs.stage IS 'scrape or extraction.';
COMMENT ON COLUMN trace.stage_runs.attempt IS 'The delivery attempt.';
COMMENT ON COLUMN trace.stage_runs.started_event_id IS 'The `started` event (orders a source''s runs).';
COMMENT ON COLUMN trace.stage_runs.started_at IS 'When the worker started.';
COMMENT ON COLUMN trace.stage_runs.ended_at IS 'When it settled (NULL while running or when abandoned).';
COMMENT ON COLUMN trace.stage_runs.outcome IS
    'succeeded, failed (a retry is scheduled), dead_lettered, running (no end yet), abandoned (started again before it settled).';
COMMENT ON COLUMN trace.stage_runs.duration IS 'ended_at - started_at.';
COMMENT ON COLUMN trace.stage_runs.duration_ms IS 'The same in milliseconds.';
COMMENT ON COLUMN trace.stage_runs.waited IS
    'Time since the source''s previous event: how long it waited in a queue (or for a retry) before this run.';
