-- Appends the ids of one source's kept documents (registered relation `kept_batch`).
INSERT INTO doc_hashes (doc_id, source_sha256, options)
SELECT k.doc_id, $sha256, $options
FROM kept_batch AS k
