-- Appends the ids of one batch's kept documents (registered relation `kept_batch`) for the source in flight.
INSERT INTO pending_doc_hashes (doc_id, source_sha256, options)
SELECT k.doc_id, $sha256, $options
FROM kept_batch AS k
