-- Appends cluster rows (registered relation `near_duplicates_batch`) under the index scope $options.
INSERT INTO near_duplicates (doc_id, representative_doc_id, similarity, source_sha256, options)
SELECT b.doc_id, b.representative_doc_id, b.similarity, b.source_sha256, $options
FROM near_duplicates_batch AS b
