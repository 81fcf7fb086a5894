-- Every row of `docs` plus drop_reason = 'duplicate' when its doc_id occurs earlier in `docs` (by position)
-- or is already held by another source processed with the same options ($options) in `doc_hashes`.
WITH seen AS (
    SELECT DISTINCT doc_id
    FROM doc_hashes
    WHERE options = $options AND source_sha256 <> $source_sha256
),
ranked AS (
    SELECT d.*, row_number() OVER (PARTITION BY d.doc_id ORDER BY d.position) AS occurrence
    FROM docs AS d
)
SELECT
    r.* EXCLUDE (occurrence),
    CASE WHEN r.occurrence > 1 OR s.doc_id IS NOT NULL THEN 'duplicate' END AS drop_reason
FROM ranked AS r
LEFT JOIN seen AS s ON s.doc_id = r.doc_id
ORDER BY r.position
