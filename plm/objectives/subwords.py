"""fastText's character n-grams and their hashed bucket ids (Bojanowski et al. 2017), bit for bit.

A word `w` is wrapped in the boundary markers `<w>`; its subwords are every run of `minn..maxn`
characters (Unicode code points: fastText skips UTF-8 continuation bytes, so a Hangul syllable is one
character), by start position then length, the whole `<w>` included when it is short enough, lone
`<` / `>` never. Each n-gram's UTF-8 bytes are hashed with 32-bit FNV-1a as fastText's
`Dictionary::hash` does it (every byte sign-extended from `int8_t` before the xor, which matters
for non-ASCII text) and go to bucket `hash % buckets`; in the input matrix an n-gram's row is
`vocab_size + bucket`, after the words' own rows. Repeated n-grams and hash collisions are kept,
as fastText keeps them: a word's vector is the mean over the list as it is.

Korean (`subword="jamo"`, Park et al. 2018): each Hangul syllable is first decomposed into its
conjoining jamo (initial, medial, optional final: U+1100-U+11FF, exactly what Unicode NFD does to a
syllable; other characters are left alone), so n-grams run over letters rather than syllables and
학교 / 학굔 share more of them. fastText's own tool sees the same n-grams when it is given the
decomposed word (`decompose_jamo`), which is how the `.bin` of a jamo model stays faithful.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
BOW, EOW = "<", ">"
SUBWORDS = ("char", "jamo")
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
N_MEDIAL, N_FINAL = 21, 28


def decompose_jamo(word: str) -> str:
    """Every precomposed Hangul syllable of `word` as its conjoining jamo (as NFD), the rest unchanged."""
    if not any(HANGUL_FIRST <= ord(c) <= HANGUL_LAST for c in word):
        return word
    out = []
    for c in word:
        code = ord(c) - HANGUL_FIRST
        if 0 <= code <= HANGUL_LAST - HANGUL_FIRST:
            initial, rest = divmod(code, N_MEDIAL * N_FINAL)
            medial, final = divmod(rest, N_FINAL)
            out.append(chr(0x1100 + initial) + chr(0x1161 + medial) + (chr(0x11A7 + final) if final else ""))
        else:
            out.append(c)
    return "".join(out)


def subword_form(word: str, subword: str = "char") -> str:
    """The string whose characters the n-grams run over: the word itself (`char`) or its jamo (`jamo`)."""
    if subword == "char":
        return word
    if subword == "jamo":
        return decompose_jamo(word)
    raise ValueError(f"subword must be one of {SUBWORDS}, got {subword!r}")


def char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """The character n-grams of `<word>` in fastText's order (empty when maxn < minn or maxn == 0)."""
    chars = BOW + word + EOW
    size = len(chars)
    out = []
    for i in range(size):
        for n in range(1, maxn + 1):
            if i + n > size:
                break
            if n >= minn and not (n == 1 and (i == 0 or i + n == size)):
                out.append(chars[i : i + n])
    return out


def ft_hash(data: bytes) -> int:
    """fastText's 32-bit FNV-1a over bytes, each byte sign-extended (`uint32_t(int8_t(c))`) first."""
    h = FNV_OFFSET
    for byte in data:
        h ^= byte | 0xFFFFFF00 if byte & 0x80 else byte
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def ngram_buckets(word: str, minn: int, maxn: int, buckets: int, subword: str = "char") -> list[int]:
    """Bucket ids (0..buckets-1) of the word's n-grams, in `char_ngrams` order; none when buckets == 0."""
    if buckets <= 0:
        return []
    return [ft_hash(g.encode("utf-8")) % buckets for g in char_ngrams(subword_form(word, subword), minn, maxn)]


def subword_table(
    words: Sequence[str], minn: int, maxn: int, buckets: int, subword: str = "char"
) -> tuple[np.ndarray, np.ndarray]:
    """Input-matrix rows of every word as CSR: `ids` (int64) and `offsets` (len(words) + 1).

    Word i's rows are `ids[offsets[i]:offsets[i + 1]]`: first its own row i, then `len(words) + bucket`
    for each n-gram (fastText's `Dictionary::initNgrams`).
    """
    vocab_size = len(words)
    rows: list[int] = []
    offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    cache: dict[str, int] = {}  # n-grams recur across words: hash each once
    for i, word in enumerate(words):
        rows.append(i)
        if buckets > 0:
            for gram in char_ngrams(subword_form(word, subword), minn, maxn):
                h = cache.get(gram)
                if h is None:
                    h = cache[gram] = ft_hash(gram.encode("utf-8")) % buckets
                rows.append(vocab_size + h)
        offsets[i + 1] = len(rows)
    return np.asarray(rows, dtype=np.int64), offsets
