-- Scheduled recrawls: a crawl repeated every `every_secs` seconds, kept in Postgres so that
-- any requeue daemon replica can start the next run and none starts it twice.
--
-- crawl_job_id: the crawl the schedule was set on (its settings are every run's). last_job_id:
-- the latest run (the crawl itself until the first recrawl); the next run repeats it, so its
-- pages are fetched conditionally against what that run stored. A run is due when
-- next_run_at has passed and last_job_id's job has ended; a run still going when its next is
-- due delays that next until it ends (runs never overlap). After a start, next_run_at moves
-- on by every_secs, or to now + every_secs when runs were missed (they are not caught up).
--
-- The requeue daemon takes due rows with FOR UPDATE SKIP LOCKED and creates the recrawl and
-- advances the row in one transaction: a crash before the commit starts nothing, and two
-- replicas never take the same row.
--
-- Idempotent: IF NOT EXISTS.

CREATE TABLE IF NOT EXISTS crawl_schedules (
    crawl_job_id  uuid PRIMARY KEY REFERENCES crawls (job_id) ON DELETE CASCADE,
    every_secs    integer NOT NULL CHECK (every_secs BETWEEN 60 AND 31536000),
    next_run_at   timestamptz NOT NULL,
    last_job_id   uuid NOT NULL REFERENCES crawls (job_id) ON DELETE CASCADE,
    runs          bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS crawl_schedules_due_idx ON crawl_schedules (next_run_at);

COMMENT ON TABLE crawl_schedules IS
    'Recrawl schedules: crawl_job_id is repeated every every_secs; last_job_id is the latest run.';
