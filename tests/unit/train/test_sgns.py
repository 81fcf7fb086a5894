"""The compiled word2vec loop: reproducible with one thread, learns co-occurrence, wide sampled windows, CBOW."""

from __future__ import annotations

import numpy as np
import pytest

from plm.objectives.skipgram import keep_probability
from plm.train.sgns import SIGMOID, _draw, _pair_update, negative_alias, split_parts, train_sgns


def _topics(seed: int = 0, docs: int = 400, length: int = 60):
    """Documents drawn from one of two disjoint word groups (0-19 or 20-39) plus shared function words 40-49."""
    rng = np.random.default_rng(seed)
    sentences = []
    for d in range(docs):
        group = np.arange(20) + (20 if d % 2 else 0)
        words = np.where(rng.random(length) < 0.7, rng.choice(group, length), rng.choice(np.arange(40, 50), length))
        sentences.append(words.astype(np.int64))
    ids = np.concatenate(sentences)
    offsets = np.r_[0, np.cumsum([len(s) for s in sentences])].astype(np.int64)
    counts = np.bincount(ids, minlength=50).astype(np.int64)
    return ids, offsets, counts


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("contexts", [0, 4])
def test_one_thread_is_bit_reproducible_and_learns_the_groups(contexts):
    ids, offsets, counts = _topics()
    keep = keep_probability(counts, 0.0)
    kw = dict(window=8, negatives=5, epochs=3, threads=1, contexts=contexts, lr=0.05)
    a, _, m = train_sgns(ids, offsets, counts, keep, 16, seed=7, **kw)
    b, _, _ = train_sgns(ids, offsets, counts, keep, 16, seed=7, **kw)
    c, _, _ = train_sgns(ids, offsets, counts, keep, 16, seed=8, **kw)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    within = np.mean([_cos(a[i], a[j]) for i in range(20) for j in range(20) if i != j])
    across = np.mean([_cos(a[i], a[j]) for i in range(20) for j in range(20, 40)])
    assert within > across + 0.3, (within, across)
    assert m["words"] == 3 * len(ids) and m["updates"] > 0 and np.isfinite(m["train_loss"])


def test_two_threads_and_cbow_train_too():
    ids, offsets, counts = _topics(1)
    keep = keep_probability(counts, 1e-2)
    for cbow in (False, True):
        vec, _, m = train_sgns(ids, offsets, counts, keep, 16, window=5, epochs=2, threads=2, cbow=cbow, lr=0.05)
        within = np.mean([_cos(vec[i], vec[j]) for i in range(20) for j in range(20) if i != j])
        across = np.mean([_cos(vec[i], vec[j]) for i in range(20) for j in range(20, 40)])
        assert within > across, (cbow, within, across)


def test_negatives_follow_count_to_the_three_quarters_and_parts():
    counts = np.array([100, 10, 1, 37])
    expected = counts**0.75 / (counts**0.75).sum()
    prob, alias = negative_alias(counts)
    implied = prob.copy()  # what the table draws: a column's own share plus what other columns give it
    np.add.at(implied, alias, 1.0 - prob)
    np.testing.assert_allclose(implied / len(counts), expected, atol=1e-12)
    state = np.array([12345], dtype=np.uint64)
    draws = np.array([_draw(prob, alias, state) for _ in range(200_000)])
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), expected, atol=4e-3)
    parts = split_parts(np.array([0, 10, 20, 30, 40]), 2)
    assert parts == [(0, 2), (2, 4)]


def test_pair_update_is_the_logistic_step_with_the_tables_sigmoid():
    rng = np.random.default_rng(0)
    for label in (1.0, 0.0):
        h, out = rng.normal(0, 0.5, 8).astype(np.float32), rng.normal(0, 0.5, 8).astype(np.float32)
        work, out0 = np.zeros(8, np.float32), out.copy()
        f = float(h @ out)
        loss = _pair_update(h, out, work, label, 0.1)
        sig = 1 / (1 + np.exp(-f))
        assert abs(SIGMOID[int((f + 6) * 1000 / 12)] - sig) < 6 * 2 / 1000 / 4  # one table step: |sigma'| <= 1/4
        g = (label - SIGMOID[int((f + 6) * 1000 / 12)]) * 0.1
        np.testing.assert_allclose(work, g * out0, rtol=1e-5)
        np.testing.assert_allclose(out, out0 + g * h, rtol=1e-5)
        assert loss == pytest.approx(-np.log(sig if label else 1 - sig), abs=0.01)
