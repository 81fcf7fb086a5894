-- Documents, sentences and characters per language and split of the relation `documents`.
SELECT
    lang,
    split,
    count(*) AS documents,
    CAST(sum(len(sentences)) AS BIGINT) AS sentences,
    CAST(sum(n_chars) AS BIGINT) AS chars
FROM documents
GROUP BY lang, split
ORDER BY lang, split
