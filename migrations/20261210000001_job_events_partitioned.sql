-- The event trail, partitioned by month of `at` (native range partitioning), so that
-- retention drops whole partitions (a catalog change, not millions of row deletes) and a
-- query bounded in time touches only the months it names.
--
-- Partitions are named job_events_yYYYYmMM and cover one UTC calendar month. A default
-- partition (job_events_default) catches any row whose month has no partition yet, so an
-- insert never fails for lack of one; pipeline_ensure_event_partitions moves such rows into
-- their month's partition when it creates it.
--
-- The table's primary key is (id, at): a partitioned table's unique keys must include the
-- partition key. `id` still comes from the same sequence, so it stays unique and ordered by
-- insertion, and every query that orders a trail by id keeps its meaning.
--
-- The conversion from the plain table of the initial schema runs in the migration's
-- transaction: rename, create the partitioned parent, copy, drop the old table. It locks
-- job_events for the duration of the copy (seconds per million rows); plan it with the
-- workers stopped on a large trail. Everything here is idempotent: functions are CREATE OR
-- REPLACE, the conversion runs only while job_events is still a plain table, and indexes are
-- IF NOT EXISTS.

-- The partition holding the month of `p_month`.
CREATE OR REPLACE FUNCTION pipeline_event_partition_name(p_month date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'job_events_' || to_char(p_month, '"y"YYYY"m"MM')
$$;

-- Start of the UTC month containing `p_day`. Bounds are computed with make_timestamptz in
-- UTC, never by adding an interval to a timestamptz: that addition follows the session's
-- time zone, and a month boundary would move with the caller's TimeZone setting.
CREATE OR REPLACE FUNCTION pipeline_event_month_start(p_day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT make_timestamptz(extract(year FROM p_day)::int, extract(month FROM p_day)::int,
                            1, 0, 0, 0, 'UTC')
$$;

-- Creates the partition of the month containing `p_month` unless it exists. Returns whether
-- it created one. Rows of that month already in the default partition are moved into the
-- new partition first (Postgres refuses to create a partition whose rows sit in the default).
CREATE OR REPLACE FUNCTION pipeline_create_event_partition(p_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_month date := date_trunc('month', p_month)::date;
    v_from  timestamptz := pipeline_event_month_start(v_month);
    v_to    timestamptz := pipeline_event_month_start((v_month + 40)::date);
    v_name  text := pipeline_event_partition_name(v_month);
BEGIN
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM job_events_default WHERE at >= v_from AND at < v_to) THEN
        EXECUTE format('CREATE TABLE %I (LIKE job_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       v_name);
        EXECUTE format('WITH moved AS (DELETE FROM job_events_default
                                        WHERE at >= $1 AND at < $2 RETURNING *)
                        INSERT INTO %I SELECT * FROM moved', v_name)
            USING v_from, v_to;
        EXECUTE format('ALTER TABLE job_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_from, v_to);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF job_events FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_from, v_to);
    END IF;
    RETURN true;
END
$$;

-- Partition maintenance, the one entry point (the requeue daemon calls it at start and then
-- periodically; a cron job may call it too):
--   - creates the partitions of the current UTC month and the `p_months_ahead` next ones;
--   - with `p_retention_days` > 0, drops every monthly partition whose whole month ended
--     more than `p_retention_days` days ago (0 keeps everything). The default partition is
--     never dropped.
-- Returns one row per partition created or dropped. Concurrent callers (several daemon
-- replicas) serialise on an advisory lock held until their transaction ends.
CREATE OR REPLACE FUNCTION pipeline_ensure_event_partitions(
    p_months_ahead integer DEFAULT 2,
    p_retention_days integer DEFAULT 0
) RETURNS TABLE (partition_name text, change text)
LANGUAGE plpgsql AS $$
DECLARE
    v_this  date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    v_month date;
    r       record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pipeline_ensure_event_partitions'));
    FOR i IN 0 .. greatest(p_months_ahead, 0) LOOP
        v_month := (v_this + make_interval(months => i))::date;
        IF pipeline_create_event_partition(v_month) THEN
            partition_name := pipeline_event_partition_name(v_month);
            change := 'created';
            RETURN NEXT;
        END IF;
    END LOOP;
    IF p_retention_days > 0 THEN
        FOR r IN
            SELECT c.relname::text AS name,
                   to_date(substr(c.relname, 12), '"y"YYYY"m"MM') AS month
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'job_events'::regclass
               AND c.relname ~ '^job_events_y[0-9]{4}m[0-9]{2}$'
             ORDER BY 2
        LOOP
            IF pipeline_event_month_start((r.month + 40)::date)
                   <= now() - make_interval(days => p_retention_days) THEN
                EXECUTE format('DROP TABLE %I', r.name);
                partition_name := r.name;
                change := 'dropped';
                RETURN NEXT;
            END IF;
        END LOOP;
    END IF;
END
$$;

DO $$
DECLARE
    v_oldest timestamptz;
    v_month  date;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('job_events')) IS DISTINCT FROM 'r' THEN
        RETURN;
    END IF;

    ALTER TABLE job_events RENAME TO job_events_unpartitioned;
    -- The sequence must outlive the old table: it keeps numbering the new one.
    ALTER TABLE job_events_unpartitioned ALTER COLUMN id DROP DEFAULT;
    ALTER SEQUENCE job_events_id_seq OWNED BY NONE;
    -- Free the index and constraint names for the new table (the old table goes at the end,
    -- and the copy below needs neither its indexes nor its foreign-key checks).
    ALTER TABLE job_events_unpartitioned DROP CONSTRAINT job_events_pkey,
        DROP CONSTRAINT IF EXISTS job_events_job_id_fkey,
        DROP CONSTRAINT IF EXISTS job_events_source_id_fkey;
    DROP INDEX job_events_source_idx;
    DROP INDEX job_events_job_idx;

    CREATE TABLE job_events (
        id         bigint NOT NULL DEFAULT nextval('job_events_id_seq'),
        job_id     uuid REFERENCES jobs (id) ON DELETE SET NULL,
        source_id  uuid REFERENCES sources (id) ON DELETE CASCADE,
        kind       text NOT NULL,
        stage      text,
        attempt    integer,
        detail     jsonb,
        at         timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (id, at)
    ) PARTITION BY RANGE (at);
    CREATE TABLE job_events_default PARTITION OF job_events DEFAULT;

    -- A partition for every month the old rows cover, so none lands in the default.
    SELECT min(at) INTO v_oldest FROM job_events_unpartitioned;
    IF v_oldest IS NOT NULL THEN
        v_month := date_trunc('month', v_oldest AT TIME ZONE 'UTC')::date;
        WHILE v_month <= (now() AT TIME ZONE 'UTC')::date LOOP
            PERFORM pipeline_create_event_partition(v_month);
            v_month := (v_month + interval '1 month')::date;
        END LOOP;
    END IF;

    INSERT INTO job_events (id, job_id, source_id, kind, stage, attempt, detail, at)
    SELECT id, job_id, source_id, kind, stage, attempt, detail, at
      FROM job_events_unpartitioned;
    DROP TABLE job_events_unpartitioned;
    ALTER SEQUENCE job_events_id_seq OWNED BY job_events.id;
END
$$;

-- On the parent, so every partition (present and future) gets them.
CREATE INDEX IF NOT EXISTS job_events_source_idx ON job_events (source_id, id);
CREATE INDEX IF NOT EXISTS job_events_job_idx ON job_events (job_id, id);
-- "What happened in the last hour": BRIN costs almost nothing per insert on an
-- append-mostly table whose `at` grows with its physical order.
CREATE INDEX IF NOT EXISTS job_events_at_brin ON job_events USING brin (at);
-- DLQ actions are a small share of the trail; a partial index finds them by time without
-- reading the rest.
CREATE INDEX IF NOT EXISTS job_events_dlq_at_idx ON job_events (at)
    WHERE kind IN ('dead_lettered', 'redriven', 'parked', 'discarded');

SELECT count(*) FROM pipeline_ensure_event_partitions(2, 0);
