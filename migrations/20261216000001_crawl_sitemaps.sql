-- Sitemap discovery for crawls: a page a crawl found in a sitemap (robots.txt `Sitemap:`
-- lines, `/sitemap.xml`, sitemap indexes, gzipped sitemaps) is a crawl page with
-- `via = 'sitemap'`, discovered from the crawl's start page at depth 1; `sitemap_url` says
-- which sitemap file listed it, so a page's discovery path can show it.
--
-- `crawls.sitemaps` already exists (20261215000001_crawls.sql); its column default stays
-- false (a row written by hand reads no sitemaps), while a request that does not say
-- otherwise asks for them.
--
-- Idempotent: IF NOT EXISTS.

ALTER TABLE crawl_pages ADD COLUMN IF NOT EXISTS sitemap_url text;

COMMENT ON COLUMN crawl_pages.sitemap_url IS
    'For via = sitemap: the sitemap file that listed the page (NULL otherwise).';
