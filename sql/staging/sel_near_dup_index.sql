-- Every band hash of the index scope $options with its document's seq (loaded once when an index opens).
SELECT b.hash, b.seq
FROM near_dup_bands AS b
JOIN near_dup_docs AS d ON d.seq = b.seq
WHERE d.options = $options
