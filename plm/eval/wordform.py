"""Korean word-form check: does an unseen inflected eojeol land next to the forms of its own stem?

No Korean similarity set ships in a package, so the check is built from the corpus itself. Kiwi
analyses each eojeol alone; one whose first morpheme is a content morpheme (noun, verb, adjective,
root, adverb...) followed only by functional ones (particles, endings, suffixes, the copula) has the
stem `form/TAG` of that first morpheme (학교에서 -> 학교/NNG, 했다 -> 하/VV, 보장된다 -> 보장/NNG).
A query is an *inflected* eojeol (stem + at least one functional morpheme) that is outside the
vocabulary (never trained as a word) and whose stem has at least one in-vocabulary form. Its vector
(fastText: from its n-grams) ranks every vocabulary word by cosine; the query's rank is that of the
first neighbour with the same stem (inf when the model has no vector for it: word2vec's case).

Reported: the number of queries, coverage (share with a vector), recall@k (first same-stem
neighbour within the top k, misses and vector-less queries counted as failures) and MRR, each with
a percentile bootstrap interval over queries; and the same for the longest-common-prefix baseline
(vocabulary words ranked by shared leading characters, ties by frequency), which needs no training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

CONTENT_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "VX", "XR", "MAG", "MM"})
FUNCTIONAL_PREFIXES = ("J", "E", "XS", "VCP", "VCN")
KS = (1, 5, 10)
BOOTSTRAP = 1000


def _tag(tag: object) -> str:
    return str(tag).split("-")[0]  # Kiwi marks irregular conjugations as VV-I / VV-R


def analyse(words: Sequence[str]) -> list[tuple[str | None, int]]:
    """Per word: its stem key `form/TAG` (None when it is not stem + functional morphemes) and its morpheme count."""
    from plm.corpus.sentences import _kiwi

    out: list[tuple[str | None, int]] = []
    for tokens in _kiwi().tokenize(list(words)):
        tags = [_tag(t.tag) for t in tokens]
        if tokens and tags[0] in CONTENT_TAGS and all(t.startswith(FUNCTIONAL_PREFIXES) for t in tags[1:]):
            out.append((f"{tokens[0].form}/{tags[0]}", len(tokens)))
        else:
            out.append((None, len(tokens)))
    return out


def hangul_share(words: Iterable[str]) -> float:
    """Share of the words containing a Hangul syllable (0 for none)."""
    words = list(words)
    if not words:
        return 0.0
    return sum(any("\uac00" <= c <= "\ud7a3" for c in w) for w in words) / len(words)


def build_task(vocab_words: Sequence[str], unseen_words: Iterable[str], max_queries: int = 2000) -> WordFormTask:
    """The task over a vocabulary: `unseen_words` (outside it) that are inflected forms of an in-vocabulary stem.

    Queries are taken in sorted order up to `max_queries` (deterministic); words without Hangul are skipped.
    """
    vocab_set = set(vocab_words)
    unseen = sorted({w for w in unseen_words if w not in vocab_set and hangul_share([w]) == 1.0})
    vocab_stems = [s for s, _ in analyse(vocab_words)]
    have = {s for s in vocab_stems if s is not None}
    queries, stems = [], []
    for word, (stem, n) in zip(unseen, analyse(unseen), strict=True):
        if stem is not None and n >= 2 and stem in have:
            queries.append(word)
            stems.append(stem)
            if len(queries) >= max_queries:
                break
    return WordFormTask(list(vocab_words), vocab_stems, queries, stems)


class WordFormTask:
    """Queries (unseen inflected eojeol) and their stems against a vocabulary and its words' stems."""

    def __init__(self, vocab: list[str], vocab_stems: list[str | None], queries: list[str], stems: list[str]) -> None:
        if len(vocab) != len(vocab_stems) or len(queries) != len(stems):
            raise ValueError("word-form task: every word needs its stem entry")
        self.vocab, self.vocab_stems, self.queries, self.stems = vocab, vocab_stems, queries, stems
        codes: dict[str, int] = {}
        self.vocab_codes = np.array([-1 if s is None else codes.setdefault(s, len(codes)) for s in vocab_stems])
        self.query_codes = np.array([codes.get(s, -2) for s in stems], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.queries)

    def vector_ranks(self, vocab_vectors: np.ndarray, vector: Callable[[str], np.ndarray | None]) -> np.ndarray:
        """(Q,) 1-based rank of the first same-stem vocabulary word by cosine to the query's vector (inf: no vector)."""
        if len(vocab_vectors) != len(self.vocab):
            raise ValueError(f"word-form task: {len(vocab_vectors)} vectors for {len(self.vocab)} words")
        unit = vocab_vectors / np.maximum(np.linalg.norm(vocab_vectors, axis=1, keepdims=True), 1e-12)
        ranks = np.full(len(self.queries), np.inf)
        for q, word in enumerate(self.queries):
            v = vector(word)
            if v is None or not np.any(v):
                continue
            scores = unit @ (np.asarray(v, dtype=unit.dtype) / np.linalg.norm(v))
            same = self.vocab_codes == self.query_codes[q]
            best = scores[same].max()
            ranks[q] = 1 + int((scores > best).sum())
        return ranks

    def prefix_ranks(self, counts: Sequence[int]) -> np.ndarray:
        """(Q,) ranks under the baseline: most shared leading characters first, then the more frequent word.

        Walks the query's prefixes from the longest down: the words sharing exactly L leading characters
        are those under prefix L but not L + 1 (a prefix -> word ids table over the vocabulary).
        """
        counts = np.asarray(counts, dtype=np.int64)
        if len(counts) != len(self.vocab):
            raise ValueError(f"word-form task: {len(counts)} counts for {len(self.vocab)} words")
        under: dict[str, list[int]] = {"": list(range(len(self.vocab)))}
        for i, w in enumerate(self.vocab):
            for n in range(1, len(w) + 1):
                under.setdefault(w[:n], []).append(i)
        ranks = np.full(len(self.queries), np.inf)
        for q, word in enumerate(self.queries):
            longest = max(n for n in range(len(word) + 1) if word[:n] in under)
            above, inner = 0, set()
            for n in range(longest, -1, -1):
                level = [i for i in under[word[:n]] if i not in inner]  # exactly n shared characters
                same = [counts[i] for i in level if self.vocab_codes[i] == self.query_codes[q]]
                if same:
                    ranks[q] = above + 1 + sum(counts[i] > max(same) for i in level)
                    break
                above += len(level)
                inner.update(level)
        return ranks


