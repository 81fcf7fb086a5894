import duckdb
import pyarrow as pa
import pytest

from plm import sql


@pytest.fixture()
def con():
    c = duckdb.connect()
    yield c
    c.close()


def docs(ids, n_chars=None):
    n = len(ids)
    return pa.table({
        "position": pa.array(range(n), pa.int64()),
        "doc_id": pa.array(ids, pa.string()),
        "n_chars": pa.array(n_chars or [50] * n, pa.int32()),
    })


def test_flt_length_returns_every_row_with_a_reason(con):
    con.register("docs", docs(["a", "b", "c", "d"], [5, 20, 100, 101]))
    out = sql.run(con, "quality/flt_length", min_chars=20, max_chars=100)
    assert out.num_rows == 4
    assert out.column("drop_reason").to_pylist() == ["too_short", None, None, "too_long"]
    assert out.column_names[:3] == ["position", "doc_id", "n_chars"]


def test_dedup_exact_within_the_source_only(con):
    sql.execute(con, "staging/ddl_doc_hashes")
    sql.execute(con, "staging/ddl_pending_doc_hashes")
    con.execute("INSERT INTO doc_hashes VALUES ('x', 'other', 'opt1'), ('y', 'other', 'opt2'), ('z', 'self', 'opt1')")
    con.execute("INSERT INTO pending_doc_hashes VALUES ('w', 'self', 'opt1'), ('v', 'self', 'opt2')")
    con.register("docs", docs(["a", "x", "a", "y", "z", "w", "v"]))
    out = sql.run(con, "quality/dedup_exact", options="opt1", source_sha256="self")
    # 'a' repeats (the second dropped); 'w' was kept by an earlier batch of this source; 'x', kept by another
    # source, is that snapshot's business (dedup_snapshot), 'y' and 'v' are under other options, 'z' is this
    # source's own earlier commit (a re-processing): kept
    assert out.column("drop_reason").to_pylist() == [None, None, "duplicate", None, None, "duplicate", None]
    assert out.column("position").to_pylist() == list(range(7))


def test_dedup_snapshot_keeps_the_copy_of_the_first_source_by_hash_among_the_snapshot(con):
    sql.execute(con, "staging/ddl_doc_hashes")
    con.execute("INSERT INTO doc_hashes VALUES ('a', 's2', 'o'), ('a', 's1', 'o'), ('b', 's2', 'o'), ('b', 's3', 'o'),"
                " ('c', 's9', 'o'), ('c', 's3', 'o'), ('a', 's0', 'other')")
    out = sql.run(con, "quality/dedup_snapshot", options="o", sha256s=["s1", "s2", "s3"])
    # 'a' in s1 and s2: s2's goes; 'b' in s2 and s3: s3's goes; 'c' is also in s9, which is not in the snapshot;
    # s0 has other options
    assert out.to_pylist() == [{"source_sha256": "s2", "doc_id": "a"}, {"source_sha256": "s3", "doc_id": "b"}]


def texts(values, langs=None):
    n = len(values)
    return pa.table({
        "position": pa.array(range(n), pa.int64()),
        "text": pa.array(values, pa.string()),
        "lang": pa.array(langs or ["en"] * n, pa.string()),
    })


def test_flt_symbols_counts_every_script_as_letters(con):
    con.register("docs", texts([
        "plain words and digits 123",
        "대한민국 헌법 제1조 ①항",        # Hangul, digits, a circled digit: not symbols
        "## ** -- ok",                      # 6 symbols of 11 characters
        "!!!!",
        "",
    ]))
    out = sql.run(con, "quality/flt_symbols", max_symbol_ratio=0.5)
    assert out.column("drop_reason").to_pylist() == [None, None, "too_many_symbols", "too_many_symbols", None]
    assert out.column_names == ["position", "text", "lang", "drop_reason"]
    lax = sql.run(con, "quality/flt_symbols", max_symbol_ratio=0.6)
    assert lax.column("drop_reason").to_pylist() == [None, None, None, "too_many_symbols", None]


def test_flt_repeated_lines_is_the_fraction_of_repeated_lines(con):
    con.register("docs", texts([
        "one line only",
        "a\nb\na\na",        # 2 of 4 lines repeat an earlier one
        "a\n\nb\n  \nc",      # blank lines do not count
        "x\nx",               # 1 of 2
    ]))
    out = sql.run(con, "quality/flt_repeated_lines", max_repeated_line_fraction=0.4)
    assert out.column("drop_reason").to_pylist() == [None, "repeated_lines", None, "repeated_lines"]
    at_half = sql.run(con, "quality/flt_repeated_lines", max_repeated_line_fraction=0.5)
    assert at_half.column("drop_reason").to_pylist() == [None, None, None, None]


def test_flt_language_keeps_listed_languages_or_all(con):
    con.register("docs", texts(["a", "b", "c"], ["en", "ko", "ja"]))
    out = sql.run(con, "quality/flt_language", languages=["ko", "en"])
    assert out.column("drop_reason").to_pylist() == [None, None, "wrong_language"]
    everything = sql.run(con, "quality/flt_language", languages=[])
    assert everything.column("drop_reason").to_pylist() == [None, None, None]


