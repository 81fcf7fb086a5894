"""Gopher's n-gram repetition filter over an Arrow batch: the decisions of `sql/quality/flt_ngram_repetition.sql`.

The SQL statement stays the specification (and the test oracle); this is the same computation
without a row per word: Arrow splits the texts (at `[\\t\\n\\f\\r ]`, RE2's `\\s` in DuckDB's `regexp_split_to_array`)
and dictionary-encodes the words of the whole batch, then numpy gives every n-gram of the batch an
exact integer id, one level (n) at a time (the rank of the pair (id of its (n-1)-gram prefix, its last
word); exact where the SQL hashes) and applies the rules. About 100x faster than the SQL here, whose
window functions and lists dominated ingest. A call with many words (`_COMPILED_WORDS`: long documents)
runs the same decisions as a numba loop per document instead, faster per word; numba is imported and its
cached code loaded only then (about a second of start-up per process), so a corpus of short documents never
starts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TOP, DUP = 0, 1
REASONS = {TOP: "top_ngram", DUP: "duplicate_ngrams"}


_GROUP_WORDS = 1 << 20
"""Documents are decided in groups of about this many words: the level arrays (a few int64 per word) stay small."""


def _dense(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, counts, first) of `keys`: dense ids (equal keys, equal ids), how often each id occurs, and
    whether each position is its key's first occurrence (a stable sort keeps equal keys in position order)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new = np.empty(keys.size, np.bool_)
    new[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    ids = np.empty(keys.size, np.int64)
    ids[order] = np.cumsum(new) - 1
    first = np.empty(keys.size, np.bool_)
    first[order] = new
    return ids, np.bincount(ids), first


_COMPILED_WORDS = 2_000_000
"""From this many words in one call (documents long enough to judge), `_decide` runs compiled (numba, loaded then):
the numpy levels cost more per word than the loop, the loop about a second of start-up per process."""


def _ranks_loop(keys: np.ndarray, out: np.ndarray) -> int:
    """Dense ids of `keys` into `out` (equal keys, equal ids); returns how many distinct keys."""
    order = np.argsort(keys)
    rank = -1
    prev = np.uint64(0)
    for j in range(order.size):
        k = keys[order[j]]
        if j == 0 or k != prev:
            rank += 1
            prev = k
        out[order[j]] = rank
    return rank + 1


def _decide_loop(offsets: np.ndarray, words: np.ndarray, lens: np.ndarray, min_words: int,
            kinds: np.ndarray, ns: np.ndarray, fracs: np.ndarray) -> np.ndarray:
    """`_decide` one document at a time, for numba (`_compiled`)."""
    ndocs = offsets.size - 1
    out = np.full(ndocs, -1, np.int64)
    max_n = ns.max()
    for d in range(ndocs):
        s, e = offsets[d], offsets[d + 1]
        m = e - s
        if m < min_words:
            continue
        w = words[s:e]
        ln = lens[s:e]
        n_chars = ln.sum()
        # grams[n - 1][i]: exact id of the n-gram starting at word i (for i <= m - n)
        grams = np.empty((max_n, m), np.int64)
        _ranks(w.astype(np.uint64), grams[0])
        unique_from = max_n + 1  # from this n on every n-gram occurs once: no rule of that n can fire
        for n in range(2, max_n + 1):
            g = m - n + 1
            if g <= 0:
                unique_from = n
                break
            keys = np.empty(g, np.uint64)
            for i in range(g):
                keys[i] = (np.uint64(grams[n - 2, i]) << np.uint64(32)) | np.uint64(w[i + n - 1])
            if _ranks(keys, grams[n - 1, :g]) == g:
                unique_from = n
                break
        for r in range(ns.size):
            n = ns[r]
            g = m - n + 1
            if g < 2 or n >= unique_from:
                continue
            ids = grams[n - 1, :g]
            count = np.zeros(g, np.int64)
            if kinds[r] == TOP:
                for i in range(g):
                    count[ids[i]] += 1
                best = 0
                for i in range(g):
                    c = count[ids[i]]
                    if c > 1:
                        count[ids[i]] = 0  # each gram once
                        chars = 0
                        for t in range(i, i + n):
                            chars += ln[t]
                        if c * chars > best:
                            best = c * chars
                hit = best > fracs[r] * n_chars
            else:
                covered = np.zeros(m, np.bool_)
                for i in range(g):  # every occurrence after the first
                    if count[ids[i]]:
                        covered[i:i + n] = True
                    count[ids[i]] += 1
                chars = 0
                for t in range(m):
                    if covered[t]:
                        chars += ln[t]
                hit = chars > fracs[r] * n_chars
            if hit:
                out[d] = r
                break
    return out


_ranks = _ranks_loop  # what `_decide_loop` calls: the compiled `_ranks_loop` once `_compiled` ran


@lru_cache(maxsize=1)
def _compiled() -> Any:
    """`_decide_loop` compiled with numba (its on-disk cache), `_ranks` with it."""
    import numba

    global _ranks
    _ranks = numba.njit(cache=True, nogil=True)(_ranks_loop)
    return numba.njit(cache=True, nogil=True)(_decide_loop)


def _decide(offsets: np.ndarray, words: np.ndarray, lens: np.ndarray, min_words: int,
            kinds: np.ndarray, ns: np.ndarray, fracs: np.ndarray) -> np.ndarray:
    """Per document: the index of the first rule it breaks, -1 for none (`_decide_group` on groups of documents)."""
    if words.size >= _COMPILED_WORDS or _compiled.cache_info().currsize:
        return _compiled()(offsets, words, lens, min_words, kinds, ns, fracs)
    out = np.full(offsets.size - 1, -1, np.int64)
    docs = np.flatnonzero(np.diff(offsets) >= max(min_words, 1))  # a document without words breaks no rule
    if not docs.size or not ns.size:
        return out
    ends = np.cumsum(np.diff(offsets)[docs])
    start = 0
    while start < docs.size:
        done = int(ends[start - 1]) if start else 0
        end = max(int(np.searchsorted(ends, done + _GROUP_WORDS, "right")), start + 1)
        out[docs[start:end]] = _decide_group(offsets, words, lens, docs[start:end], kinds, ns, fracs)
        start = end
    return out


def _decide_group(offsets: np.ndarray, words: np.ndarray, lens: np.ndarray, docs: np.ndarray,
                  kinds: np.ndarray, ns: np.ndarray, fracs: np.ndarray) -> np.ndarray:
    """For documents `docs` (each with words): the index of the first rule each breaks, -1 for none.

    Vectorised over the group, level by level: the n-grams of every document get exact ids at once (an
    n-gram's id is the dense id of (id of its (n-1)-gram prefix, its last word); level 1 numbers (document,
    word), so ids never match across documents), and each rule of that n is decided for all documents from
    those ids. A document whose n-grams are all distinct has distinct longer n-grams too, so no rule of that
    n or above can fire: it leaves the later levels."""
    sizes = np.diff(offsets)
    out = np.full(docs.size, -1, np.int64)
    # the words of those documents, as one array: doc (0..len(docs)-1) and end of its document per word
    m = sizes[docs]
    total = int(m.sum())
    if total >= 1 << 32:
        raise ValueError(f"{total} words in one batch: the n-gram ids need fewer than 2**32")
    ends_local = np.cumsum(m)
    starts_local = ends_local - m
    take = np.repeat(offsets[docs] - starts_local, m) + np.arange(total)
    w, ln = words[take], lens[take]
    doc_of = np.repeat(np.arange(docs.size), m)
    end_of = np.repeat(ends_local, m)
    csum = np.zeros(total + 1, np.int64)
    np.cumsum(ln, out=csum[1:])
    n_chars = csum[ends_local] - csum[starts_local]
    hit = np.full((docs.size, ns.size), False)
    pos = np.arange(total)  # the positions (n-gram starts) still considered, in order
    vocab = int(w.max()) + 1
    ids, counts, first = _dense(doc_of.astype(np.uint64) * np.uint64(vocab) + w.astype(np.uint64))
    word_ids = ids  # level 1: (document, word) ranks, < total
    for n in range(1, int(ns.max()) + 1):
        if n > 1:  # extend each (n-1)-gram that has a next word in its document by that word
            keep = pos + (n - 1) < end_of[pos]
            pos, ids = pos[keep], ids[keep]
            if not pos.size:
                break
            ids, counts, first = _dense(ids.astype(np.uint64) * np.uint64(total) + word_ids[pos + (n - 1)].astype(np.uint64))
        repeated = counts[ids] > 1
        for r in np.flatnonzero(ns == n).tolist():
            if kinds[r] == TOP:  # the most frequent repeated n-gram: count x its characters
                value = np.where(repeated, counts[ids] * (csum[pos + n] - csum[pos]), 0)
                best = np.zeros(docs.size, np.int64)
                np.maximum.at(best, doc_of[pos], value)
                hit[:, r] = best > fracs[r] * n_chars
            else:  # the words covered by an occurrence after the first
                later = pos[~first]
                depth = np.bincount(later, minlength=total + n) - np.bincount(later + n, minlength=total + n)
                covered = np.cumsum(depth[:total]) > 0
                cc = np.zeros(total + 1, np.int64)
                np.cumsum(np.where(covered, ln, 0), out=cc[1:])
                hit[:, r] = (cc[ends_local] - cc[starts_local]) > fracs[r] * n_chars
        # documents whose n-grams are all distinct: no rule of this n or above fires, they leave
        has_repeat = np.zeros(docs.size, np.bool_)
        has_repeat[doc_of[pos[repeated]]] = True
        if not has_repeat.all():
            keep = has_repeat[doc_of[pos]]
            pos, ids = pos[keep], ids[keep]
            if not pos.size:
                break
    any_hit = hit.any(axis=1)
    out[any_hit] = np.argmax(hit[any_hit], axis=1)
    return out


def as_string_array(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    """One contiguous large_string array."""
    arr = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def split_words(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(texts, their non-empty words flattened, word offsets per text): DuckDB's
    `list_filter(regexp_split_to_array(text, '\\s+'), w -> w <> '')`, RE2's `\\s` being `[\\t\\n\\f\\r ]`."""
    arr = as_string_array(texts)
    spaced = arr
    for ch in "\t\n\f\r":  # a plain split at ' ' is 3x faster than the regex split
        spaced = pc.replace_substring(spaced, ch, " ")
    split = pc.split_pattern(spaced, " ")
    flat = pc.list_flatten(split)
    keep = pc.not_equal(flat, "")
    parent = pc.list_parent_indices(split).filter(keep)
    flat = flat.filter(keep)
    offsets = np.zeros(len(arr) + 1, np.int64)
    if len(flat):
        np.cumsum(np.bincount(parent.to_numpy(), minlength=len(arr)), out=offsets[1:])
    return arr, flat, offsets


