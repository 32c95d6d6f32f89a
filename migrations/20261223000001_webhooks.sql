-- Webhooks (queue family `webhooks`): endpoints a project registers, the deliveries of the
-- events they subscribe to, and each delivery's trail (every attempt with its HTTP status,
-- latency and error; dead-letters, redrives, parks, replays).
--
-- The events are written by triggers, in the transaction of the change they report (a job
-- reaching its end, a page extracted, a source dead-lettered or parked): an event cannot be
-- lost between the change and its delivery, whichever process made the change. The webhook
-- worker relays new deliveries to its queue (`enqueued_at`), and finds deliveries whose
-- message Redis lost again. Design and payloads: docs/webhooks.md.
--
-- Idempotent: IF NOT EXISTS, CREATE OR REPLACE, triggers dropped and created again.

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url         text NOT NULL,
    -- Event types delivered to this endpoint (see pipeline_webhook_event_types()).
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    -- The HMAC-SHA256 key of the signatures. Never returned by the API after creation and
    -- never part of a payload.
    secret      text NOT NULL,
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_project_idx ON webhook_endpoints (project_id);

-- status: pending (waiting in the queue, or retrying) -> delivered; dead_lettered after its
-- attempts (a redrive makes it pending again); parked once automatic redrive gave up;
-- cancelled when its endpoint was disabled before it went out.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    -- Also the queue message id and the idempotency id the receiver sees
    -- (`Pipeline-Delivery` header, `id` of the payload): a retry or replay keeps it.
    id           uuid PRIMARY KEY,
    endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    project_id   uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event        text NOT NULL,
    -- The JSON body sent, without any secret.
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'delivered', 'dead_lettered', 'parked', 'cancelled')),
    attempts     integer NOT NULL DEFAULT 0,
    last_status  integer,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- When the worker last put it on the queue; NULL: not relayed yet.
    enqueued_at  timestamptz,
    delivered_at timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_idx
    ON webhook_deliveries (endpoint_id, created_at DESC);
-- The relay's and the reconciliation's walks: only pending deliveries are indexed.
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending_idx
    ON webhook_deliveries (enqueued_at NULLS FIRST, created_at) WHERE status = 'pending';

-- The delivery's trail. kind: attempt (one HTTP request: status or error, latency),
-- delivered, dead_lettered, redriven, parked, replayed, cancelled, reconciled.
CREATE TABLE IF NOT EXISTS webhook_delivery_events (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    attempt      integer,
    http_status  integer,
    latency_ms   integer,
    error        text,
    actor        text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_delivery_events_delivery_idx
    ON webhook_delivery_events (delivery_id, id);

------------------------------------------------------------------------------------------
-- The event types an endpoint may subscribe to.
CREATE OR REPLACE FUNCTION pipeline_webhook_event_types() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['job.completed', 'job.completed_with_errors', 'job.failed', 'crawl.ended',
                 'page.extracted', 'item.dead_lettered', 'item.parked']
$$;

-- Writes one delivery per enabled endpoint of `p_project` subscribed to `p_event`; the
-- payload is `{id, type, created_at, project_id, data}`. Wakes the webhook workers.
CREATE OR REPLACE FUNCTION pipeline_webhook_emit(p_project uuid, p_event text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF p_project IS NULL THEN
        RETURN;
    END IF;
    -- The id is drawn in the subquery's select list: once per endpoint (a volatile call
    -- there is evaluated per row; an uncorrelated LATERAL would be evaluated once).
    INSERT INTO webhook_deliveries (id, endpoint_id, project_id, event, payload)
    SELECT d.id, d.endpoint_id, p_project, p_event,
           jsonb_build_object('id', d.id, 'type', p_event, 'created_at', now(),
                              'project_id', p_project, 'data', p_data)
      FROM (SELECT gen_random_uuid() AS id, e.id AS endpoint_id
              FROM webhook_endpoints e
             WHERE e.project_id = p_project AND e.enabled AND p_event = ANY (e.events)) d;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('pipeline_webhooks', '');
    END IF;
END
$$;

-- A job reaching an end (inserted ended, or moved to an end from any other status: from
-- running, or from another end when a redriven page changed the outcome).
CREATE OR REPLACE FUNCTION pipeline_webhook_job_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_data jsonb;
BEGIN
    v_data := jsonb_build_object(
        'job_id', NEW.id, 'job_type', NEW.type, 'status', NEW.status,
        'progress', NEW.result, 'error', NEW.error,
        'created_at', NEW.created_at, 'completed_at', NEW.completed_at);
    PERFORM pipeline_webhook_emit(NEW.project_id, 'job.' || NEW.status, v_data);
    IF NEW.type = 'crawl' THEN
        PERFORM pipeline_webhook_emit(NEW.project_id, 'crawl.ended',
            v_data || COALESCE((SELECT jsonb_build_object('start_url', c.start_url,
                                                         'pages', c.pages,
                                                         'cancelled', c.cancelled_at IS NOT NULL)
                                  FROM crawls c WHERE c.job_id = NEW.id), '{}'));
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS webhook_job_ended_update ON jobs;
CREATE TRIGGER webhook_job_ended_update AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'completed_with_errors', 'failed')
          AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION pipeline_webhook_job_ended();
