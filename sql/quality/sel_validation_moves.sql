-- Documents moved from train to validation so that no language of a snapshot is left without validation data:
-- for each language with at least $min_docs documents in `snapshot_docs` (registered: source_sha256, doc_id, lang,
-- split of the snapshot's documents) and none in validation, its train document with the smallest doc_id.
WITH per_lang AS (
    SELECT s.lang, count(*) AS n, count(*) FILTER (WHERE s.split = 'validation') AS n_validation
    FROM snapshot_docs AS s
    GROUP BY s.lang
),
candidates AS (
    SELECT s.source_sha256, s.doc_id, s.lang, row_number() OVER (PARTITION BY s.lang ORDER BY s.doc_id) AS rank
    FROM snapshot_docs AS s
    JOIN per_lang AS p ON p.lang IS NOT DISTINCT FROM s.lang
    WHERE p.n >= $min_docs AND p.n_validation = 0 AND s.split = 'train'
)
SELECT c.source_sha256, c.doc_id, c.lang
FROM candidates AS c
WHERE c.rank = 1
ORDER BY c.lang, c.doc_id
