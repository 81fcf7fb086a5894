"""Feature-based transfer with logistic regression: the `features` strategy and the TF-IDF baseline.

`features`: a text is the mean of the unit-length word2vec vectors of its known words (pairs:
[u, v, |u - v|, u * v]); an L2 logistic regression, its strength chosen by stratified k-fold
cross-validation on the labelled subset alone, is fitted on standardised features. The fitted model
is written as the `embeddings` classifier with a linear head (the scaler folded into its weights),
so it is served by the same predictor. `scratch` is the same with a seeded random table.

`baseline`: the supervised-only yardstick, TF-IDF of word 1-2 grams (sublinear tf; vocabulary and
idf fitted once on the train split's texts, never the test split) + the same cross-validated
logistic regression. Every setting of a transfer report runs on the same subsets.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from plm.finetune.engine import FinetuneResult, accuracy_and_macro_f1
from plm.finetune.heads import EmbeddingBagClassifier

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""Inverse regularisation strengths tried by cross-validation (sklearn's `C`)."""
CV_MAX = 2000
"""Above this many labelled examples, C is chosen by cross-validation on a seeded sample of this many, then refit on all."""
SPARSE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
"""TF-IDF rows are unit length and very many: a coarser grid over the strengths that win there (3 folds)."""


@dataclass
class LinearFit:
    coef: np.ndarray  # (K, D) logits = X @ coef.T + intercept, on raw (unscaled) features
    intercept: np.ndarray  # (K,)
    C: float

    def logits(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self.coef.T) + self.intercept


def fit_logistic(X: Any, y: Sequence[int], num_labels: int, seed: int, scale: bool = True,
                 grid: Sequence[float] = C_GRID, folds: int = 5) -> LinearFit:  # fmt: skip
    """L2 logistic regression with C chosen by stratified cross-validation on (X, y) alone; weights
    returned for raw features (standardisation folded in) as K logits (binary: [0, z])."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    y = np.asarray(y)
    classes = np.unique(y)
    mean = np.zeros(X.shape[1])
    std = np.ones(X.shape[1])
    if scale:
        mean, std = np.asarray(X.mean(axis=0)).ravel(), np.asarray(X.std(axis=0)).ravel()
        std[std < 1e-8] = 1.0
        X = (X - mean) / std
    smallest = int(np.bincount(np.searchsorted(classes, y)).min()) if len(classes) > 1 else 0
    sparse = hasattr(X, "tocsr")
    # liblinear for sparse TF-IDF rows (one-vs-rest, fast on many columns), lbfgs (multinomial) for dense features
    base = LogisticRegression(max_iter=3000, tol=1e-4, random_state=seed,
                              solver="liblinear" if sparse and len(classes) == 2 else "lbfgs")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(classes) < 2:
            raise ValueError(f"features: the labelled subset has one class only ({classes.tolist()}): add labels")
        k = min(folds, smallest)
        if len(grid) == 1:
            C = float(grid[0])
        elif k >= 2:
            rows = np.arange(len(y))
            if len(y) > CV_MAX:  # C from a seeded sample, the final fit on everything
                rows = np.sort(np.random.default_rng([seed, 23]).choice(len(y), CV_MAX, replace=False))
            search = GridSearchCV(base, {"C": list(grid)}, cv=StratifiedKFold(k, shuffle=True, random_state=seed),
                                  scoring="accuracy", n_jobs=None, refit=False)  # fmt: skip
            search.fit(X[rows], y[rows])
            C = float(search.best_params_["C"])
        else:  # a class with one example: nothing to cross-validate on
            C = 1.0
        model = base.set_params(C=C).fit(X, y)
    coef, intercept = model.coef_ / std, model.intercept_ - (model.coef_ * (mean / std)).sum(axis=1)
    full_coef = np.zeros((num_labels, coef.shape[1]))
    full_bias = np.zeros(num_labels)
    if coef.shape[0] == 1:  # binary: sklearn's one logit is class 1 vs class 0
        full_coef[model.classes_[1]], full_bias[model.classes_[1]] = coef[0], intercept[0]
    else:
        full_coef[model.classes_], full_bias[model.classes_] = coef, intercept
    return LinearFit(full_coef, full_bias, C)


def classification_metrics(logits: np.ndarray, labels: Sequence[int]) -> dict[str, float]:
    pred = np.asarray(logits).argmax(axis=1).tolist()
    acc, f1 = accuracy_and_macro_f1(list(labels), pred)
    return {"test_accuracy": acc, "test_macro_f1": f1}


class PooledFeatures:
    """Mean unit word vector of every row of a task, computed once by the classifier's own pooling."""

    def __init__(self, model: EmbeddingBagClassifier, a: list[list[int]], b: list[list[int]] | None) -> None:
        from plm.finetune.embeddings import _pad

        feats = []
        with torch.no_grad():
            for lo in range(0, len(a), 512):
                batch_b = _pad(b[lo : lo + 512]) if b is not None else None
                feats.append(model.features(_pad(a[lo : lo + 512]), batch_b).numpy())
        self.X = np.concatenate(feats).astype(np.float64) if feats else np.zeros((0, model.embeddings.embedding_dim))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each vector scaled to length 1 (a zero vector stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms < 1e-12, 1.0, norms)).astype(np.float32)


