-- Documents of the latest snapshot. Lake paths are relative: connect with file_search_path = the home
-- directory (plm.corpus.ingest.connect_catalog does), so the catalog moves with its home. union_by_name: lake
-- files written by older ingest versions lack later columns (NULL there); parts in progress live in a
-- subdirectory the glob never matches.
CREATE OR REPLACE VIEW documents AS
SELECT d.* EXCLUDE (filename)
FROM read_parquet('lake/documents/*.parquet', filename = true, union_by_name = true) AS d
WHERE parse_filename(d.filename) IN (
    SELECT f.file
    FROM snapshot_files AS f
    WHERE f.snapshot_id = (SELECT s.snapshot_id FROM snapshots AS s ORDER BY s.created_at DESC LIMIT 1)
)
