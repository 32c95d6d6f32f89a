-- Job progress in one round trip. A job's counters and status are recomputed from its
-- sources' statuses under the job's row lock; as a function the lock, the aggregate and the
-- update are one statement for the client (one round trip and one commit) instead of five.
-- In READ COMMITTED each statement inside the function takes a fresh snapshot, so the
-- aggregate, which runs after the lock is granted, sees every transition committed before.
-- The lock is FOR NO KEY UPDATE (what the UPDATE below takes anyway), not FOR UPDATE: every
-- event insert checks its foreign key to the job with FOR KEY SHARE, which FOR UPDATE would
-- conflict with, queueing the refresh behind every open transition of the job and each
-- transition behind the refresh.
--
-- A source is terminal for its job when `extracted`, `parked`, `discarded`, or
-- `dead_lettered` with a permanent error (a transient one still waits for its redrive).
-- Returns the job's new status, or NULL when the job does not exist.
-- Idempotent (CREATE OR REPLACE), like the rest of the schema.

CREATE OR REPLACE FUNCTION pipeline_refresh_job_progress(p_job uuid) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_invalid   bigint;
    v_counts    jsonb := '{"queued": 0, "retrying": 0, "scraped": 0, "extracted": 0,
                           "dead_lettered": 0, "parked": 0, "discarded": 0}';
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
