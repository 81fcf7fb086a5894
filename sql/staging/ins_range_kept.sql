-- The ids one range's map step kept, read from its staged parts $files, join those of the ranges before it.
INSERT INTO range_kept (doc_id)
SELECT d.doc_id
FROM read_parquet($files) AS d
