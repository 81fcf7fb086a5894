"""Korean word-form check of fastText's design choices (`plm.eval.wordform`), in one run.

Text: konlpy's constitution + bills (ingested through plm, one document per file, train split, Kiwi
sentences), eojeol words lowercased, min_count 2. Queries: inflected eojeol that occur once (below
min_count, so they were never trained as words: their vectors come from n-grams alone) whose Kiwi
stem has an in-vocabulary form; each ranks the whole vocabulary by cosine, rank of the first same-stem
word. Compared on the same vocabulary and queries:
  * plm fastText, syllable n-grams 3-6 (fastText's default) and jamo n-grams 3-6 (`subword: jamo`);
  * gensim FastText, syllable n-grams 3-6, the same hyper-parameters (one worker, seeded);
  * the longest-common-prefix baseline (no training) and word2vec (no vector for an unseen word:
    coverage 0, recall 0; stated, not trained).
Skip-gram dim 100, window 5, 5 negatives, sample 1e-3, 20k buckets, lr 0.05, `PLM_KO_EPOCHS` epochs
(default 20; 5 with `PLM_BENCH_QUICK=1`), seeds `PLM_KO_SEEDS` (default 1,2,3; 1 when quick). Prints `BENCH korean_wordform {json}` per model and
seed: recall@1/5/10, MRR with 95 % bootstrap intervals over queries, coverage. Run:
  nice -n 10 /work/main/.venv/bin/python -m pytest -q -s tests/benchmarks/bench_korean_wordforms.py
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from plm.config import CorpusSpec, FastTextSpec, SkipgramSpec
from plm.eval.wordform import build_task, summarise
from plm.objectives.skipgram import build_vocab, encode_sentences, split_words_batch
from plm.objectives.subwords import ngram_buckets
from plm.train.fasttext import train_fasttext

gensim_ft = pytest.importorskip("gensim.models.fasttext")

QUICK = bool(os.environ.get("PLM_BENCH_QUICK"))
EPOCHS = int(os.environ.get("PLM_KO_EPOCHS", "5" if QUICK else "20"))
SEEDS = [int(s) for s in os.environ.get("PLM_KO_SEEDS", "1" if QUICK else "1,2,3").split(",")]
DIM, WINDOW, NEG, MIN_COUNT, SAMPLE, BUCKETS, LR = 100, 5, 5, 2, 1e-3, 20_000, 0.05
PLM_SETTINGS = {"plm_char_3_6": ("char", 3, 6), "plm_jamo_3_6": ("jamo", 3, 6)}


def _texts(home: Path) -> list[str]:
    from plm.corpus.ingest import ingest_corpus
    from plm.tokenizer.train import iter_sentences

    ingest_corpus(CorpusSpec(paths=["sample:ko-constitution", "sample:ko-bills"], text_unit="file"), home)
    files = sorted((home / "lake").rglob("*.parquet"))
    return [s for batch in iter_sentences(files, "train") for s in batch]


def _report(name: str, seed: int, ranks: np.ndarray, **extra: object) -> dict[str, float]:
    scores = summarise(ranks, "wordform", seed=seed)
    print(f"BENCH korean_wordform {json.dumps({'model': name, 'seed': seed, **scores, **extra}, default=float)}")
    return scores


def test_korean_wordforms(tmp_path):
    texts = _texts(tmp_path / "ko")
    tokens = [t for t in split_words_batch(texts, True) if t]
    counts = Counter(w for t in tokens for w in t)
    vocab = build_vocab([texts], MIN_COUNT, True)
    task = build_task(vocab.words, [w for w, c in counts.items() if c < MIN_COUNT], max_queries=100_000)
    about = {"vocab": len(vocab), "queries": len(task), "tokens": sum(counts.values()),
             "examples": list(zip(task.queries[:6], task.stems[:6], strict=True))}
    print(f"BENCH korean_wordform_task {json.dumps(about, ensure_ascii=False)}")
    assert len(task) >= 200
    encoded = encode_sentences([texts], vocab, True)
    sg = SkipgramSpec(window=WINDOW, negatives=NEG, min_count=MIN_COUNT, subsample=SAMPLE)
    results: dict[str, list[dict[str, float]]] = {}
    _report("prefix_baseline", 0, task.prefix_ranks(vocab.counts))
    _report("word2vec", 0, np.full(len(task), np.inf), note="no vector for an unseen word")
    for seed in SEEDS:
        for name, (subword, minn, maxn) in PLM_SETTINGS.items():
            cfg = FastTextSpec(dim=DIM, epochs=EPOCHS, minn=minn, maxn=maxn, buckets=BUCKETS, lr=LR, subword=subword)
            result = train_fasttext(cfg, sg, vocab, encoded, seed=seed)

            def vec(word: str, cfg: FastTextSpec = cfg, model=result.model) -> np.ndarray | None:  # noqa: ANN001
                buckets = ngram_buckets(word, cfg.minn, cfg.maxn, cfg.buckets, cfg.subword)
                return model.ngram_vector(buckets).numpy() if buckets else None

            results.setdefault(name, []).append(_report(name, seed, task.vector_ranks(result.vectors, vec)))
        gm = gensim_ft.FastText(sg=1, vector_size=DIM, window=WINDOW, negative=NEG, min_count=MIN_COUNT, min_n=3,
                                max_n=6, bucket=BUCKETS, sample=SAMPLE, alpha=LR, workers=1, seed=seed)  # fmt: skip
        gm.build_vocab(tokens)
        gm.train(tokens, total_examples=gm.corpus_count, epochs=EPOCHS)
        assert set(gm.wv.index_to_key) == set(vocab.words)  # the same vocabulary, so the same ranking space
        gvectors = np.vstack([gm.wv.get_vector(w) for w in vocab.words])
        results.setdefault("gensim_char_3_6", []).append(
            _report("gensim_char_3_6", seed, task.vector_ranks(gvectors, lambda w: gm.wv[w])))
    for name, rows in results.items():
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("wordform_recall_at_5", "wordform_mrr")}
        print(f"BENCH korean_wordform_mean {json.dumps({'model': name, 'seeds': len(rows), **mean})}")
