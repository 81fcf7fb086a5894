-- Inside a source's commit: its quarantined units (position, reason, raw), as its map step staged them in the
-- Parquet file $file, become visible in quarantine (read by DuckDB in file order, streamed).
INSERT INTO quarantine (source_sha256, options, position, reason, raw)
SELECT $sha256, $options, q.position, q.reason, q.raw
FROM read_parquet($file) AS q
