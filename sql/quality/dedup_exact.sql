-- Every row of `docs` plus drop_reason = 'duplicate' when its doc_id occurs earlier in `docs` (by position) or
-- was kept by an earlier batch of this source ($source_sha256, $options) in `pending_doc_hashes`. Dedup here
-- never looks at other sources: what a source turns into depends on its own content and the options only.
-- Duplicates across the sources of one snapshot are dropped when the snapshot is assembled
-- (`quality/dedup_snapshot`), so what else the home ingested before never changes a corpus.
WITH hits AS (
    SELECT DISTINCT p.doc_id
    FROM pending_doc_hashes AS p
    WHERE p.options = $options AND p.source_sha256 = $source_sha256
        AND p.doc_id IN (SELECT d.doc_id FROM docs AS d)
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
