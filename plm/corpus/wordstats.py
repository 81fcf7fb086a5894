"""Gopher's word rules over an Arrow batch: the decisions of `sql/quality/flt_word_stats.sql`.

The SQL statement stays the specification (and the test oracle). Arrow's compute functions use
RE2, as DuckDB does, so the same patterns mean the same thing; what changes is that the words of a
batch are one flat array (no list per document) and the per-document sums are `np.add.reduceat`-
style prefix sums, about 10x faster than the SQL's lambdas over lists. Per-word classes come from
a byte table over the words' UTF-8 for ASCII words (most of them); RE2 decides only the words with
other bytes, and the per-document letter count only documents with unspaced script at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plm.corpus.ngram import as_string_array, split_words

_UNSPACED_CHAR = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]"
_ASCII_PUNCT_SYMBOL = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
"""The ASCII characters in \\p{P} or \\p{S}: every other ASCII byte (letters, digits, controls) makes a word."""
_WORD, _ALPHA, _HIGH = 1, 2, 4
_CLASSES = np.full(256, _WORD, np.uint8)
"""Per UTF-8 byte: _WORD (an ASCII character outside \\p{P} and \\p{S}), _ALPHA (an ASCII letter), _HIGH (not ASCII)."""
_CLASSES[list(_ASCII_PUNCT_SYMBOL)] = 0
_CLASSES[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] |= _ALPHA
_CLASSES[0x80:] = _HIGH


def _per_doc(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of `values` over each document's slice of the flat word array."""
    csum = np.zeros(values.size + 1, np.int64)
    np.cumsum(values, out=csum[1:])
    return csum[offsets[1:]] - csum[offsets[:-1]]


def _word_classes(tokens: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is_word, has_letter, length in characters) per token: RE2's `[^\\p{P}\\p{S}]` and `\\p{L}` match somewhere in it."""
    n = len(tokens)
    offsets = np.frombuffer(tokens.buffers()[1], np.int64)[tokens.offset : tokens.offset + n + 1]
    data = np.frombuffer(tokens.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    classes = np.bitwise_or.reduceat(_CLASSES[data], offsets[:-1])  # words are never empty
    is_word = (classes & _WORD) > 0
    has_letter = (classes & _ALPHA) > 0
    lengths = np.diff(offsets)  # bytes: characters, for ASCII
    other = np.flatnonzero(classes & _HIGH)  # words with non-ASCII characters: RE2 decides
    if other.size:
        sub = tokens.take(pa.array(other))
        lengths[other] = pc.utf8_length(sub).to_numpy()
        is_word[other] = pc.match_substring_regex(sub, r"[^\p{P}\p{S}]").to_numpy(zero_copy_only=False)
        has_letter[other] = pc.match_substring_regex(sub, r"\p{L}").to_numpy(zero_copy_only=False)
    return is_word, has_letter, lengths


def word_stats_reasons(
    texts: pa.Array | pa.ChunkedArray | Sequence[str], min_words: int, max_words: int | None,
    min_mean_word_length: float, max_mean_word_length: float, max_symbol_word_ratio: float,
    min_alpha_word_fraction: float, words: tuple[pa.Array, np.ndarray] | None = None,
) -> list[str | None]:
    """`drop_reason` of each text (`too_few_words`, `too_many_words`, `mean_word_length`, `symbol_words`,
    `alpha_words`, the first that applies) or None to keep. `words`: the (flat, offsets) of `split_words(texts)`
    when the caller has them already."""
    if words is None:
        arr, tokens, tok_offsets = split_words(texts)
    else:
        arr, (tokens, tok_offsets) = as_string_array(texts), words
    n_docs = len(arr)
    if not n_docs:
        return []
    # unspaced: unspaced-script characters are more than 30 % of the letters; none in ASCII, and with
    # none the letters need no counting (0 > 0.3 * letters is false)
    unspaced = np.zeros(n_docs, np.bool_)
    wide = np.flatnonzero(~pc.string_is_ascii(arr).to_numpy(zero_copy_only=False))
    if wide.size:
        sub = arr.take(pa.array(wide))
        n_unspaced = pc.count_substring_regex(sub, _UNSPACED_CHAR).to_numpy().astype(np.int64)
        some = np.flatnonzero(n_unspaced > 0)
        if some.size:
            n_letters = pc.count_substring_regex(sub.take(pa.array(some)), r"\p{L}").to_numpy().astype(np.int64)
            unspaced[wide[some]] = n_unspaced[some] > 0.3 * n_letters
    n_symbols = (pc.count_substring(arr, "#").to_numpy().astype(np.int64)
                 + pc.count_substring(arr, "...").to_numpy().astype(np.int64))
    if wide.size:
        n_symbols[wide] += pc.count_substring(arr.take(pa.array(wide)), "\u2026").to_numpy().astype(np.int64)
    if len(tokens):
        is_word, has_letter, lengths = _word_classes(tokens)
    else:
        is_word = has_letter = np.zeros(0, np.bool_)
        lengths = np.zeros(0, np.int64)
    n_words = _per_doc(is_word.astype(np.int64), tok_offsets)
    word_chars = _per_doc(np.where(is_word, lengths, 0), tok_offsets)
    n_alpha = _per_doc((is_word & has_letter).astype(np.int64), tok_offsets)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_len = np.where(n_words > 0, word_chars / np.maximum(n_words, 1), np.nan)
    # the SQL's CASE, in its order; NULL comparisons (no words: no mean; no limit) are false
    spaced, worded = ~unspaced, n_words > 0
    rules = [
        ("too_few_words", spaced & (n_words < min_words)),
        ("too_many_words", n_words > max_words if max_words is not None else np.zeros(n_docs, np.bool_)),
        ("mean_word_length", spaced & worded & ((mean_len < min_mean_word_length) | (mean_len > max_mean_word_length))),
        ("symbol_words", n_symbols > max_symbol_word_ratio * np.maximum(n_words, 1)),
        ("alpha_words", worded & (n_alpha < min_alpha_word_fraction * n_words)),
    ]
    reasons = np.array([None] + [name for name, _ in rules], dtype=object)
    code = np.select([hit for _, hit in rules], np.arange(1, len(rules) + 1), 0)
    return reasons[code].tolist()
