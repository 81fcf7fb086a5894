"""Near-duplicate detection on real text: MinHash accuracy, LSH parameters, the persistent index."""

import bz2
import hashlib
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache

import duckdb
import numpy as np
import pytest

from plm.config import CorpusSpec, SpecError
from plm.corpus.dedup import (
    _PUNCT,
    MinHashParams,
    NearDupIndex,
    estimated_jaccard,
    exact_jaccard,
    lsh_params,
    minhash_signatures,
)
from plm.samples import SampleNotFound, resolve_sample

CFG = CorpusSpec(near_dup=True)  # threshold 0.8, 128 permutations, 5-word shingles


@lru_cache(maxsize=1)
def lee() -> list[str]:
    try:
        path = resolve_sample("sample:lee")[0]
    except SampleNotFound:
        pytest.skip("gensim (samples extra) is not installed")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@lru_cache(maxsize=1)
def enwiki(limit: int = 60) -> list[str]:
    """Raw wikitext of the first articles of the enwiki excerpt (markup is text as far as shingles go)."""
    try:
        path = resolve_sample("sample:enwiki")[0]
    except SampleNotFound:
        pytest.skip("gensim (samples extra) is not installed")
    texts: list[str] = []
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if elem.tag.endswith("}text") and elem.text and len(elem.text) > 500:
                texts.append(elem.text)
                if len(texts) == limit:
                    break
            elem.clear()
    return texts


def edit_words(text: str, n: int, rng: random.Random) -> str:
    words = text.split()
    for _ in range(n):
        words[rng.randrange(len(words))] = f"edited{rng.randrange(10**6)}"
    return " ".join(words)


def python_jaccard(a: str, b: str, n: int = 5) -> float:
    """The shingle definition written plainly: lower-cased words, punctuation trimmed, word n-grams."""

    def shingles(text: str) -> set[tuple[str, ...]]:
        words = [w for w in (w.strip(_PUNCT).lower() for w in text.split()) if w]
        if len(words) < n:
            return {tuple(words)} if words else set()
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_shingle_hashing_matches_the_plain_definition():
    rng = random.Random(3)
    docs = lee()[:60]
    pairs = [(d, edit_words(d, rng.randrange(1, 8), rng)) for d in docs] + [("Short text, here.", "short TEXT here")]
    for a, b in pairs:
        assert exact_jaccard(a, b) == pytest.approx(python_jaccard(a, b), abs=1e-12)


def test_compiled_signatures_are_the_min_of_the_permutations():
    from plm.corpus.dedup import _C, _signatures_from_hashes

    rng = np.random.default_rng(5)
    counts = rng.integers(0, 50, 40)
    counts[[3, 7]] = [0, 3000]
    hashes = rng.integers(0, 2**63, counts.sum(), dtype=np.uint64) * np.uint64(2)
    sig = _signatures_from_hashes(hashes, counts, 64)
    x = (hashes >> np.uint64(32)).astype(np.uint64)
    a, b = _C["perm_a"][:64].astype(np.uint64), _C["perm_b"][:64].astype(np.uint64)
    start = 0
    for d, c in enumerate(counts):  # the definition: min over shingles of (a*x + b) mod 2^32, per slot
        want = ((x[start:start + c, None] * a + b) & np.uint64(0xFFFFFFFF)).min(axis=0) if c else np.full(64, 2**32 - 1)
        assert np.array_equal(sig[d], want.astype(np.uint32)), d
        start += c


def test_a_batch_with_fewer_words_than_a_shingle_is_hashed():
    # two to four words in the whole batch used to fail to broadcast (shingle of 5)
    for texts in (["a b"], ["one two three four"], ["a", "b c"]):
        sigs, _ = minhash_signatures(texts, num_perm=16, shingle=5)
        assert sigs.shape == (len(texts), 16)
    assert exact_jaccard("a b c", "a b c") == 1.0 and exact_jaccard("a b", "a c") == 0.0


