-- Status columns hold only the words the code writes (pipeline_store::status::{SourceStatus,
-- JobStatus}; extract_core::EntitiesStatus). Before this, they were free text, and the
-- initial migration's comment named a source status ("extracting") that never existed; the
-- column comments below are the current list.
--
-- Safe to run twice: each constraint is dropped if present and added again. NOT VALID then
-- VALIDATE, so existing rows are checked without holding an exclusive lock for the scan.

ALTER TABLE sources DROP CONSTRAINT IF EXISTS sources_status_check;
ALTER TABLE sources ADD CONSTRAINT sources_status_check CHECK (status IN
    ('queued', 'retrying', 'scraped', 'extracted', 'dead_lettered', 'parked', 'discarded'))
    NOT VALID;
ALTER TABLE sources VALIDATE CONSTRAINT sources_status_check;

ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('queued', 'running', 'completed', 'failed', 'completed_with_errors'))
    NOT VALID;
ALTER TABLE jobs VALIDATE CONSTRAINT jobs_status_check;

ALTER TABLE extractions DROP CONSTRAINT IF EXISTS extractions_entities_status_check;
ALTER TABLE extractions ADD CONSTRAINT extractions_entities_status_check CHECK (
    entities_status IS NULL OR entities_status IN ('complete', 'partial', 'failed'))
    NOT VALID;
ALTER TABLE extractions VALIDATE CONSTRAINT extractions_entities_status_check;

COMMENT ON COLUMN sources.status IS
    'queued -> scraped -> extracted (done); retrying while a transient failure waits; '
    'dead_lettered while in a DLQ; parked once automatic redrive gave up; discarded by a person';
COMMENT ON COLUMN jobs.status IS
    'queued -> running -> completed | failed | completed_with_errors (all sources terminal)';
COMMENT ON COLUMN extractions.entities_status IS
    'complete, partial (some entity extractor failed) or failed (all failed); NULL before entities ran';
