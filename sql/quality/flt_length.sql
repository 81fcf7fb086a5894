-- Every row of `docs` plus drop_reason: 'too_short' below $min_chars, 'too_long' above $max_chars, NULL = keep.
SELECT
    d.*,
    CASE
        WHEN d.n_chars < $min_chars THEN 'too_short'
        WHEN d.n_chars > $max_chars THEN 'too_long'
    END AS drop_reason
FROM docs AS d
ORDER BY d.position
