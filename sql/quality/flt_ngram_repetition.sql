-- Every row of `docs` plus drop_reason from Gopher's n-gram repetition rules, for documents of at least
-- $ngram_min_words words (shorter ones are too short for n-gram statistics). $rules is a non-empty list of
-- {kind, n, max_fraction} with n <= 10 (ingest skips the filter when there is no rule):
--   kind 'top': 'top_ngram' when the most frequent repeated word n-gram's characters times its count exceed
--               max_fraction of the document's word characters (Gopher: 2-grams 0.20, 3-grams 0.18, 4-grams 0.16);
--   kind 'dup': 'duplicate_ngrams' when the characters of the words covered by the repeated occurrences of n-grams
--               (every occurrence after the first) exceed max_fraction of the word characters (Gopher: 5..10-grams,
--               0.15 down to 0.10).
-- Words are whitespace-separated; characters are the words' (whitespace not counted). The first rule hit names it.
WITH words AS (  -- unnest in the projection: a lateral unnest would copy each document's row per word (slow)
    SELECT t.pos, unnest(t.ws) AS w, generate_subscripts(t.ws, 1) AS i
    FROM (
        SELECT d.position AS pos, list_filter(regexp_split_to_array(d.text, '\s+'), lambda x: x <> '') AS ws
        FROM docs AS d
    ) AS t
),
sized AS (
    SELECT w.pos, count(*) AS n_words, sum(length(w.w)) AS n_chars
    FROM words AS w
    GROUP BY w.pos
    HAVING count(*) >= $ngram_min_words
),
rules AS (
    SELECT r.kind, r.n, r.max_fraction, row_number() OVER () AS rule_order
    FROM (SELECT unnest($rules, recursive := true)) AS r
),
windowed AS (  -- each word's hash and length with those of the nine words after it (NULL past the end)
    SELECT
        w.pos, w.i,
        list_value(w.h, lead(w.h, 1) OVER ahead, lead(w.h, 2) OVER ahead, lead(w.h, 3) OVER ahead,
                   lead(w.h, 4) OVER ahead, lead(w.h, 5) OVER ahead, lead(w.h, 6) OVER ahead, lead(w.h, 7) OVER ahead,
                   lead(w.h, 8) OVER ahead, lead(w.h, 9) OVER ahead) AS next_hashes,
        list_value(w.len, lead(w.len, 1) OVER ahead, lead(w.len, 2) OVER ahead, lead(w.len, 3) OVER ahead,
                   lead(w.len, 4) OVER ahead, lead(w.len, 5) OVER ahead, lead(w.len, 6) OVER ahead,
                   lead(w.len, 7) OVER ahead, lead(w.len, 8) OVER ahead, lead(w.len, 9) OVER ahead) AS next_lens
    FROM (SELECT v.pos, v.i, hash(v.w) AS h, length(v.w) AS len FROM words AS v SEMI JOIN sized AS s ON s.pos = v.pos) AS w
    WINDOW ahead AS (PARTITION BY w.pos ORDER BY w.i)
),
grams AS (
    SELECT x.pos, r.rule_order, r.kind, r.n, x.i AS start, hash(x.next_hashes[1:r.n]) AS gram,
           list_sum(x.next_lens[1:r.n]) AS gram_chars
    FROM windowed AS x
    JOIN rules AS r ON x.next_lens[r.n] IS NOT NULL
),
top AS (
    SELECT t.pos, t.rule_order, max(t.freq * t.gram_chars) AS chars
    FROM (
        SELECT g.pos, g.rule_order, count(*) AS freq, any_value(g.gram_chars) AS gram_chars
        FROM grams AS g
        WHERE g.kind = 'top'
        GROUP BY g.pos, g.rule_order, g.gram
        HAVING count(*) > 1
    ) AS t
    GROUP BY t.pos, t.rule_order
),
repeated AS (
    SELECT g.pos, g.rule_order, any_value(g.n) AS n, list(g.start) AS starts
    FROM grams AS g
    WHERE g.kind = 'dup'
    GROUP BY g.pos, g.rule_order, g.gram
    HAVING count(*) > 1
),
covered AS (
    SELECT DISTINCT c.pos, c.rule_order, unnest(range(c.start, c.start + c.n)) AS i
    FROM (
        SELECT r.pos, r.rule_order, r.n, unnest(list_filter(r.starts, lambda s: s > list_min(r.starts))) AS start
        FROM repeated AS r
    ) AS c
),
dup AS (
    SELECT v.pos, v.rule_order, sum(length(w.w)) AS chars
    FROM covered AS v
    JOIN words AS w ON w.pos = v.pos AND w.i = v.i
    GROUP BY v.pos, v.rule_order
),
hits AS (
    SELECT h.pos, arg_min(CASE r.kind WHEN 'top' THEN 'top_ngram' ELSE 'duplicate_ngrams' END, r.rule_order) AS reason
    FROM (SELECT * FROM top UNION ALL SELECT * FROM dup) AS h
    JOIN rules AS r ON r.rule_order = h.rule_order
    JOIN sized AS s ON s.pos = h.pos
    WHERE h.chars > r.max_fraction * s.n_chars
    GROUP BY h.pos
)
SELECT d.*, h.reason AS drop_reason
FROM docs AS d
LEFT JOIN hits AS h ON h.pos = d.position
ORDER BY d.position