def test_parameters_are_bound_not_formatted(con):
    con.register("docs", docs(["a"], [10]))
    out = sql.run(con, "quality/flt_length", min_chars=5, max_chars=100, unused="ignored")
    assert out.column("drop_reason").to_pylist() == [None]
    with pytest.raises(ValueError, match="escapes"):
        sql.load("../pyproject")
    with pytest.raises(FileNotFoundError):
        sql.load("quality/no_such_file")


GOPHER_WORDS = dict(min_words=3, max_words=None, min_mean_word_length=2.0, max_mean_word_length=12.0,
                    max_symbol_word_ratio=0.1, min_alpha_word_fraction=0.6)


def test_flt_word_stats_gopher_rules_are_script_aware(con):
    con.register("docs", texts([
        "a gripping , beautifully acted film .",                      # punctuation tokens are not words: kept
        "\u2174" * 10000,                                               # one byte repeated, decoded: one huge "word"
        "ok then",                                                      # two words
        "a b c d e f g h",                                              # mean word length 1
        "# # # # ## hello world and more words here for the ratio",    # '#' per word
        "123 456 789 1011 ok",                                          # one word of five has a letter
        "제1조 ① 대한민국은 민주공화국이다.",                           # Hangul words are words with letters
        "これは日本語の文章です。東京に住んでいます。",                 # no spaces: word count and length not applied
        ". , ; ! ?",                                                    # no word at all
    ]))
    out = sql.run(con, "quality/flt_word_stats", **GOPHER_WORDS)
    assert out.column("drop_reason").to_pylist() == [
        None, "too_few_words", "too_few_words", "mean_word_length", "symbol_words", "alpha_words", None, None,
        "too_few_words"]
    assert out.column_names == ["position", "text", "lang", "drop_reason"]
    capped = sql.run(con, "quality/flt_word_stats", **{**GOPHER_WORDS, "max_words": 4, "min_words": 0})
    assert capped.column("drop_reason").to_pylist()[:2] == ["too_many_words", "mean_word_length"]


def test_flt_repeated_paragraphs_is_the_fraction_of_repeated_paragraphs(con):
    con.register("docs", texts([
        "one paragraph only\nwith two lines",
        "a\n\nb\n\na\n\nc",            # 1 of 4 paragraphs repeats
        "x\n\n  \n\nx\n\nx",           # 2 of 3 (the blank block does not count)
    ]))
    out = sql.run(con, "quality/flt_repeated_paragraphs", max_repeated_paragraph_fraction=0.3)
    assert out.column("drop_reason").to_pylist() == [None, None, "repeated_paragraphs"]
    strict = sql.run(con, "quality/flt_repeated_paragraphs", max_repeated_paragraph_fraction=0.2)
    assert strict.column("drop_reason").to_pylist() == [None, "repeated_paragraphs", "repeated_paragraphs"]


def test_flt_ngram_repetition_top_and_duplicate_ngrams(con):
    distinct = " ".join(f"w{i}" for i in range(60))
    looped = " ".join(f"w{i % 12}" for i in range(60))          # a 12-word sequence five times over
    pair = " ".join(["of the"] * 12 + [f"v{i}" for i in range(40)])  # one 2-gram dominates
    con.register("docs", texts([distinct, looped, pair, "too short to be measured : the the the the"]))
    top = [{"kind": "top", "n": 2, "max_fraction": 0.2}]
    dup = [{"kind": "dup", "n": n, "max_fraction": 0.3} for n in (5, 10)]
    out = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=50, rules=top + dup)
    assert out.column("drop_reason").to_pylist() == [None, "top_ngram", "top_ngram", None]
    only_dup = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=50, rules=dup)
    assert only_dup.column("drop_reason").to_pylist() == [None, "duplicate_ngrams", "duplicate_ngrams", None]
    assert out.column_names == ["position", "text", "lang", "drop_reason"]


def test_sel_validation_moves_one_train_document_per_language_without_validation(con):
    rows = [("s1", f"{i:02d}", lang, split) for i, (lang, split) in enumerate(
        [("en", "train")] * 3 + [("ko", "train")] * 2 + [("ko", "test")] + [("ja", "train")] * 2 + [("ja", "validation")]
        + [("fr", "train")] * 2)]
    con.register("snapshot_docs", pa.table(dict(zip(("source_sha256", "doc_id", "lang", "split"), zip(*rows)))))
    out = sql.run(con, "quality/sel_validation_moves", min_docs=3).to_pylist()
    # en: 3 docs, none in validation -> its smallest train id; ko: 3 docs (one test) -> its smallest train id;
    # ja has one already; fr has only 2 documents
    assert out == [{"source_sha256": "s1", "doc_id": "00", "lang": "en"}, {"source_sha256": "s1", "doc_id": "03", "lang": "ko"}]
