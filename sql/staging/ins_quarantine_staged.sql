-- Inside a source's commit: its quarantined units (position, reason, raw), as its map step staged them in the
-- Parquet file $file, become visible in quarantine (read by DuckDB in file order, streamed); $offset is the number
-- of records before the byte range that file holds (0 for a source mapped whole), so positions count from the file's start.
INSERT INTO quarantine (source_sha256, options, position, reason, raw)
SELECT $sha256, $options, q.position + $offset, q.reason, q.raw
FROM read_parquet($file) AS q
