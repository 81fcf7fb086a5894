"""The per-document filters of `sql/quality/flt_*.sql`, decided over a whole Arrow batch without DuckDB.

The SQL statements stay the specification and the test oracle (tests/unit/corpus/test_quality.py holds these
functions to them). Running a statement costs a copy of the batch's text into DuckDB and back plus a sort; here
the batch's UTF-8 bytes are read in place with numpy and Arrow compute, so a filter costs a few passes over the
bytes. Each `*_reasons` function returns the statement's `drop_reason` per document (None = keep), in order.

Where the SQL relies on RE2's Unicode tables (`\\p{L}`, `\\p{M}`, `\\p{N}`), characters outside ASCII are
classified by the SQL statement itself, once per process and character (Arrow's RE2 carries other Unicode
tables: 622 code points, e.g. CJK extension I, are letters there and symbols in DuckDB).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TRIM = " \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
"""What DuckDB's one-argument `trim()` removes (the space separators, Zs): no tab, no line break."""
_ASCII_SYMBOL = np.array([not (chr(c).isalnum() or chr(c) in "\t\n\f\r ") for c in range(128)] + [False] * 128,
                         np.uint8)
"""Per byte: an ASCII character of `[^\\p{L}\\p{M}\\p{N}\\s]` (RE2's `\\s` is [\\t\\n\\f\\r ]); 0 for bytes >= 0x80."""
_SYMBOL_TABLE = np.full(0x110000, -1, np.int8)
"""Per code point beyond ASCII: 1 when flt_symbols.sql counts it as a symbol, 0 when not, -1 not asked yet."""


