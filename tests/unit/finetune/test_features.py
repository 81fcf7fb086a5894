"""The `features` strategy (cross-validated logistic regression on mean unit word vectors), the TF-IDF
baseline and the report statistics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from plm.finetune.features import TfidfBaseline, WordVectorFeatures, fit_logistic, unit_rows
from plm.finetune.report import headline, paired_gain, summarise, t_interval

from .conftest import write_word2vec


def test_fit_logistic_folds_the_scaler_into_raw_feature_weights():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 5.0, (200, 6))
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 2, 200) > 2).astype(int)
    fit = fit_logistic(X, y, 2, seed=0, grid=(0.5,))
    mean, std = X.mean(0), X.std(0)
    ref = LogisticRegression(C=0.5, max_iter=3000, random_state=0).fit((X - mean) / std, y)
    ours = fit.logits(X)
    np.testing.assert_allclose(ours[:, 1] - ours[:, 0], ref.decision_function((X - mean) / std), atol=1e-6)
    assert fit.C == 0.5


def test_cross_validation_picks_weaker_regularisation_for_a_clean_signal():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int)
    assert fit_logistic(X, y, 2, seed=0).C >= 1.0
    with pytest.raises(ValueError, match="one class"):
        fit_logistic(X, np.zeros(300, dtype=int), 2, seed=0)


def test_features_model_is_served_with_the_fitted_predictions(tmp_path):
    from plm.finetune.embeddings import EmbeddingsModel

    words = ["good", "great", "fine", "bad", "awful", "poor", "film", "plot"]
    vec = np.array([[1, 0.1], [0.9, 0.2], [0.8, 0.0], [-1, 0.1], [-0.9, 0.0], [-0.8, 0.2], [0, 1], [0.1, 1]], np.float32)
    model_dir = write_word2vec(tmp_path / "w2v", words, vec)
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(80):
        pos = i % 2 == 0
        texts.append(" ".join(rng.choice(words[:3] if pos else words[3:6], 3)) + " film plot unknownword")
        labels.append(int(pos))
    feats = WordVectorFeatures(model_dir, texts, None, max_words=50)
    result = feats.fit(list(range(60)), list(range(60, 80)), labels, {0: "neg", 1: "pos"}, True, 3, tmp_path / "out")
    assert result.metrics["test_accuracy"] == 1.0 and result.metrics["test_oov_rate"] > 0
    served = EmbeddingsModel(result.model_dir)
    pred = served.logits(texts[60:]).argmax(-1).tolist()
    assert pred == labels[60:]
    np.testing.assert_allclose(np.linalg.norm(served.model.embeddings.weight[2:].detach().numpy(), axis=1), 1, atol=1e-5)
    scratch = feats.fit(list(range(60)), list(range(60, 80)), labels, {0: "neg", 1: "pos"}, False, 3)
    assert feats.pooled(False, 3).shape == (80, 2) and not np.allclose(feats.pooled(False, 3), feats.pooled(True, 3))
    assert 0 <= scratch.metrics["test_accuracy"] <= 1


def test_tfidf_baseline_vocabulary_comes_from_the_train_rows_only():
    texts = ["great fun film", "awful dull film", "great acting", "dull plot", "zzzonlyintest great"]
    base = TfidfBaseline(texts, [0, 1, 2, 3], min_df=1)
    assert "zzzonlyintest" not in base.vectorizer.vocabulary_ and base.X.shape[0] == 5
    r = base.fit([0, 1, 2, 3], [1, 0, 1, 0], [4], [1], 2, seed=0, variant="tfidf_lr")
    assert r.metrics["C"] == 1.0 and r.metrics["test_accuracy"] == 1.0


def test_t_interval_and_paired_gains():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(t_interval([0.5])[1])
    rows = []
    for seed, (a, b) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.81, 0.72)]):
        rows += [{"strategy": "features", "init": "pretrained", "labels": 100, "seed": seed, "metric": "accuracy",
                  "value": a, "test_examples": 10, "family": "w2v"},
                 {"strategy": "features", "init": "scratch", "labels": 100, "seed": seed, "metric": "accuracy",
                  "value": b, "test_examples": 10, "family": "w2v"},
                 {"strategy": "tfidf_lr", "init": "baseline", "labels": 100, "seed": seed, "metric": "accuracy",
                  "value": b - 0.05, "test_examples": 10, "family": "tfidf"}]
    report = pd.DataFrame(rows)
    gain, lo, hi = paired_gain(report, "accuracy", {"init": "pretrained"}, {"init": "scratch"}, 100)
    assert gain == pytest.approx(0.1) and lo < gain < hi
    summary = summarise(report, "accuracy")
    assert len(summary) == 3 and (summary.seeds == 3).all()
    top = headline(report, "accuracy", {"family": "w2v", "strategy": "features"})[0]
    assert top["labels"] == 100 and top["gain_vs_baseline"] == pytest.approx(0.15)
    np.testing.assert_allclose(unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
