-- Appends kept documents (registered relation `near_dup_docs_batch`) under the index scope $options.
INSERT INTO near_dup_docs (seq, doc_id, source_sha256, options, signature)
SELECT b.seq, b.doc_id, b.source_sha256, $options, b.signature
FROM near_dup_docs_batch AS b
