-- Signatures of candidate documents (registered relation `near_dup_query(seq)`) in scope $options,
-- except those of $source_sha256 itself (a re-processed source is not a copy of its earlier self).
SELECT d.seq, d.doc_id, d.signature
FROM near_dup_docs AS d
SEMI JOIN near_dup_query AS q ON q.seq = d.seq
WHERE d.options = $options AND d.source_sha256 <> $source_sha256
