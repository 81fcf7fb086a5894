"""WordSim-353 and analogy evaluation, checked against gensim's own evaluation of the same vectors."""

import numpy as np
import pytest

from plm.eval.wordsim import analogies, spearman, wordsim
from plm.samples import resolve_sample

gensim_models = pytest.importorskip("gensim.models")


def _keyed(words, vectors):
    kv = gensim_models.KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors)
    return kv


def _wordsim_words() -> list[str]:
    lines = resolve_sample("sample:wordsim353")[0].read_text(encoding="utf-8").splitlines()
    return sorted({w.lower() for line in lines if not line.startswith("#") for w in line.split("\t")[:2]})


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 200).astype(float), rng.normal(size=200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman(x, x) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(spearman([1.0], [2.0]))


def test_wordsim_matches_gensim_and_counts_oov():
    words = _wordsim_words()[::2] + ["zzz-filler"]  # about half the test words: many pairs become OOV
    vectors = np.random.default_rng(1).normal(size=(len(words), 16)).astype(np.float32)
    result = wordsim(words, vectors)
    _, (rho, _), oov_percent = _keyed(words, vectors).evaluate_word_pairs(resolve_sample("sample:wordsim353")[0])
    assert result.spearman == pytest.approx(rho, abs=1e-6)
    assert result.pairs + result.skipped == 353 and 0 < result.skipped < 353
    assert 100 * result.skipped / 353 == pytest.approx(oov_percent)
    assert result.coverage == pytest.approx(result.pairs / 353)


def test_analogies_match_gensim_on_a_restricted_vocabulary():
    path = resolve_sample("sample:analogies")[0]
    lines = [line.split() for line in path.read_text().splitlines()[:3000] if not line.startswith(":")]
    words = sorted({w.lower() for line in lines for w in line})
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(len(words), 24)).astype(np.float32)
    index = {w: i for i, w in enumerate(words)}
    for a, b, c, d in lines[:400:3]:  # make a third of the first questions exactly true: d = b - a + c
        ia, ib, ic, id_ = (index[w.lower()] for w in (a, b, c, d))
        vectors[id_] = vectors[ib] - vectors[ia] + vectors[ic]
    ours = analogies(words, vectors, restrict_vocab=len(words) - 50)
    score, sections = _keyed(words, vectors).evaluate_word_analogies(path, restrict_vocab=len(words) - 50)
    total = sections[-1]
    assert ours.correct == len(total["correct"]) and ours.answered == len(total["correct"]) + len(total["incorrect"])
    assert ours.accuracy == pytest.approx(score) and ours.correct >= 20 and ours.accuracy < 1
    assert ours.total == sum(1 for line in path.read_text().splitlines() if not line.startswith(":"))
    assert 0 < ours.coverage < 1
