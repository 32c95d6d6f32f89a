-- Priorities and fair share between projects (see crates/work-queue/README.md, "Fair share").
--
-- jobs.priority: the priority of the job's messages within its project's lane of every queue
-- family (high, normal or low). Set on submit and crawl; a DLQ retry may change it for
-- the retried message.
--
-- project_queue_limits: a project's share and limits per queue family, the truth the
-- requeue daemon and the API copy into Redis (where the queue's scripts read them). A
-- row with weight 1 and no limits is the same as no row.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS priority text NOT NULL DEFAULT 'normal';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'jobs_priority_check') THEN
        ALTER TABLE jobs ADD CONSTRAINT jobs_priority_check
            CHECK (priority IN ('high', 'normal', 'low'));
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS project_queue_limits (
    project_id    uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    family        text NOT NULL,
    weight        integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    max_in_flight integer CHECK (max_in_flight IS NULL OR max_in_flight BETWEEN 1 AND 1000000),
    per_second    double precision CHECK (per_second IS NULL OR (per_second > 0 AND per_second <= 1000)),
    burst         integer NOT NULL DEFAULT 1 CHECK (burst BETWEEN 1 AND 10000),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, family)
);
