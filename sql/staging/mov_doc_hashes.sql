-- Inside the source's commit: its pending document ids become part of the lake's dedup memory.
INSERT INTO doc_hashes (doc_id, source_sha256, options)
SELECT p.doc_id, p.source_sha256, p.options
FROM pending_doc_hashes AS p
WHERE p.source_sha256 = $sha256 AND p.options = $options
