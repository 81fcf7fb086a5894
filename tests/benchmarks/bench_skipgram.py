"""Skip-gram pair generation throughput: plm's vectorised shards vs a straightforward per-pair Python loop.

Both do the same work: frequent-word subsampling (t = 1e-3), dynamic window (radius 1..5), 5
negatives per pair from unigram^0.75 re-drawn when equal to the context. Corpora: gensim's Lee
background corpus (tiled 16x so a run is long enough to time) and the enwiki sample ingested
into a temporary lake. plm is timed on generation alone (`skipgram_shard` over every planned
shard) and end to end (`write_skipgram`, Parquet included); the Python loop on a sub-sample of
sentences. Reports pairs/s and the ratio as one JSON line per corpus.

Run: make bench
"""

from __future__ import annotations

import bisect
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from plm.config import SkipgramSpec
from plm.objectives import skipgram as sg

pytest.importorskip("gensim")

CFG = SkipgramSpec(window=5, negatives=5, min_count=5, subsample=1e-3)
PY_TOKENS = 60_000  # tokens given to the pure-Python loop


def python_pairs(sentences: list[list[int]], keep: list[float], cum: list[float], cfg: SkipgramSpec) -> int:
    """word2vec's skip-gram loop, one pair at a time; returns the number of pairs made."""
    rnd = random.Random(0)
    total, pairs = cum[-1], []
    for sentence in sentences:
        kept = [w for w in sentence if rnd.random() < keep[w]]
        for i, center in enumerate(kept):
            b = rnd.randint(1, cfg.window)
            for j in range(max(0, i - b), min(len(kept), i + b + 1)):
                if j == i:
                    continue
                context, negatives = kept[j], []
                while len(negatives) < cfg.negatives:
                    neg = bisect.bisect_right(cum, rnd.random() * total)
                    if neg != context:
                        negatives.append(neg)
                pairs.append((center, context, negatives))
    return len(pairs)


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _measure(name: str, sentences: list[np.ndarray], vocab: sg.Vocab, tmp: Path) -> dict[str, float]:
    keep_prob = sg.keep_probability(vocab.counts, CFG.subsample)
    sampler = sg.NegativeSampler(sg.noise_distribution(vocab.counts))
    ids, offsets = sg.flatten(sentences)
    bounds = sg.plan_shards(ids, offsets, keep_prob, CFG)
    pairs = 0

    def generate() -> None:
        nonlocal pairs
        pairs = 0
        for s in range(len(bounds) - 1):
            lo, hi = bounds[s], bounds[s + 1]
            out = sg.skipgram_shard(ids[offsets[lo] : offsets[hi]], np.diff(offsets[lo : hi + 1]), keep_prob, sampler,
                                    CFG, np.random.default_rng([1, 7, s]))  # fmt: skip
            pairs += out.stats.pairs

    gen_s = _best(generate)
    runs = iter(range(100))
    write_s = _best(lambda: sg.write_skipgram(sentences, vocab, CFG, 1, tmp / f"{name}-{next(runs)}"))

    sub, n = [], 0
    for s in sentences:
        if n >= PY_TOKENS:
            break
        sub.append(s.tolist())
        n += len(s)
    cum = np.cumsum(sg.noise_distribution(vocab.counts)).tolist()
    py_pairs = 0

    def loop() -> None:
        nonlocal py_pairs
        py_pairs = python_pairs(sub, keep_prob.tolist(), cum, CFG)

    py_s = _best(loop, repeats=1)
    result = {
        "corpus": name,
        "tokens": int(len(ids)),
        "vocab": len(vocab),
        "shards": len(bounds) - 1,
        "pairs": pairs,
        "plm_generate_pairs_per_s": pairs / gen_s,
        "plm_write_pairs_per_s": pairs / write_s,
        "python_loop_pairs_per_s": py_pairs / py_s,
        "python_loop_pairs": py_pairs,
    }
    result["speedup_generate"] = result["plm_generate_pairs_per_s"] / result["python_loop_pairs_per_s"]
    result["speedup_write"] = result["plm_write_pairs_per_s"] / result["python_loop_pairs_per_s"]
    return result


def test_skipgram_lee(tmp_path):
    from plm.samples import resolve_sample

    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    vocab = sg.build_vocab([lines], CFG.min_count, CFG.lowercase)
    sentences = sg.encode_sentences([lines], vocab, CFG.lowercase) * 16
    vocab = sg.Vocab(vocab.words, vocab.counts * 16)  # the tiled corpus's counts: same f, same subsampling
    result = _measure("lee_x16", sentences, vocab, tmp_path)
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}))
    assert result["plm_generate_pairs_per_s"] > result["python_loop_pairs_per_s"]


def test_skipgram_enwiki(tmp_path):
    from plm.config import CorpusSpec
    from plm.corpus.ingest import ingest_corpus
    from plm.tokenizer.train import iter_sentences

    ingest_corpus(CorpusSpec(paths=["sample:enwiki"]), tmp_path / "home")
    files = sorted((tmp_path / "home" / "lake").rglob("*.parquet"))
    vocab = sg.build_vocab(iter_sentences(files, "train"), CFG.min_count, CFG.lowercase)
    sentences = sg.encode_sentences(iter_sentences(files, "train"), vocab, CFG.lowercase)
    result = _measure("enwiki", sentences, vocab, tmp_path)
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}))
    assert result["plm_generate_pairs_per_s"] > result["python_loop_pairs_per_s"]