def select_words(flat: pa.Array, offsets: np.ndarray, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The words (flat, offsets) of the texts `rows` (increasing) of a `split_words` result."""
    if rows.size == offsets.size - 1:
        return flat, offsets
    m = np.diff(offsets)[rows]
    ends = np.cumsum(m)
    take = np.repeat(offsets[rows] - (ends - m), m) + np.arange(int(ends[-1]) if m.size else 0)
    return flat.take(pa.array(take)), np.concatenate([[0], ends]).astype(np.int64)


def ngram_repetition_reasons(texts: pa.Array | pa.ChunkedArray | Sequence[str], ngram_min_words: int,
                             rules: Sequence[dict[str, Any]],
                             words: tuple[pa.Array, np.ndarray] | None = None) -> list[str | None]:
    """`drop_reason` of each text under `rules` ({kind: top|dup, n, max_fraction}, first hit wins), None to keep.

    `words`: the (flat, offsets) of `split_words(texts)` when the caller has them already."""
    if not rules:
        return [None] * len(texts)
    arr = as_string_array(texts)
    out = np.full(len(arr), -1, np.int64)
    # only documents of at least ngram_min_words words are judged: k words need 2k - 1 characters, so shorter
    # texts are not even split, and only the words of documents long enough are encoded
    min_words = max(int(ngram_min_words), 1)
    if words is None:
        candidates = np.flatnonzero(pc.utf8_length(arr).to_numpy(zero_copy_only=False) >= 2 * min_words - 1)
        _, flat, offsets = split_words(arr.take(pa.array(candidates)) if candidates.size < len(arr) else arr)
    else:
        candidates = np.arange(len(arr))
        flat, offsets = words
    long_enough = np.flatnonzero(np.diff(offsets) >= min_words)
    flat, offsets = select_words(flat, offsets, long_enough)  # the words of those documents only
    if len(flat):
        words = pc.dictionary_encode(flat).indices.to_numpy().astype(np.int64)
        lens = pc.utf8_length(flat).to_numpy().astype(np.int64)
    else:
        words = lens = np.zeros(0, np.int64)
    kinds = np.array([TOP if r["kind"] == "top" else DUP for r in rules], np.int64)
    ns = np.array([int(r["n"]) for r in rules], np.int64)
    fracs = np.array([float(r["max_fraction"]) for r in rules], np.float64)
    if kinds.size and (ns.min() < 1 or ns.max() > 10):
        raise ValueError("n-gram rules need 1 <= n <= 10")
    if kinds.size and not ((fracs >= 0) & (fracs <= 1)).all():
        raise ValueError("n-gram rules need 0 <= max_fraction <= 1")
    out[candidates[long_enough]] = _decide(offsets, words, lens, min_words, kinds, ns, fracs)
    return [None if h < 0 else REASONS[int(kinds[h])] for h in out.tolist()]
