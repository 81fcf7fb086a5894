-- Every row of `docs` plus drop_reason = 'duplicate' when its doc_id occurs earlier in `docs` (by position),
-- is already kept by another source under the same options ($options) in `doc_hashes` (earlier sources and
-- earlier ingests), or by an earlier batch of this source ($source_sha256) in `pending_doc_hashes`. The
-- source's own committed rows are ignored, so re-processing a source never finds itself.
WITH seen AS (
    SELECT h.doc_id
    FROM doc_hashes AS h
    WHERE h.options = $options AND h.source_sha256 <> $source_sha256
    UNION ALL
    SELECT p.doc_id
    FROM pending_doc_hashes AS p
    WHERE p.options = $options AND p.source_sha256 = $source_sha256
),
hits AS (
    SELECT DISTINCT s.doc_id
    FROM seen AS s
    WHERE s.doc_id IN (SELECT d.doc_id FROM docs AS d)
),
ranked AS (
    SELECT d.*, row_number() OVER (PARTITION BY d.doc_id ORDER BY d.position) AS occurrence
    FROM docs AS d
)
SELECT
    r.* EXCLUDE (occurrence),
    CASE WHEN r.occurrence > 1 OR s.doc_id IS NOT NULL THEN 'duplicate' END AS drop_reason
FROM ranked AS r
LEFT JOIN hits AS s ON s.doc_id = r.doc_id
ORDER BY r.position
