-- Every row of `docs` plus drop_reason = 'wrong_language' when $languages is non-empty and the document's
-- detected `lang` is not in it.
SELECT
    d.*,
    CASE WHEN len($languages) > 0 AND NOT list_contains($languages, d.lang) THEN 'wrong_language' END AS drop_reason
FROM docs AS d
ORDER BY d.position
