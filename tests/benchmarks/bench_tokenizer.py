"""Tokenizer training and encoding through plm vs calling HF `tokenizers` directly on the same text.

Baseline: the same `Tokenizer`/trainer (from `build_tokenizer`) trained with `train_from_iterator`
over the train sentences already in a Python list, and `encode_batch_fast` / `encode_batch` over
that list. plm additionally reads the lake's Parquet (twice when training: once to size the split
for the memory budget), filters the split and rebuilds per-document arrays. Target: <= 1.2x.
Timings are the best of REPEATS runs, alternating sides.

Run: .venv/bin/python -m pytest -s tests/benchmarks/bench_tokenizer.py -p no:cacheprovider -o addopts=
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from plm.config import CorpusSpec, TokenizerSpec
from plm.tokenizer.encode import encode_documents
from plm.tokenizer.train import build_tokenizer, fit_tokenizer, iter_sentences

pytest.importorskip("gensim")
pytest.importorskip("konlpy")

KINDS = ["wordpiece", "bpe", "bytelevel_bpe", "unigram"]
REPEATS = 3
TARGET = 1.2


def best(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def race(plm_fn: Callable[[], object], direct_fn: Callable[[], object]) -> tuple[float, float]:
    plm_t, direct_t = [], []
    for _ in range(REPEATS):
        direct_t.append(best(direct_fn))
        plm_t.append(best(plm_fn))
    return min(plm_t), min(direct_t)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from plm.corpus.ingest import ingest_corpus

    home = tmp_path_factory.mktemp("home")
    return ingest_corpus(CorpusSpec(paths=["sample:enwiki", "sample:ko-constitution", "sample:ko-bills"]), home).files


def test_tokenizer_overhead_vs_tokenizers(lake, tmp_path):
    sentences = [s for batch in iter_sentences(lake, "train") for s in batch]
    n_bytes = sum(len(s.encode()) for s in sentences)
    print(f"\ntrain split: {len(sentences)} sentences, {n_bytes / 1e6:.2f} MB; best of {REPEATS}")
    print(f"{'kind':<14}{'train plm':>10}{'direct':>9}{'ratio':>7}{'encode plm':>12}{'direct':>9}{'ratio':>7}"
          f"{'+words plm':>12}{'direct':>9}{'ratio':>7}")  # fmt: skip
    ratios = {}
    for kind in KINDS:
        cfg = TokenizerSpec(kind=kind, family="gpt" if kind == "bytelevel_bpe" else "bert", vocab_size=8000)

        def direct_train() -> None:
            tok, trainer = build_tokenizer(cfg)
            tok.train_from_iterator((sentences[i : i + 2048] for i in range(0, len(sentences), 2048)), trainer=trainer)

        train = race(lambda: fit_tokenizer(cfg, lake, tmp_path / f"{kind}.json"), direct_train)
        tok = fit_tokenizer(cfg, lake, tmp_path / f"{kind}.json").tokenizer

        def direct_encode() -> list[np.ndarray]:
            return [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch_fast(sentences, add_special_tokens=False)]

        def direct_words() -> list[tuple]:
            encs = tok.encode_batch(sentences, add_special_tokens=False)
            return [(np.asarray(e.ids, np.int32), np.asarray(e.word_ids, np.int32), np.asarray(e.offsets, np.int32))
                    for e in encs]  # fmt: skip

        encode = race(lambda: encode_documents(tok, lake, "train"), direct_encode)
        words = race(lambda: encode_documents(tok, lake, "train", with_words=True), direct_words)
        ratios[kind] = (train[0] / train[1], encode[0] / encode[1], words[0] / words[1])
        print(f"{kind:<14}{train[0]:>9.2f}s{train[1]:>8.2f}s{ratios[kind][0]:>7.2f}"
              f"{encode[0]:>11.2f}s{encode[1]:>8.2f}s{ratios[kind][1]:>7.2f}"
              f"{words[0]:>11.2f}s{words[1]:>8.2f}s{ratios[kind][2]:>7.2f}")  # fmt: skip
    worst = max(r for rs in ratios.values() for r in rs)
    print(f"worst ratio {worst:.2f} (target <= {TARGET})")
    assert worst <= TARGET