DROP TRIGGER IF EXISTS webhook_job_ended_insert ON jobs;
CREATE TRIGGER webhook_job_ended_insert AFTER INSERT ON jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'completed_with_errors', 'failed'))
    EXECUTE FUNCTION pipeline_webhook_job_ended();

-- A page reaching `extracted` (opt-in event `page.extracted`: one per page).
CREATE OR REPLACE FUNCTION pipeline_webhook_page_extracted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The common case (no endpoint wants pages) costs one index probe.
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints
                    WHERE project_id = NEW.project_id AND enabled
                      AND 'page.extracted' = ANY (events)) THEN
        RETURN NULL;
    END IF;
    PERFORM pipeline_webhook_emit(NEW.project_id, 'page.extracted', jsonb_build_object(
        'source_id', NEW.id, 'url', NEW.uri, 'title', NEW.title,
        'http_status', NEW.http_status, 'fetched_at', NEW.fetched_at,
        'job_ids', (SELECT COALESCE(jsonb_agg(js.job_id), '[]')
                      FROM (SELECT job_id FROM job_sources WHERE source_id = NEW.id
                             LIMIT 100) js)));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS webhook_page_extracted ON sources;
CREATE TRIGGER webhook_page_extracted AFTER UPDATE OF status ON sources
    FOR EACH ROW
    WHEN (NEW.status = 'extracted' AND OLD.status <> 'extracted')
    EXECUTE FUNCTION pipeline_webhook_page_extracted();

-- A source dead-lettered or parked (its trail event).
CREATE OR REPLACE FUNCTION pipeline_webhook_item_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_project uuid;
    v_url     text;
BEGIN
    SELECT s.project_id, s.uri INTO v_project, v_url FROM sources s WHERE s.id = NEW.source_id;
    PERFORM pipeline_webhook_emit(v_project, 'item.' || NEW.kind, jsonb_build_object(
        'source_id', NEW.source_id, 'url', v_url, 'job_id', NEW.job_id, 'stage', NEW.stage,
        'attempt', NEW.attempt,
        'error', COALESCE(NEW.detail ->> 'error', NEW.detail ->> 'previous_error'),
        'error_kind', COALESCE(NEW.detail ->> 'error_kind', NEW.detail ->> 'kind'),
        'at', NEW.at));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS webhook_item_event ON job_events;
CREATE TRIGGER webhook_item_event AFTER INSERT ON job_events
    FOR EACH ROW
    WHEN (NEW.kind IN ('dead_lettered', 'parked') AND NEW.source_id IS NOT NULL)
    EXECUTE FUNCTION pipeline_webhook_item_event();
