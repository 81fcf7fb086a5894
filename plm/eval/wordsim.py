"""Word-vector evaluation as gensim does it: WordSim-353 (Spearman) and the Google analogy set (3CosAdd).

* WordSim-353 (`sample:wordsim353`): `#` lines are comments; a pair with a word outside the
  vocabulary is skipped and counted (gensim's `dummy4unknown=False`); Spearman's rho of cosine
  similarity against the human means, ties given their average rank.
* Analogies (`sample:analogies`, `: section` headers): only the `restrict_vocab` most frequent
  words take part (a question with a word outside them is skipped); the answer is the word
  nearest, by cosine, to unit(b) - unit(a) + unit(c), the three question words excluded (3CosAdd,
  gensim's `most_similar`). Accuracy over the questions answered, coverage = answered / all.

Both lowercase the test words when the vectors are lowercase (gensim's `case_insensitive`).
Words must be sorted by descending frequency (as plm's `Vocab` is) for `restrict_vocab` to mean
"most frequent".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plm.samples import resolve_sample


@dataclass
class WordSimResult:
    spearman: float  # nan when fewer than two pairs are covered
    pairs: int  # pairs evaluated
    skipped: int  # pairs with an out-of-vocabulary word

    @property
    def coverage(self) -> float:
        return self.pairs / max(self.pairs + self.skipped, 1)


@dataclass
class AnalogyResult:
    correct: int
    answered: int
    total: int
    sections: dict[str, tuple[int, int]] = field(default_factory=dict)  # section -> (correct, answered)

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else float("nan")

    @property
    def coverage(self) -> float:
        return self.answered / max(self.total, 1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's r of the average ranks); nan below two points or with no spread."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a) - (len(a) + 1) / 2, _ranks(b) - (len(b) + 1) / 2
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _case(word: str, lowercase: bool) -> str:
    return word.lower() if lowercase else word


def wordsim(
    words: Sequence[str], vectors: np.ndarray, path: Path | None = None, lowercase: bool = True
) -> WordSimResult:
    """Spearman of cosine similarity vs human judgement on WordSim-353 (or another `w1<TAB>w2<TAB>score` file)."""
    path = path or resolve_sample("sample:wordsim353")[0]
    index = {w: i for i, w in enumerate(words)}
    unit = _unit(vectors)
    model, human, skipped = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        ia, ib = index.get(_case(a, lowercase)), index.get(_case(b, lowercase))
        if ia is None or ib is None:
            skipped += 1
            continue
        model.append(float(unit[ia] @ unit[ib]))
        human.append(float(score))
    return WordSimResult(spearman(model, human), len(model), skipped)


def analogies(
    words: Sequence[str],
    vectors: np.ndarray,
    path: Path | None = None,
    restrict_vocab: int = 30_000,
    lowercase: bool = True,
    batch: int = 1024,
) -> AnalogyResult:
    """3CosAdd accuracy on the Google analogy set over the `restrict_vocab` most frequent words."""
    path = path or resolve_sample("sample:analogies")[0]
    n = min(restrict_vocab, len(words))
    index = {w: i for i, w in enumerate(words[:n])}
    unit = _unit(vectors[:n])
    questions: list[tuple[str, int, int, int, int]] = []
    section, total = "", 0
    sections: dict[str, tuple[int, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
            sections.setdefault(section, (0, 0))
            continue
        parts = [_case(w, lowercase) for w in line.split()]
        if len(parts) != 4:
            continue
        total += 1
        ids = [index.get(w) for w in parts]
        if all(i is not None for i in ids):
            questions.append((section, *ids))  # type: ignore[arg-type]
    correct = 0
    for lo in range(0, len(questions), batch):
        chunk = questions[lo : lo + batch]
        q = np.array([c[1:] for c in chunk], dtype=np.int64)  # (Q, 4): a b c expected
        target = _unit(unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]])  # (Q, D)
        sims = target @ unit.T  # (Q, n)
        rows = np.arange(len(chunk))
        for col in range(3):  # the question words are never the answer
            sims[rows, q[:, col]] = -np.inf
        hits = sims.argmax(axis=1) == q[:, 3]
        correct += int(hits.sum())
        for (name, *_), hit in zip(chunk, hits, strict=True):
            c, a = sections[name]
            sections[name] = (c + int(hit), a + 1)
    return AnalogyResult(correct, len(questions), total, sections)


def similarity_metrics(words: list[str], vectors: np.ndarray, analogy_vocab: int, lowercase: bool) -> dict[str, float]:
    """WordSim-353 and Google-analogy figures of a word-vector table (every vector family reports the same)."""
    sim = wordsim(words, vectors, lowercase=lowercase)
    analogy = analogies(words, vectors, restrict_vocab=analogy_vocab, lowercase=lowercase)
    return {"wordsim_spearman": sim.spearman, "wordsim_pairs": float(sim.pairs), "wordsim_coverage": sim.coverage,
            "analogy_accuracy": analogy.accuracy, "analogy_answered": float(analogy.answered),
            "analogy_coverage": analogy.coverage}  # fmt: skip
