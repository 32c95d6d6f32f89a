-- PDF documents: the fetched body of a binary document, byte for byte.
--
-- `raw_content` is text, and a PDF is not: decoding it as UTF-8 would replace every byte
-- that is not valid UTF-8 and drop NULs, so the document could not be read again. The
-- scrape worker stores such a body in `raw_bytes` (and an empty `raw_content`), keeps the
-- response's `content_type`, and the extraction worker reads the PDF from `raw_bytes`.
-- Pages stay in `raw_content`; `raw_bytes` is NULL for them.
--
-- Idempotent: ADD COLUMN IF NOT EXISTS, COMMENT.

ALTER TABLE sources ADD COLUMN IF NOT EXISTS raw_bytes bytea;

COMMENT ON COLUMN sources.raw_bytes IS
    'The fetched body of a binary document (a PDF), byte for byte; NULL for text pages, whose body is raw_content';
