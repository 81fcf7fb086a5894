-- Every row of `docs` plus drop_reason = 'repeated_lines' when the fraction of its non-empty lines that repeat
-- an earlier line of the same document exceeds $max_repeated_line_fraction (Gopher's dup_line_frac).
WITH lined AS (
    SELECT d.*, list_filter(string_split(d.text, chr(10)), lambda l: trim(l) <> '') AS lines
    FROM docs AS d
)
SELECT
    l.* EXCLUDE (lines),
    CASE
        WHEN len(l.lines) > 1
            AND (len(l.lines) - len(list_distinct(l.lines))) > $max_repeated_line_fraction * len(l.lines)
        THEN 'repeated_lines'
    END AS drop_reason
FROM lined AS l
ORDER BY l.position
