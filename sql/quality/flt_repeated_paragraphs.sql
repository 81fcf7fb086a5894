-- Every row of `docs` plus drop_reason = 'repeated_paragraphs' when the fraction of its paragraphs (blocks between
-- blank lines) that repeat an earlier paragraph of the same document exceeds $max_repeated_paragraph_fraction
-- (Gopher's dup_para_frac). A document of one paragraph never repeats.
WITH blocks AS (
    SELECT d.*, list_filter(list_transform(regexp_split_to_array(d.text, '\n\s*\n'), lambda p: trim(p)), lambda p: p <> '')
        AS paragraphs
    FROM docs AS d
)
SELECT
    b.* EXCLUDE (paragraphs),
    CASE
        WHEN len(b.paragraphs) > 1
            AND (len(b.paragraphs) - len(list_distinct(b.paragraphs))) > $max_repeated_paragraph_fraction * len(b.paragraphs)
        THEN 'repeated_paragraphs'
    END AS drop_reason
FROM blocks AS b
ORDER BY b.position
