"""The Arrow filters of plm/corpus/quality.py decide exactly as the SQL statements they stand for."""

import random

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from plm import sql
from plm.corpus import quality
from plm.corpus.normalize import normalize_many

PIECES = ["the", "cat", "Über", "naïve", "한국어", "문장", "東京", "x", "#", "...", "…", "—", "_", "$5", "🙂", "\u0301e",
          "\U0002ebf0", "\u2174", "a.b", "!!", " ", " ", "  ", "\n", "\n", "\n\n", "\n \n", "\t", "\x0b", "\x0c", "\r",
          "\xa0", "\u2003", "\u3000", "\x85", "\u2028", "\x1f", "\x00"]


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = [rng.choice(["same line", "other line", "same line"])] if rng.random() < 0.3 else []
        out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) + "\n".join(lines * rng.randint(1, 4)))
    out += ["", " ", "\n", "a\n\na\n\na", "p one\n\np two\n \np one", "dup\ndup\ndup\nunique", "!!!!", "#" * 50,
            "\U0002ebf0" * 3, "x" * 30]
    return out


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


def _sql(con, name: str, texts: list[str], **params) -> list:
    docs = pa.table({"position": pa.array(np.arange(len(texts)), pa.int64()), "text": pa.array(texts, pa.string()),
                     "n_chars": pa.array([len(t) for t in texts], pa.int32())})
    con.register("docs", docs)
    try:
        return sql.run(con, name, **params).column("drop_reason").to_pylist()
    finally:
        con.unregister("docs")


@pytest.mark.parametrize("normalised", [False, True])
def test_text_filters_match_the_sql(con, normalised):
    texts = _texts(3, 300)
    if normalised:  # what ingest hands them
        texts = normalize_many(texts)
    arr = pa.array(texts, pa.string())
    fired = set()
    for ratio in (0.0, 0.1, 0.5, 1.0):
        want = _sql(con, "quality/flt_symbols", texts, max_symbol_ratio=ratio)
        assert quality.symbol_reasons(arr, ratio) == want, ratio
        fired.update(want)
    for frac in (0.0, 0.3, 0.5):
        want = _sql(con, "quality/flt_repeated_lines", texts, max_repeated_line_fraction=frac)
        assert quality.repeated_line_reasons(arr, frac) == want, frac
        fired.update(want)
        want = _sql(con, "quality/flt_repeated_paragraphs", texts, max_repeated_paragraph_fraction=frac)
        assert quality.repeated_paragraph_reasons(arr, frac) == want, frac
        fired.update(want)
    for lo, hi in ((0, 10), (20, 2_000_000), (5, 5)):
        want = _sql(con, "quality/flt_length", texts, min_chars=lo, max_chars=hi)
        assert quality.length_reasons(pc.utf8_length(arr), lo, hi) == want
        fired.update(want)
    assert fired >= {None, "too_many_symbols", "repeated_lines", "too_short", "too_long"}
    assert normalised or "repeated_paragraphs" in fired


def test_symbol_classes_of_every_code_point_come_from_the_sql(con):
    """Arrow's RE2 and DuckDB's disagree on some code points (newer Unicode letters): the statement decides."""
    every = "".join(chr(c) for c in range(0x80, 0x30000, 7) if not 0xD800 <= c < 0xE000)
    chunks = [every[i : i + 500] for i in range(0, len(every), 500)] + ["\U0002ebf0\U0002ebf1 ab"]
    for ratio in (0.05, 0.3, 0.6):
        assert quality.symbol_reasons(pa.array(chunks), ratio) == _sql(con, "quality/flt_symbols", chunks,
                                                                      max_symbol_ratio=ratio)
    symbols, n_chars = quality.symbol_counts(["ab\U0002ebf0", "한국어!", ""])
    assert n_chars.tolist() == [3, 4, 0] and symbols.tolist()[1:] == [1, 0]


def test_language_filter_matches_the_sql(con):
    langs = ["en", "ko", "und", "de", "en"]
    docs = pa.table({"position": pa.array(range(5), pa.int64()), "lang": pa.array(langs)})
    for keep in ([], ["en"], ["ko", "de"]):
        con.register("docs", docs)
        want = sql.run(con, "quality/flt_language", languages=keep).column("drop_reason").to_pylist()
        con.unregister("docs")
        assert quality.language_reasons(pa.array(langs), keep) == want


def test_splits_and_ids_vectorised_match_the_per_document_rules():
    import hashlib

    from plm.corpus.ingest import doc_ids, split_of, splits_of

    texts = _texts(8, 200)
    texts = [t for t in texts if "\x00" not in t and not any(0xD800 <= ord(c) < 0xE000 for c in t)]
    arr = pa.array(texts, pa.string())
    ids = doc_ids(arr)
    assert ids == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
    ids += ["0" * 16, "f" * 16, "00000000000009c4"]
    for vf, tf in ((0.02, 0.0), (0.1, 0.05), (0.0, 0.0), (0.25, 0.25)):
        assert splits_of(pa.array(ids), vf, tf) == [split_of(i, vf, tf) for i in ids]


def test_detect_lang_many_equals_detect_lang():
    from plm.corpus.normalize import detect_lang, detect_lang_many

    texts = _texts(9, 200) + ["대한민국 헌법 제1조 (Constitution)", "The Korean word 한국 appears once.",
                              "x" * 1000 + "한국어" * 10, "한" + "a" * 2000]
    texts = [t for t in texts if not any(0xD800 <= ord(c) < 0xE000 for c in t)]
    assert detect_lang_many(pa.chunked_array([pa.array(texts[:50]), pa.array(texts[50:])])) == \
        [detect_lang(t) for t in texts]