def save_linear(model: EmbeddingBagClassifier, fit: LinearFit, model_dir: Path, config: dict[str, Any],
                words: list[str]) -> Path:  # fmt: skip
    """The fitted regression written into the classifier's linear head: a normal `embeddings` model dir."""
    from plm.finetune.embeddings import CONFIG, VOCAB, WEIGHTS

    with torch.no_grad():
        head = model.mlp[0]
        head.weight.copy_(torch.from_numpy(fit.coef.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(fit.intercept.astype(np.float32)))
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(model_dir / WEIGHTS), metadata={"format": "pt"})
    (model_dir / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    (model_dir / VOCAB).write_text(json.dumps(words, ensure_ascii=False))
    return model_dir


BASELINES = ("tfidf_lr", "tfidf_lr_cv")
"""`tfidf_lr`: scikit-learn's default regularisation (C = 1); `tfidf_lr_cv`: C cross-validated like `features`."""


class TfidfBaseline:
    """TF-IDF (word 1-2 grams, sublinear tf, min_df 2) fitted on the train split's texts only, applied to all.

    `fit(variant)`: logistic regression on a subset of rows, `tfidf_lr` with C = 1 or `tfidf_lr_cv` with C
    cross-validated on the subset.
    """

    def __init__(self, texts: Sequence[str], train_rows: Sequence[int], min_df: int = 2) -> None:
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, lowercase=True,
                                          dtype=np.float32)  # fmt: skip
        train = set(train_rows)
        rest = [i for i in range(len(texts)) if i not in train]
        fitted = self.vectorizer.fit_transform([texts[i] for i in train_rows])  # one pass over the train split
        other = self.vectorizer.transform([texts[i] for i in rest]) if rest else None
        order = np.empty(len(texts), dtype=np.int64)  # row of text i in the stacked matrix
        order[list(train_rows)] = np.arange(len(train_rows))
        order[rest] = len(train_rows) + np.arange(len(rest))
        stacked = fitted if other is None else sp.vstack([fitted, other])
        self.X = stacked.tocsr()[order]

    def fit(self, rows: Sequence[int], labels: Sequence[int], test_rows: Sequence[int], test_labels: Sequence[int],
            num_labels: int, seed: int, variant: str = "tfidf_lr_cv") -> FinetuneResult:  # fmt: skip
        X = self.X[list(rows)]
        if variant == "tfidf_lr":
            fit = fit_logistic(X, labels, num_labels, seed, scale=False, grid=(1.0,), folds=1)
        else:
            fit = fit_logistic(X, labels, num_labels, seed, scale=False, grid=SPARSE_GRID, folds=3)
        metrics = classification_metrics(fit.logits(self.X[list(test_rows)]), test_labels)
        return FinetuneResult({**metrics, "C": fit.C, "features": float(self.X.shape[1])}, Path())


