-- Per-format totals of the given sources ($sha256s) under $options: the ingest report logged to MLflow.
SELECT
    format,
    count(*) AS sources,
    CAST(sum(bytes) AS BIGINT) AS bytes,
    CAST(sum(rows_read) AS BIGINT) AS rows_read,
    CAST(sum(rows_kept) AS BIGINT) AS rows_kept,
    CAST(sum(rows_duplicate) AS BIGINT) AS rows_duplicate,
    CAST(sum(rows_filtered) AS BIGINT) AS rows_filtered,
    CAST(sum(rows_quarantined) AS BIGINT) AS rows_quarantined,
    CAST(sum(sentences) AS BIGINT) AS sentences,
    CAST(sum(chars) AS BIGINT) AS chars
FROM sources
WHERE options = $options AND list_contains($sha256s, sha256)
GROUP BY format
ORDER BY format
