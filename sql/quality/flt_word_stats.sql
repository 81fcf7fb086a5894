-- Every row of `docs` plus drop_reason from Gopher's word rules (Rae et al. 2021, as datatrove's GopherQualityFilter):
-- 'too_few_words' below $min_words or 'too_many_words' above $max_words (NULL: no limit) words, 'mean_word_length'
-- outside [$min_mean_word_length, $max_mean_word_length], 'symbol_words' when '#', '...' and '…' per word exceed
-- $max_symbol_word_ratio, 'alpha_words' when the fraction of words with a letter is below $min_alpha_word_fraction.
-- Words are whitespace-separated; tokens made only of punctuation or symbols (`,` `.` `--`) are not words here.
-- Script-aware: letters of any script count (Hangul eojeol are words with letters), and the word-count and
-- word-length rules skip text mostly written without spaces (Han, kana, Thai, ...), whose "words" are phrases.
WITH split AS (
    SELECT
        d.*,
        list_filter(regexp_split_to_array(d.text, '\s+'), lambda w: w <> '') AS tokens,
        length(regexp_replace(d.text, '[^\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]+', '', 'g'))
            AS n_unspaced,
        length(regexp_replace(d.text, '[^\p{L}]+', '', 'g')) AS n_letters,
        length(d.text) - length(replace(d.text, '#', '')) + (length(d.text) - length(replace(d.text, '...', ''))) // 3
            + length(d.text) - length(replace(d.text, '…', '')) AS n_symbols
    FROM docs AS d
),
worded AS (
    SELECT s.* EXCLUDE (tokens), list_filter(s.tokens, lambda w: regexp_matches(w, '[^\p{P}\p{S}]')) AS words
    FROM split AS s
),
measured AS (
    SELECT
        w.* EXCLUDE (words),
        len(w.words) AS n_words,
        CASE WHEN len(w.words) > 0 THEN list_sum(list_transform(w.words, lambda x: length(x))) / len(w.words) END
            AS mean_len,
        len(list_filter(w.words, lambda x: regexp_matches(x, '\p{L}'))) AS n_alpha,
        w.n_unspaced > 0.3 * w.n_letters AS unspaced
    FROM worded AS w
)
SELECT
    m.* EXCLUDE (n_unspaced, n_letters, n_symbols, n_words, mean_len, n_alpha, unspaced),
    CASE
        WHEN NOT m.unspaced AND m.n_words < $min_words THEN 'too_few_words'
        WHEN m.n_words > $max_words THEN 'too_many_words'
        WHEN NOT m.unspaced AND (m.mean_len < $min_mean_word_length OR m.mean_len > $max_mean_word_length)
            THEN 'mean_word_length'
        WHEN m.n_symbols > $max_symbol_word_ratio * greatest(m.n_words, 1) THEN 'symbol_words'
        WHEN m.n_words > 0 AND m.n_alpha < $min_alpha_word_fraction * m.n_words THEN 'alpha_words'
    END AS drop_reason
FROM measured AS m
ORDER BY m.position
