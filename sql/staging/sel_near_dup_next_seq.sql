-- The next free document seq (seqs are unique across all index scopes).
SELECT coalesce(max(seq) + 1, 0) AS next_seq
FROM near_dup_docs
