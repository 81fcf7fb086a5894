-- Exact duplicates across the sources of one snapshot: (source_sha256, doc_id) of every document kept by one
-- of the snapshot's sources ($sha256s, processed with $options, in `doc_hashes`) whose doc_id is also kept by
-- a source whose content hash sorts first. Only the snapshot's own sources count, and the precedence is by
-- content, not by path or by what was ingested first: the same set of sources gives the same documents.
WITH kept AS (
    SELECT h.doc_id, h.source_sha256
    FROM doc_hashes AS h
    WHERE h.options = $options AND list_contains($sha256s, h.source_sha256)
),
ranked AS (
    SELECT k.*, row_number() OVER (PARTITION BY k.doc_id ORDER BY k.source_sha256) AS occurrence
    FROM kept AS k
)
SELECT r.source_sha256, r.doc_id
FROM ranked AS r
WHERE r.occurrence > 1
ORDER BY r.source_sha256, r.doc_id
