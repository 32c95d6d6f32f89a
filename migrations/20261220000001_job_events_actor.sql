-- Who acted, in a column of its own. `stage` is the queue family an event is about
-- (scrape, extraction); `actor` is who recorded it: a daemon (scrape-worker,
-- extraction-worker, requeue-daemon) or a person through the api, the cli or the console.
-- Before this migration `stage` held both: the family for the workers' events, the actor
-- (requeue, api, cli, console) for the others, and submit or crawl for `enqueued`.
ALTER TABLE job_events ADD COLUMN IF NOT EXISTS actor text;

-- Events recorded before: the actor moves out of `stage`, which gets the family (a DLQ
-- event names it in detail.dlq, a reconcile in detail.family; an enqueue is for scrape).
-- Who submitted is not known for those (NULL). A function, so that the events a previous
-- release's daemon writes during a rolling upgrade can be moved the same way afterwards
-- (`SELECT pipeline_move_event_actors()`); running it twice changes nothing: no row is left
-- with a stage other than a family. Returns how many events it moved.
CREATE OR REPLACE FUNCTION pipeline_move_event_actors() RETURNS bigint
LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE job_events
           SET actor = CASE stage
                           WHEN 'requeue' THEN 'requeue-daemon'
                           WHEN 'crawl' THEN CASE WHEN detail ->> 'discovered_from' IS NOT NULL
                                                  THEN 'scrape-worker' END
                           WHEN 'submit' THEN NULL
                           ELSE stage
                       END,
               stage = COALESCE(detail ->> 'dlq', detail ->> 'family', 'scrape')
         WHERE stage IS NOT NULL AND stage NOT IN ('scrape', 'extraction')
        RETURNING 1
    )
    SELECT count(*) FROM moved
$$;

SELECT pipeline_move_event_actors();

-- The views show the actor (CREATE OR REPLACE VIEW may only add columns at the end). A
-- worker's event recorded before this column existed reads as that worker's.
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
       e.detail                                                   AS detail,
       COALESCE(e.actor, CASE WHEN e.kind IN ('started', 'succeeded', 'failed', 'dead_lettered')
                              THEN e.stage || '-worker' END)     AS actor
  FROM job_events e
  LEFT JOIN sources s ON s.id = e.source_id;

COMMENT ON COLUMN trace.events.stage IS
    'The queue family the event is about: scrape or extraction.';
COMMENT ON COLUMN trace.events.actor IS
    'Who recorded it: scrape-worker, extraction-worker, requeue-daemon (daemons), api, cli, console (a person); NULL for a submission recorded before this column existed.';

CREATE OR REPLACE VIEW trace.dlq_history AS
SELECT e.id                                                          AS event_id,
       e.at                                                          AS at,
       e.source_id                                                   AS source_id,
       s.uri                                                         AS uri,
       e.job_id                                                      AS job_id,
       e.kind                                                        AS action,
       COALESCE(e.detail ->> 'dlq', e.stage)                         AS dlq,
       COALESCE(e.actor, CASE WHEN e.kind = 'dead_lettered'
                              THEN e.stage || '-worker' END)        AS actor,
       (e.detail ->> 'retry_count')::integer                         AS redrive_count,
       e.attempt                                                     AS attempts,
       COALESCE(e.detail ->> 'error', e.detail ->> 'previous_error') AS error,
       COALESCE(e.detail ->> 'kind', e.detail ->> 'error_kind')      AS error_kind
  FROM job_events e
  LEFT JOIN sources s ON s.id = e.source_id
 WHERE e.kind IN ('dead_lettered', 'redriven', 'parked', 'discarded');

COMMENT ON COLUMN trace.dlq_history.actor IS
    'Who did it: the worker that dead-lettered it (scrape-worker, extraction-worker), requeue-daemon, or a person through the api, the cli or the console.';