class WordVectorFeatures:
    """One labelled task's texts encoded once against a word2vec vocabulary; `fit` runs the `features` strategy."""

    def __init__(
        self, vectors_dir: Path, texts: Sequence[str], pairs: Sequence[str] | None, max_words: int,
        subword_oov: bool = True, subword_table: str = "float32",
    ) -> None:  # fmt: skip
        from plm.finetune.embeddings import _load_vectors, is_classifier

        parent = _load_vectors(vectors_dir, subword_oov, subword_table)
        self.registered = is_classifier(vectors_dir)  # a registered classifier's table (`finetune.init`)
        self.lowercase, self.word_unit, self.max_words = parent.lowercase, parent.word_unit, max_words
        # the table's rows are scaled to unit length: so is a served word's n-gram vector
        self.subwords = None if parent.subwords is None else parent.subwords.normalized()
        self.subword_table = subword_table
        index = parent.index(max_words)  # a fastText parent adds the task's unseen words with their n-gram vectors
        self.a = index.encode(list(texts))
        self.b = index.encode(list(pairs)) if pairs is not None else None
        self.words, self.vectors = index.words, unit_rows(index.table(parent.vectors))
        self.oov_rate, self.unseen_rate = index.oov_rate(self.a), index.unseen_rate(self.a)
        self._pooled: dict[tuple[bool, int], np.ndarray] = {}

    def model(self, num_labels: int, pretrained: bool, seed: int) -> EmbeddingBagClassifier:
        """The linear-head classifier over the unit vectors (pretrained) or seeded random unit vectors (scratch)."""
        from plm.finetune.embeddings import DROPOUT, OFFSET, PAD, UNK

        model = EmbeddingBagClassifier(len(self.words) + OFFSET, self.vectors.shape[1], 0, num_labels,
                                       self.b is not None, DROPOUT)  # fmt: skip
        table = self.vectors
        if not pretrained:
            rng = np.random.default_rng([seed, 17])
            table = unit_rows(rng.standard_normal(self.vectors.shape).astype(np.float32))
        with torch.no_grad():
            model.embeddings.weight[OFFSET:] = torch.from_numpy(table)
            model.embeddings.weight[UNK] = 0.0
            model.embeddings.weight[PAD] = 0.0
        return model.eval()

    def pooled(self, pretrained: bool, seed: int) -> np.ndarray:
        key = (pretrained, 0 if pretrained else seed)  # the pretrained table does not depend on the seed
        if key not in self._pooled:
            self._pooled[key] = PooledFeatures(self.model(2, pretrained, seed), self.a, self.b).X
        return self._pooled[key]

    def fit(
        self, train_rows: Sequence[int], test_rows: Sequence[int], labels: Sequence[int], id2label: dict[int, str],
        pretrained: bool, seed: int, out_dir: Path | None = None,
    ) -> FinetuneResult:  # fmt: skip
        """Cross-validated logistic regression on the pooled rows `train_rows`, scored on `test_rows`;
        with `out_dir`, the model is written to `out_dir/model` (the `embeddings` format, linear head)."""
        if not id2label:
            raise ValueError("finetune.strategy=features fits a classifier: use task_type classification or "
                             "pair_classification (regression: strategy embeddings)")  # fmt: skip
        X = self.pooled(pretrained, seed)
        y = np.asarray(labels)
        fit = fit_logistic(X[list(train_rows)], y[list(train_rows)], len(id2label), seed)
        metrics = classification_metrics(fit.logits(X[list(test_rows)]), y[list(test_rows)].tolist())
        metrics.update({"C": fit.C, "test_oov_rate": self.oov_rate, "test_unseen_rate": self.unseen_rate,
                        "train_examples": float(len(train_rows))})  # fmt: skip
        model_dir = Path()
        if out_dir is not None:
            from plm.finetune.embeddings import save_subwords

            model_dir = Path(out_dir) / "model"
            model_dir.mkdir(parents=True, exist_ok=True)
            config = {
                "arch": "embeddings", "dim": int(self.vectors.shape[1]), "hidden": 0, "num_labels": len(id2label),
                "id2label": {str(k): v for k, v in sorted(id2label.items())}, "pair": self.b is not None,
                "regression": False, "lowercase": self.lowercase, "max_words": self.max_words,
                "word_unit": self.word_unit,
                "strategy": "features", "init": ("registered" if self.registered else "pretrained") if pretrained else "scratch",
                **save_subwords(self.subwords if pretrained else None, self.subword_table, model_dir),
            }  # fmt: skip
            save_linear(self.model(len(id2label), pretrained, seed), fit, model_dir, config, self.words)
        return FinetuneResult(metrics, model_dir)
