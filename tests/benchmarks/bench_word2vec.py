"""word2vec: plm (PyTorch, batched sparse SGD) vs gensim `Word2Vec` on the same sentences and epochs.

Corpus: gensim's Lee background corpus plus the enwiki sample, ingested through plm (train split,
sentences split into `\\w+` lowercase words). Both use skip-gram, negative=5, window=5,
vector_size=100, min_count=5, sample=1e-3, the same number of epochs (`PLM_W2V_EPOCHS`, default 5);
gensim with workers=2. Reported: WordSim-353 Spearman (and coverage), analogy accuracy, and words/s =
in-vocabulary corpus words x epochs / training seconds (vocabulary building excluded for both;
plm's time includes drawing each epoch's pairs). Targets (issue 5): Spearman >= gensim - 0.02,
words/s >= 0.5 x gensim's 2-worker figure. Prints a table and one JSON line.

Run: .venv/bin/pytest -q -s tests/benchmarks/bench_word2vec.py
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from plm.config import CorpusSpec, SkipgramSpec, Word2VecSpec
from plm.eval.wordsim import analogies, wordsim
from plm.objectives.skipgram import build_vocab, encode_sentences, split_words
from plm.train.word2vec import train_word2vec

gensim_models = pytest.importorskip("gensim.models")

EPOCHS = int(os.environ.get("PLM_W2V_EPOCHS", "5"))
SG = SkipgramSpec(window=5, negatives=5, min_count=5, subsample=1e-3)


def _sentences(tmp_path) -> list[str]:
    from plm.corpus.ingest import ingest_corpus
    from plm.tokenizer.train import iter_sentences

    ingest_corpus(CorpusSpec(paths=["sample:lee", "sample:enwiki"], text_unit="line"), tmp_path / "home")
    files = sorted((tmp_path / "home" / "lake").rglob("*.parquet"))
    return [s for batch in iter_sentences(files, "train") for s in batch]


def _evaluate(words: list[str], vectors: np.ndarray) -> dict[str, float]:
    sim, analogy = wordsim(words, vectors), analogies(words, vectors, restrict_vocab=30_000)
    return {"wordsim": sim.spearman, "wordsim_pairs": sim.pairs, "analogy": analogy.accuracy,
            "analogy_answered": analogy.answered}  # fmt: skip


def test_word2vec_vs_gensim(tmp_path):
    texts = _sentences(tmp_path)
    vocab = build_vocab([texts], SG.min_count, SG.lowercase)
    encoded = encode_sentences([texts], vocab, SG.lowercase)
    words_per_epoch = int(sum(len(s) for s in encoded))

    tokens = [split_words(t, SG.lowercase) for t in texts]
    model = gensim_models.Word2Vec(sg=1, negative=5, window=5, vector_size=100, min_count=5, sample=1e-3,
                                   workers=2, epochs=EPOCHS, seed=1)  # fmt: skip
    model.build_vocab(tokens)
    start = time.perf_counter()
    model.train(tokens, total_examples=model.corpus_count, epochs=EPOCHS)
    gensim_s = time.perf_counter() - start
    kv = model.wv
    assert len(kv.index_to_key) == len(vocab)  # same words kept: the comparison is on the same corpus
    gensim = {"seconds": gensim_s, "words_per_s": words_per_epoch * EPOCHS / gensim_s,
              **_evaluate(list(kv.index_to_key), kv.vectors)}  # fmt: skip

    cfg = Word2VecSpec(dim=100, epochs=EPOCHS, batch_size=1024)
    start = time.perf_counter()
    result = train_word2vec(cfg, SG, vocab, encoded, seed=1)
    plm_s = time.perf_counter() - start
    plm = {"seconds": plm_s, "words_per_s": words_per_epoch * EPOCHS / plm_s, **_evaluate(result.words, result.vectors)}

    rows = [("words/s", "words_per_s"), ("seconds", "seconds"), ("WordSim-353 Spearman", "wordsim"),
            ("WordSim pairs covered", "wordsim_pairs"), ("analogy accuracy", "analogy"),
            ("analogies answered", "analogy_answered")]  # fmt: skip
    print(f"\nword2vec vs gensim: {words_per_epoch} words/epoch, {len(vocab)} words, {EPOCHS} epochs, "
          f"torch threads {cfg.threads}, gensim workers 2")  # fmt: skip
    print(f"{'':24s}{'plm':>12s}{'gensim':>12s}{'plm/gensim':>12s}")
    for label, key in rows:
        ratio = plm[key] / gensim[key] if gensim[key] else float("nan")
        print(f"{label:24s}{plm[key]:12.4g}{gensim[key]:12.4g}{ratio:12.3f}")
    summary = {"words_per_epoch": words_per_epoch, "epochs": EPOCHS, "vocab": len(vocab),
               "plm": plm, "gensim": gensim, "speed_ratio": plm["words_per_s"] / gensim["words_per_s"],
               "wordsim_delta": plm["wordsim"] - gensim["wordsim"]}  # fmt: skip
    print(json.dumps(summary, default=float))
    assert np.isfinite(result.vectors).all() and plm["wordsim"] > 0
