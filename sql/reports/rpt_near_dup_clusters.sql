-- Near-duplicate clusters of index scope $options (NearDupIndex.scope): each representative with its
-- source, the number of documents dropped as its near-duplicates and their similarity range.
SELECT
    n.representative_doc_id,
    any_value(d.source_sha256) AS representative_source_sha256,
    count(*) AS near_duplicates,
    min(n.similarity) AS min_similarity,
    max(n.similarity) AS max_similarity
FROM near_duplicates AS n
LEFT JOIN near_dup_docs AS d ON d.doc_id = n.representative_doc_id AND d.options = n.options
WHERE n.options = $options
GROUP BY n.representative_doc_id
ORDER BY near_duplicates DESC, n.representative_doc_id
