-- 1 when the catalog has its persistent `documents` view (written with the first snapshot), else 0.
SELECT count(*) AS n
FROM duckdb_views()
WHERE view_name = 'documents' AND NOT temporary
