"""The compiled n-gram repetition filter decides exactly as `sql/quality/flt_ngram_repetition.sql`."""

import random

import duckdb
import pyarrow as pa

from plm import sql
from plm.config import CorpusSpec
from plm.corpus.ingest import _filter_param
from plm.corpus.ngram import ngram_repetition_reasons

SEPARATORS = [" ", " ", " ", "  ", "\n", "\t", "\r\n", "\f", "\u00a0", "\u2003", "\x0b"]
WORDS = ["the", "of", "a", "cat", "sat", "on", "mat", "naïve", "café", "한국어", "문장", "x", "\u0301e", "🙂", "--", "Über"]


def _corpus(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        vocab = rng.sample(WORDS, rng.randint(2, len(WORDS))) + [f"w{i}" for i in range(rng.choice([0, 5, 200]))]
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 160))]
        if words and rng.random() < 0.4:  # a repeated run: what the rules look for
            i = rng.randrange(len(words))
            words[i:i] = words[i:i + rng.randint(2, 12)] * rng.randint(1, 4)
        out.append("".join(w + rng.choice(SEPARATORS) for w in words).strip(rng.choice(["", " "])))
    return out


def test_compiled_ngram_filter_matches_the_sql_on_random_documents():
    con = duckdb.connect()
    texts = _corpus(7, 80) + ["", " ", "a " * 60, "of the " * 30]
    cfg = CorpusSpec()
    rule_sets = [_filter_param(cfg, "rules"),
                 [{"kind": "dup", "n": n, "max_fraction": 0.1} for n in (10, 5, 1)],
                 [{"kind": "top", "n": n, "max_fraction": f} for n, f in ((1, 0.3), (3, 0.05), (7, 0.01))]]
    con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
    checked = 0
    for rules in rule_sets:
        for min_words in ((1, 50) if rules is rule_sets[0] else (1,)):
            want = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=min_words, rules=rules)
            got = ngram_repetition_reasons(pa.array(texts), min_words, rules)
            assert got == want.column("drop_reason").to_pylist(), (rules, min_words)
            checked += sum(r is not None for r in got)
    assert checked > 25  # the rules fire, in both kinds


def test_arrow_word_stats_match_the_sql_on_random_documents():
    from plm.corpus.wordstats import word_stats_reasons

    rng = random.Random(11)
    extra = ["#", "...", "…", ",", ".", "123", "これは", "東京に住んでいます", "aaaaaaaaaaaaaaaaaaaaaa", "ok!", "$5", "—"]
    texts = _corpus(3, 60) + [" ".join(rng.choice(WORDS + extra) for _ in range(rng.randint(0, 30))) for _ in range(120)]
    texts += ["", "   ", ". , ; ! ?", "これは日本語の文章です。", "# # # # ## hello world", "\u2174" * 500]
    con = duckdb.connect()
    con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
    cfg = CorpusSpec()
    keys = ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length", "max_symbol_word_ratio",
            "min_alpha_word_fraction")
    fired = set()
    for params in ({k: getattr(cfg, k) for k in keys}, {**{k: getattr(cfg, k) for k in keys}, "max_words": 12, "min_words": 0}):
        want = sql.run(con, "quality/flt_word_stats", **params).column("drop_reason").to_pylist()
        got = word_stats_reasons(pa.array(texts), **params)
        assert got == want, [(t, g, w) for t, g, w in zip(texts, got, want) if g != w][:3]
        fired.update(want)
    assert fired >= {None, "too_few_words", "too_many_words", "mean_word_length", "symbol_words", "alpha_words"}


