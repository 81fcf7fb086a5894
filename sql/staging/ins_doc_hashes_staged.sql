-- Inside a source's commit: the ids of the documents it kept, read from its lake parts $files (renamed into place
-- just before), become part of the lake's dedup memory.
INSERT INTO doc_hashes (doc_id, source_sha256, options)
SELECT d.doc_id, $sha256, $options
FROM read_parquet($files) AS d