def _utf8(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(array, offsets from 0 as int64, UTF-8 bytes) of the texts, without copying the bytes of an Arrow array."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    arr = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    if arr.type == pa.large_string():
        width = np.int64
    else:
        arr = arr.cast(pa.string())
        width = np.int32
    n = len(arr)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return arr, offsets - offsets[0], data


def _per_doc(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many of `flags` (one per byte, mostly 0) are set in each document's byte range."""
    return np.diff(np.searchsorted(np.flatnonzero(flags), offsets))


def _code_points(data: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """The code point of each multi-byte UTF-8 sequence starting at `leads` (valid UTF-8: Arrow strings are)."""
    last = len(data) - 1
    b0 = data[leads].astype(np.int32)

    def cont(k: int) -> np.ndarray:
        return data[np.minimum(leads + k, last)].astype(np.int32) & 0x3F

    c1, c2, c3 = cont(1), cont(2), cont(3)
    two = ((b0 & 0x1F) << 6) | c1
    three = ((b0 & 0x0F) << 12) | (c1 << 6) | c2
    four = ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3
    return np.where(b0 < 0xE0, two, np.where(b0 < 0xF0, three, four))


def _symbol_flags(code_points: np.ndarray) -> np.ndarray:
    """1 where flt_symbols.sql counts the (non-ASCII) code point as a symbol, asking the statement for new ones."""
    flags = _SYMBOL_TABLE[code_points]
    unknown = np.flatnonzero(flags < 0)
    if unknown.size:
        import duckdb

        from plm import sql

        new = np.unique(code_points[unknown])
        chars = pa.array([chr(c) for c in new.tolist()], pa.string())
        con = duckdb.connect()
        try:  # a one-character document is dropped at ratio 0.5 exactly when its character is a symbol
            con.register("docs", pa.table({"position": pa.array(np.arange(len(new)), pa.int64()), "text": chars}))
            dropped = sql.run(con, "quality/flt_symbols", max_symbol_ratio=0.5).column("drop_reason")
        finally:
            con.close()
        _SYMBOL_TABLE[new] = pc.is_valid(dropped).to_numpy(zero_copy_only=False)
        flags = _SYMBOL_TABLE[code_points]
    return flags.astype(np.uint8)


def _codes(reasons: list[tuple[str, np.ndarray]], n: int) -> list[str | None]:
    """The first reason whose mask is set, per document, else None."""
    if not reasons:
        return [None] * n
    names = np.array([None] + [name for name, _ in reasons], dtype=object)
    return names[np.select([hit for _, hit in reasons], np.arange(1, len(reasons) + 1), 0)].tolist()


def length_reasons(n_chars: pa.Array | pa.ChunkedArray | np.ndarray, min_chars: int, max_chars: int) -> list[str | None]:
    """flt_length.sql: `too_short` below `min_chars` characters, `too_long` above `max_chars`."""
    n = np.asarray(n_chars, np.int64)
    return _codes([("too_short", n < min_chars), ("too_long", n > max_chars)], len(n))


def symbol_counts(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(symbols, characters) per text as flt_symbols.sql counts them."""
    _, offsets, data = _utf8(texts)
    flags = _ASCII_SYMBOL[data]
    leads = np.flatnonzero(data >= 0xC0)  # the first byte of each non-ASCII character
    if leads.size:
        flags[leads] = _symbol_flags(_code_points(data, leads))
    n_chars = np.diff(offsets) - _per_doc((data & 0xC0) == 0x80, offsets)  # continuation bytes are no characters
    return _per_doc(flags, offsets), n_chars


def symbol_reasons(texts: pa.Array | pa.ChunkedArray | Sequence[str], max_symbol_ratio: float) -> list[str | None]:
    """flt_symbols.sql: `too_many_symbols` when characters that are not letters, marks, digits or whitespace are
    more than `max_symbol_ratio` of the text."""
    symbols, n_all = symbol_counts(texts)
    return _codes([("too_many_symbols", (n_all > 0) & (symbols > max_symbol_ratio * n_all))], len(n_all))


def _repeats(parts: pa.ListArray, owners: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """(parts, distinct parts) per document of the kept `parts` (flat strings) with their documents `owners`."""
    n_parts = np.bincount(owners, minlength=n_docs)
    if not len(parts):
        return n_parts, n_parts
    encoded = pc.dictionary_encode(parts)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    again = np.bincount(codes)[codes] > 1  # only a part whose string occurs twice in the batch can repeat
    keys, copies = np.unique(owners[again].astype(np.int64) * len(encoded.dictionary) + codes[again], return_counts=True)
    repeats = np.bincount(keys // len(encoded.dictionary), copies - 1, minlength=n_docs).astype(np.int64)
    return n_parts, n_parts - repeats


def _repeated(texts: pa.Array | pa.ChunkedArray | Sequence[str], candidates: np.ndarray, split: Callable[[pa.Array], pa.ListArray],
              trimmed: bool, max_fraction: float, reason: str) -> list[str | None]:
    """`reason` for the `candidates` whose split parts (blank ones dropped; `trimmed`: compared trimmed) repeat more
    than `max_fraction` of their parts; every other text has at most one part and is kept."""
    arr, _, _ = _utf8(texts)
    hit = np.zeros(len(arr), np.bool_)
    if candidates.size:
        pieces = split(arr.take(pa.array(candidates)))
        flat = pieces.flatten()
        owners = pc.list_parent_indices(pieces).to_numpy(zero_copy_only=False)
        stripped = pc.utf8_trim(flat, characters=TRIM)
        keep = pc.not_equal(stripped, "")
        parts = (stripped if trimmed else flat).filter(keep)
        n, distinct = _repeats(parts, owners[keep.to_numpy(zero_copy_only=False)], len(candidates))
        hit[candidates] = (n > 1) & ((n - distinct) > max_fraction * n)
    return _codes([(reason, hit)], len(arr))


def repeated_line_reasons(texts: pa.Array | pa.ChunkedArray | Sequence[str], max_repeated_line_fraction: float) -> list[str | None]:
    """flt_repeated_lines.sql: `repeated_lines` when more than the fraction of its non-blank lines repeat an earlier one."""
    arr, _, _ = _utf8(texts)
    multi = np.flatnonzero(pc.match_substring(arr, "\n").to_numpy(zero_copy_only=False))
    return _repeated(arr, multi, lambda a: pc.split_pattern(a, "\n"), False, max_repeated_line_fraction,
                     "repeated_lines")


_PARAGRAPH_BREAK = r"\n\s*\n"


def repeated_paragraph_reasons(texts: pa.Array | pa.ChunkedArray | Sequence[str],
                               max_repeated_paragraph_fraction: float) -> list[str | None]:
    """flt_repeated_paragraphs.sql: `repeated_paragraphs` when more than the fraction of its paragraphs (trimmed, blank
    ones dropped) repeat an earlier one."""
    arr, _, _ = _utf8(texts)
    multi = np.flatnonzero(pc.match_substring_regex(arr, _PARAGRAPH_BREAK).to_numpy(zero_copy_only=False))
    return _repeated(arr, multi, lambda a: pc.split_pattern_regex(a, _PARAGRAPH_BREAK), True,
                     max_repeated_paragraph_fraction, "repeated_paragraphs")


def language_reasons(langs: pa.Array | pa.ChunkedArray | Sequence[str], languages: Sequence[str]) -> list[str | None]:
    """flt_language.sql: `wrong_language` when `languages` is not empty and does not hold the document's language."""
    n = len(langs)
    if not languages:
        return [None] * n
    listed = pc.is_in(pa.array(langs) if not isinstance(langs, pa.Array | pa.ChunkedArray) else langs,
                      value_set=pa.array(list(languages), pa.string()))
    return _codes([("wrong_language", ~listed.to_numpy(zero_copy_only=False))], n)


COMPILED: dict[str, Callable[..., list[str | None]]] = {
    "quality/flt_length": lambda docs, **kw: length_reasons(docs.column("n_chars"), **kw),
    "quality/flt_symbols": lambda docs, **kw: symbol_reasons(docs.column("text"), **kw),
    "quality/flt_repeated_lines": lambda docs, **kw: repeated_line_reasons(docs.column("text"), **kw),
    "quality/flt_repeated_paragraphs": lambda docs, **kw: repeated_paragraph_reasons(docs.column("text"), **kw),
    "quality/flt_language": lambda docs, **kw: language_reasons(docs.column("lang"), **kw),
}
"""SQL statement -> its decisions over a `docs` table (the statement's parameters as keywords)."""