def test_signatures_are_deterministic_and_independent_of_the_batch():
    docs = lee()[:40]
    sigs, counts = minhash_signatures(docs)
    alone, _ = minhash_signatures([docs[7]])
    assert sigs.shape == (40, 128) and sigs.dtype == np.uint32 and (counts > 0).all()
    np.testing.assert_array_equal(alone[0], sigs[7])
    np.testing.assert_array_equal(minhash_signatures(docs[::-1])[0][::-1], sigs)
    # Another process (another hash seed for Python's str hash) computes the same bytes.
    code = (
        "import hashlib, sys; from plm.corpus.dedup import minhash_signatures;"
        "docs = sys.stdin.read().split('\\x1e');"
        "print(hashlib.sha256(minhash_signatures(docs)[0].tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], input="\x1e".join(docs), capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True)
    assert out.stdout.strip() == hashlib.sha256(sigs.tobytes()).hexdigest()


def test_jaccard_estimate_error_is_the_minhash_error():
    rng = random.Random(1)
    a = lee()
    b = [edit_words(d, rng.randrange(0, max(1, len(d.split()) // 4)), rng) for d in a]
    sa, _ = minhash_signatures(a, num_perm=128)
    sb, _ = minhash_signatures(b, num_perm=128)
    est = estimated_jaccard(sa, sb)
    exact = np.array([exact_jaccard(x, y) for x, y in zip(a, b)])
    assert exact.min() < 0.4 and exact.max() == 1.0  # a spread of similarities
    sd = np.sqrt(exact * (1 - exact) / 128)  # binomial error of a 128-slot estimate
    z = (est - exact)[sd > 0] / sd[sd > 0]
    assert 0.8 < z.std() < 1.2
    assert np.abs(z).max() < 4.5
    assert abs((est - exact).mean()) < 4 * np.sqrt((sd**2).mean() / len(sd))  # unbiased
    np.testing.assert_array_equal(est[exact == 1.0], 1.0)


def test_lsh_parameters_match_datasketch_and_catch_pairs_at_the_threshold():
    lsh = pytest.importorskip("datasketch.lsh")
    for threshold, num_perm in [(0.8, 128), (0.5, 64), (0.9, 32)]:
        bands, rows = lsh_params(threshold, num_perm)
        assert bands * rows <= num_perm
        assert (bands, rows) == lsh._optimal_param(threshold, num_perm, 0.1, 0.9)
        assert 1 - (1 - threshold**rows) ** bands > 0.75  # most pairs at the threshold become candidates
    assert MinHashParams.from_spec(CorpusSpec(minhash_num_perm=64, minhash_bands=8)).rows == 8
    with pytest.raises(SpecError, match="corpus.minhash_bands"):
        MinHashParams.from_spec(CorpusSpec(minhash_num_perm=64, minhash_bands=65))


def test_edited_copies_are_caught_and_unrelated_documents_are_not():
    rng = random.Random(7)
    originals = lee() + enwiki()
    ids = [f"orig{i}" for i in range(len(originals))]
    index = NearDupIndex.open(duckdb.connect(), CFG, options="o")
    reps = index.check_and_add(ids, originals, source_sha256="s1")
    # The Lee corpus holds a few reposted stories: every pair flagged is a true near-duplicate.
    flagged = [(i, ids.index(r)) for i, r in enumerate(reps) if r is not None]
    assert 0 < len(flagged) <= 12
    for i, j in flagged:
        assert j < i and exact_jaccard(originals[i], originals[j]) >= 0.75
    # Copies of kept documents with one or two words changed (exact Jaccard >= 0.85) are all caught.
    kept = [i for i, r in enumerate(reps) if r is None and len(originals[i].split()) >= 150]
    chosen = rng.sample(kept, 40)
    copies = [edit_words(originals[i], rng.randrange(1, 3), rng) for i in chosen]
    assert min(exact_jaccard(originals[i], c) for i, c in zip(chosen, copies)) >= 0.85
    found = index.check_and_add([f"copy{k}" for k in range(len(copies))], copies, source_sha256="s2")
    assert found == [ids[i] for i in chosen]
    # Heavily rewritten versions (exact Jaccard < 0.5) are different documents.
    rewritten = [edit_words(originals[i], len(originals[i].split()) // 4, rng) for i in chosen[:20]]
    assert max(exact_jaccard(originals[i], c) for i, c in zip(chosen, rewritten)) < 0.5
    assert index.check_and_add([f"re{k}" for k in range(20)], rewritten, source_sha256="s3") == [None] * 20


def test_duplicates_earlier_in_the_same_batch_keep_the_first():
    rng = random.Random(2)
    a, b = lee()[0], lee()[1]
    texts = [a, edit_words(a, 1, rng), b, edit_words(a, 2, rng), edit_words(b, 1, rng)]
    index = NearDupIndex.open(duckdb.connect(), CFG)
    assert index.check_and_add(list("ABCDE"), texts) == [None, "A", None, "A", "C"]
    assert len(index) == 2 and index.stats["near_duplicates"] == 3


def test_documents_without_words_are_kept_and_not_indexed():
    index = NearDupIndex.open(duckdb.connect(), CFG)
    assert index.check_and_add(["p1", "p2"], ["!!! --- ...", "!!! --- ..."]) == [None, None]
    assert len(index) == 0 and index.stats["no_shingles"] == 2


def _ingest_batch(con, index, ids, texts, source):
    reps = index.check_and_add(ids, texts, source_sha256=source)
    con.begin()
    index.commit()
    con.commit()
    return reps


def test_index_persists_across_sessions_and_scopes(tmp_path):
    rng = random.Random(5)
    docs = lee()[:30]
    db = str(tmp_path / "catalog.duckdb")
    con = duckdb.connect(db)
    first = NearDupIndex.open(con, CFG, options="opts1")
    assert _ingest_batch(con, first, [f"d{i}" for i in range(30)], docs, "src1") == [None] * 30
    # A batch whose transaction is rolled back leaves nothing behind.
    assert first.check_and_add(["gone"], [lee()[100]], source_sha256="src9") == [None]
    first.rollback()
    con.close()

    con = duckdb.connect(db)
    second = NearDupIndex.open(con, CFG, options="opts1")
    copies = [edit_words(docs[i], 1, rng) for i in (3, 17)]
    reps = _ingest_batch(con, second, ["c3", "c17", "new"], [*copies, lee()[100]], "src2")
    assert reps == ["d3", "d17", None]
    clusters = con.execute(
        "SELECT doc_id, representative_doc_id, similarity >= 0.8, source_sha256 FROM near_duplicates ORDER BY doc_id"
    ).fetchall()
    assert clusters == [("c17", "d17", True, "src2"), ("c3", "d3", True, "src2")]
    assert con.execute("SELECT count(*) FROM near_dup_docs").fetchall() == [(31,)]
    # Other processing options or MinHash settings have their own index.
    assert NearDupIndex.open(con, CFG, options="opts2").check_and_add(["x"], copies[:1]) == [None]
    other = CFG.model_copy(update={"minhash_num_perm": 64})
    assert NearDupIndex.open(con, other, options="opts1").check_and_add(["x"], copies[:1]) == [None]
    con.close()


def test_reprocessing_a_source_does_not_match_itself_and_forget_removes_it():
    con = duckdb.connect()
    docs = lee()[:20]
    ids = [f"d{i}" for i in range(20)]
    index = NearDupIndex.open(con, CFG, options="o")
    _ingest_batch(con, index, ids, docs, "src1")
    again = NearDupIndex.open(con, CFG, options="o")
    assert again.check_and_add(ids, docs, source_sha256="src1") == [None] * 20
    again.rollback()
    assert again.check_and_add(["other"], [docs[4] + " more"], source_sha256="src2") == ["d4"]
    again.rollback()
    con.begin()
    again.forget("src1")
    con.commit()
    counts = con.execute("SELECT (SELECT count(*) FROM near_dup_docs), (SELECT count(*) FROM near_dup_bands)").fetchall()
    assert counts == [(0, 0)]
    assert again.check_and_add(["other"], [docs[4] + " more"], source_sha256="src2") == [None]


def test_arrow_input_and_korean_text():
    pa = pytest.importorskip("pyarrow")
    try:
        bill = resolve_sample("sample:ko-bills")[0].read_text(encoding="utf-8")
    except SampleNotFound:
        pytest.skip("konlpy (samples extra) is not installed")
    words = bill.split()
    copy = " ".join(words[:10] + ["수정된"] + words[11:])
    index = NearDupIndex.open(duckdb.connect(), CFG)
    reps = index.check_and_add(["ko1", "ko2", "en"], pa.chunked_array([[bill, copy], [lee()[0]]]))
    assert reps == [None, "ko1", None]
