-- Rendering in a headless browser, per job (see docs/rendering.md).
--
-- jobs.render: whether the scrape worker renders the job's pages before extraction (never,
-- auto or always). NULL: the job did not say, and each worker applies its configured
-- `render.default`. Set on submit and crawl; recrawls (now or scheduled) and the pages a
-- crawl discovers keep the crawl's.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS render text NULL;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'jobs_render_check') THEN
        ALTER TABLE jobs ADD CONSTRAINT jobs_render_check
            CHECK (render IS NULL OR render IN ('never', 'auto', 'always'));
    END IF;
END
$$;
