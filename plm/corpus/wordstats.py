"""Gopher's word rules over an Arrow batch: the decisions of `sql/quality/flt_word_stats.sql`.

The SQL statement stays the specification (and the test oracle). Arrow's compute functions use
RE2, as DuckDB does, so the same patterns mean the same thing; what changes is that the words of a
batch are one flat array (no list per document) and the per-document sums are `np.add.reduceat`-
style prefix sums, about 10x faster than the SQL's lambdas over lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plm.corpus.ngram import split_words

_UNSPACED = r"[^\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]+"


def _per_doc(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of `values` over each document's slice of the flat word array."""
    csum = np.zeros(values.size + 1, np.int64)
    np.cumsum(values, out=csum[1:])
    return csum[offsets[1:]] - csum[offsets[:-1]]


def word_stats_reasons(
    texts: pa.Array | pa.ChunkedArray | Sequence[str], min_words: int, max_words: int | None,
    min_mean_word_length: float, max_mean_word_length: float, max_symbol_word_ratio: float,
    min_alpha_word_fraction: float,
) -> list[str | None]:
    """`drop_reason` of each text (`too_few_words`, `too_many_words`, `mean_word_length`, `symbol_words`,
    `alpha_words`, the first that applies) or None to keep."""
    arr, tokens, tok_offsets = split_words(texts)
    n_docs = len(arr)
    if not n_docs:
        return []
    n_unspaced = pc.utf8_length(pc.replace_substring_regex(arr, _UNSPACED, "")).to_numpy().astype(np.int64)
    n_letters = pc.utf8_length(pc.replace_substring_regex(arr, r"[^\p{L}]+", "")).to_numpy().astype(np.int64)
    n_symbols = (pc.count_substring(arr, "#").to_numpy().astype(np.int64)
                 + pc.count_substring(arr, "...").to_numpy().astype(np.int64)
                 + pc.count_substring(arr, "\u2026").to_numpy().astype(np.int64))
    if len(tokens):
        is_word = pc.match_substring_regex(tokens, r"[^\p{P}\p{S}]").to_numpy(zero_copy_only=False)
        has_letter = pc.match_substring_regex(tokens, r"\p{L}").to_numpy(zero_copy_only=False)
        lengths = pc.utf8_length(tokens).to_numpy().astype(np.int64)
    else:
        is_word = has_letter = np.zeros(0, np.bool_)
        lengths = np.zeros(0, np.int64)
    n_words = _per_doc(is_word.astype(np.int64), tok_offsets)
    word_chars = _per_doc(np.where(is_word, lengths, 0), tok_offsets)
    n_alpha = _per_doc((is_word & has_letter).astype(np.int64), tok_offsets)
    unspaced = n_unspaced > 0.3 * n_letters
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_len = np.where(n_words > 0, word_chars / np.maximum(n_words, 1), np.nan)
    out: list[str | None] = []
    for i in range(n_docs):  # the SQL's CASE, in its order; NULL comparisons (no words, no limit) are false
        nw, ml = int(n_words[i]), float(mean_len[i])
        if not unspaced[i] and nw < min_words:
            out.append("too_few_words")
        elif max_words is not None and nw > max_words:
            out.append("too_many_words")
        elif not unspaced[i] and nw > 0 and (ml < min_mean_word_length or ml > max_mean_word_length):
            out.append("mean_word_length")
        elif n_symbols[i] > max_symbol_word_ratio * max(nw, 1):
            out.append("symbol_words")
        elif nw > 0 and n_alpha[i] < min_alpha_word_fraction * nw:
            out.append("alpha_words")
        else:
            out.append(None)
    return out