def summarise(ranks: np.ndarray, prefix: str = "wordform", seed: int = 0, ks: Sequence[int] = KS) -> dict[str, float]:
    """queries, coverage, recall@k and MRR with 95% percentile-bootstrap bounds (`_lo` / `_hi`) over queries."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"{prefix}_queries": float(len(ranks))}
    if not len(ranks):
        return out
    per_query = {"coverage": np.isfinite(ranks).astype(float), "mrr": 1.0 / ranks}
    per_query.update({f"recall_at_{k}": (ranks <= k).astype(float) for k in ks})
    rng = np.random.default_rng([seed, 31])
    draws = rng.integers(0, len(ranks), size=(BOOTSTRAP, len(ranks)))
    for name, values in per_query.items():
        out[f"{prefix}_{name}"] = float(values.mean())
        if name != "coverage":
            means = values[draws].mean(axis=1)
            out[f"{prefix}_{name}_lo"], out[f"{prefix}_{name}_hi"] = (float(x) for x in np.percentile(means, [2.5, 97.5]))
    return out


def korean_wordform_metrics(
    vocab_words: Sequence[str], vocab_counts: Sequence[int], vocab_vectors: np.ndarray,
    vector: Callable[[str], np.ndarray | None], unseen_words: Iterable[str], seed: int = 0,
    max_queries: int = 2000, min_hangul: float = 0.5,
) -> dict[str, float]:  # fmt: skip
    """`wordform_*` (the model) and `wordform_prefix_*` (the baseline) for a mostly Korean vocabulary
    (at least `min_hangul` of its words hold Hangul); empty for any other vocabulary or without queries."""
    if hangul_share(vocab_words) < min_hangul:
        return {}
    task = build_task(vocab_words, unseen_words, max_queries)
    if not len(task):
        return {}
    return {**summarise(task.vector_ranks(vocab_vectors, vector), "wordform", seed),
            **summarise(task.prefix_ranks(vocab_counts), "wordform_prefix", seed)}