def test_vectorised_ngram_filter_matches_the_sql_on_generated_batches():
    """Batches of documents over a tiny vocabulary (n-grams repeat at every n, documents leave the later
    levels at different n) and random rule lists: the numpy levels decide exactly as the SQL."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    con = duckdb.connect()
    rule = st.fixed_dictionaries({"kind": st.sampled_from(["top", "dup"]), "n": st.integers(1, 10),
                                  "max_fraction": st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0])})
    doc = st.lists(st.sampled_from(["a", "bb", "a", "ccc", "naïve", "x"]), max_size=40).map(" ".join)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(doc, min_size=1, max_size=8), st.lists(rule, min_size=1, max_size=5), st.integers(1, 12))
    def check(texts, rules, min_words):
        con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
        want = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=min_words, rules=rules)
        assert ngram_repetition_reasons(pa.array(texts), min_words, rules) == want.column("drop_reason").to_pylist()
        con.unregister("docs")

    check()


def test_word_stats_byte_tables_match_the_sql_on_generated_batches():
    """Words of every ASCII class (letters, digits, punctuation, symbols, controls) beside non-ASCII ones and
    unspaced script: the byte tables and the RE2 fallback decide exactly as the SQL, under tight thresholds."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from plm.corpus.wordstats import word_stats_reasons

    con = duckdb.connect()
    atoms = st.sampled_from(["a", "Z", "7", "#", "...", "…", ",", "--", "$", "~", "_", "\x0b", "\x01", "\x7f", "é", "ª",
                             "²", "—", "한", "東京", "これ", "ไทย", "🙂", "\u0301", "ab", "word"])
    word = st.lists(atoms, min_size=1, max_size=4).map("".join)
    text = st.lists(st.tuples(word, st.sampled_from([" ", "  ", "\n", "\t", "\r", "\f", "\u00a0"])), max_size=14).map(
        lambda pairs: "".join(w + s for w, s in pairs))
    params = st.fixed_dictionaries({
        "min_words": st.integers(0, 6), "max_words": st.sampled_from([None, 3, 8]),
        "min_mean_word_length": st.sampled_from([0.0, 1.5, 2.0]), "max_mean_word_length": st.sampled_from([3.0, 12.0]),
        "max_symbol_word_ratio": st.sampled_from([0.0, 0.1, 0.5]), "min_alpha_word_fraction": st.sampled_from([0.0, 0.6, 1.0])})

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(text, min_size=1, max_size=10), params)
    def check(texts, kw):
        con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
        want = sql.run(con, "quality/flt_word_stats", **kw).column("drop_reason").to_pylist()
        assert word_stats_reasons(pa.array(texts), **kw) == want
        con.unregister("docs")

    check()


def test_ngram_filter_at_the_shortest_texts_with_enough_words():
    """k one-character words are 2k - 1 characters, the shortest text the filter must still judge."""
    con = duckdb.connect()
    texts = [" ".join("a" * k) for k in range(1, 9)] + [" ".join("ab" * k) for k in range(1, 9)]
    con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
    rules = [{"kind": "top", "n": 1, "max_fraction": 0.3}, {"kind": "dup", "n": 2, "max_fraction": 0.1}]
    for min_words in range(1, 9):
        want = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=min_words, rules=rules)
        got = ngram_repetition_reasons(pa.array(texts), min_words, rules)
        assert got == want.column("drop_reason").to_pylist(), min_words
        assert got[min_words - 1] is not None or min_words == 1  # the text of exactly min_words words is judged


def test_ngram_filter_in_small_groups_of_documents(monkeypatch):
    """Documents are decided in groups of about _GROUP_WORDS words (memory stays bounded on a batch of long
    documents); tiny groups, a document larger than a group included, decide as the SQL does."""
    import plm.corpus.ngram as ngram

    monkeypatch.setattr(ngram, "_GROUP_WORDS", 60)
    con = duckdb.connect()
    texts = _corpus(5, 60) + ["of the " * 100, "a b c " * 40]
    con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
    rules = _filter_param(CorpusSpec(), "rules") + [{"kind": "dup", "n": 1, "max_fraction": 0.5}]
    for min_words in (1, 30):
        want = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=min_words, rules=rules)
        got = ngram_repetition_reasons(pa.array(texts), min_words, rules)
        assert got == want.column("drop_reason").to_pylist()
        assert sum(r is not None for r in got) > 5


def test_compiled_ngram_filter_matches_the_sql(monkeypatch):
    """Calls with many words run the numba loop (`_compiled`): forced here, it decides as the SQL and as numpy."""
    import plm.corpus.ngram as ngram

    con = duckdb.connect()
    texts = _corpus(9, 80) + ["", " ", "a " * 60, "of the " * 30]
    con.register("docs", pa.table({"position": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)}))
    rule_sets = [_filter_param(CorpusSpec(), "rules"), [{"kind": "dup", "n": n, "max_fraction": 0.1} for n in (10, 5, 1)],
                 [{"kind": "top", "n": n, "max_fraction": f} for n, f in ((1, 0.3), (3, 0.05), (7, 0.01))]]
    numpy_path = [ngram_repetition_reasons(pa.array(texts), 1, rules) for rules in rule_sets]
    monkeypatch.setattr(ngram, "_COMPILED_WORDS", 0)
    for rules, by_numpy in zip(rule_sets, numpy_path):
        want = sql.run(con, "quality/flt_ngram_repetition", ngram_min_words=1, rules=rules).column("drop_reason").to_pylist()
        assert ngram_repetition_reasons(pa.array(texts), 1, rules) == want == by_numpy
    assert ngram._compiled.cache_info().currsize == 1
    ngram._compiled.cache_clear()  # later tests take the numpy path again
