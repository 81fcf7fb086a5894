-- The DDL of the `documents` view (documents of the latest snapshot) over the lake at $lake_glob, an absolute path:
-- a catalog opened from any directory, by plm or plain DuckDB, reads its documents. DuckDB takes no parameters in
-- DDL, so this statement builds it, quoting the path as a SQL string literal; $temporary makes it a TEMP view, which
-- plm.corpus.ingest.connect_catalog creates for the home it opens (read-only too), so a moved or copied home reads
-- its own lake. union_by_name: lake files written by older ingest versions lack later columns (NULL there); parts
-- in progress live in a subdirectory the glob never matches.
SELECT
    'CREATE OR REPLACE ' || CASE WHEN $temporary THEN 'TEMP ' ELSE '' END || 'VIEW documents AS '
    || 'SELECT d.* EXCLUDE (filename) '
    || 'FROM read_parquet(''' || replace($lake_glob, '''', '''''') || ''', filename = true, union_by_name = true) AS d '
    || 'WHERE parse_filename(d.filename) IN ('
    || 'SELECT f.file FROM snapshot_files AS f WHERE f.snapshot_id = '
    || '(SELECT s.snapshot_id FROM snapshots AS s ORDER BY s.created_at DESC LIMIT 1))' AS ddl
