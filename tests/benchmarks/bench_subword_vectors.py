"""fastText and GloVe: plm against Facebook's `fasttext`, gensim's `FastText` and plm's word2vec, in one run.

English (Lee background corpus + the enwiki sample, ingested through plm, train split, `\\w+` lowercase
words): skip-gram, dim 100, window 5, 5 negatives, min_count 5, subsample 1e-3, n-grams 3-6, 200k
buckets, lr 0.05, `PLM_FT_EPOCHS` epochs (default 5) for all three fastText trainers (the two peers with
2 threads, plm with one update thread plus one drawing pairs). Reported per trainer: WordSim-353 and
SimLex-999 Spearman on the pairs whose words are all in the vocabulary (the same pairs for all three:
the same vocabulary), the same on every pair with unseen words built from their n-grams (`*_all`), the
coverage of each (OOV coverage), and words/s (in-vocabulary corpus words x epochs / training seconds).
GloVe (window 10, 1/d, symmetric, x_max 100, alpha 0.75, AdaGrad lr 0.05) against plm word2vec (the same
skip-gram settings) on the same words: the same epochs (`PLM_FT_EPOCHS`) and GloVe's own 25.

Korean (konlpy's constitution + bills, one document per file, eojeol = word): a held-out word-form task. A tenth of the
inflected all-Hangul word types whose stem (first kiwipiepy morpheme) has another form in the vocabulary are
removed from the training text; after training, each held-out form gets its vector from n-grams and
counts as a hit when one of its 5 nearest vocabulary words shares its stem (`heldout_stem_hit@5`,
with the rate a random vocabulary word would reach as `chance`). The same for the three trainers.

Prints `BENCH <name> {json}` lines (unit, plm, peer, ratio). Run (`PLM_BENCH_PARTS=fasttext,glove,korean`
picks parts; all three take about 15 minutes on 2 cores):
  nice -n 10 .venv/bin/python -m pytest -q -s tests/benchmarks/bench_subword_vectors.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from plm.config import CooccurrenceSpec, CorpusSpec, FastTextSpec, GloveSpec, SkipgramSpec, Word2VecSpec
from plm.eval.wordsim import wordsim
from plm.objectives.cooccurrence import read_cooccurrence, write_cooccurrence
from plm.objectives.skipgram import build_vocab, encode_sentences, split_words
from plm.objectives.subwords import ngram_buckets
from plm.samples import package_dir
from plm.train.fasttext import train_fasttext
from plm.train.glove import train_glove
from plm.train.word2vec import train_word2vec

gensim_ft = pytest.importorskip("gensim.models.fasttext")
fasttext = pytest.importorskip("fasttext")

EPOCHS = int(os.environ.get("PLM_FT_EPOCHS", "5"))
DIM, WINDOW, NEG, MIN_COUNT, SAMPLE, MINN, MAXN, BUCKETS, LR = 100, 5, 5, 5, 1e-3, 3, 6, 200_000, 0.05
TEST_DATA = package_dir("gensim") / "test" / "test_data"
SETS = {"wordsim353": TEST_DATA / "wordsim353.tsv", "simlex999": TEST_DATA / "simlex999.txt"}


def bench(name: str, unit: str, plm: float, peer: float, **extra: object) -> None:
    ratio = plm / peer if peer else float("nan")
    print(f"BENCH {name} " + json.dumps({"unit": unit, "plm": plm, "peer": peer, "ratio": ratio, **extra}, default=float))


def _sentences(paths: list[str], home: Path, text_unit: str = "line") -> list[str]:
    from plm.corpus.ingest import ingest_corpus
    from plm.tokenizer.train import iter_sentences

    ingest_corpus(CorpusSpec(paths=paths, text_unit=text_unit), home)
    files = sorted((home / "lake").rglob("*.parquet"))
    return [s for batch in iter_sentences(files, "train") for s in batch]


def _pairs(path: Path) -> list[tuple[str, str, float]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            a, b, score = line.split("\t")[:3]
            out.append((a.lower(), b.lower(), float(score)))
    return out


def _similarity(words: list[str], vectors: np.ndarray, oov_vector) -> dict[str, float]:  # noqa: ANN001
    """Spearman on in-vocabulary pairs and on all pairs (unseen words from `oov_vector`, None = no vector)."""
    index = set(words)
    out: dict[str, float] = {}
    for name, path in SETS.items():
        res = wordsim(words, vectors, path=path)
        extra_words = sorted({w for a, b, _ in _pairs(path) for w in (a, b) if w not in index})
        extra = [(w, oov_vector(w)) for w in extra_words]
        extra = [(w, v) for w, v in extra if v is not None and np.any(v)]
        all_res = wordsim(words + [w for w, _ in extra],
                          np.vstack([vectors] + [np.asarray(v, np.float32)[None] for _, v in extra]), path=path)
        out.update({name: res.spearman, f"{name}_coverage": res.coverage, f"{name}_all": all_res.spearman,
                    f"{name}_all_coverage": all_res.coverage})  # fmt: skip
    return out


def _train_peers(texts_path: Path, tokens: list[list[str]], epochs: int, min_count: int) -> dict[str, dict]:
    out = {}
    start = time.perf_counter()
    fb = fasttext.train_unsupervised(str(texts_path), model="skipgram", dim=DIM, ws=WINDOW, neg=NEG,
                                     minCount=min_count, minn=MINN, maxn=MAXN, bucket=BUCKETS, t=SAMPLE, lr=LR,
                                     epoch=epochs, thread=2, verbose=0)  # fmt: skip
    out["fasttext"] = {"seconds": time.perf_counter() - start, "model": fb}
    gm = gensim_ft.FastText(sg=1, vector_size=DIM, window=WINDOW, negative=NEG, min_count=min_count, min_n=MINN,
                            max_n=MAXN, bucket=BUCKETS, sample=SAMPLE, alpha=LR, workers=2, seed=1)  # fmt: skip
    gm.build_vocab(tokens)
    start = time.perf_counter()
    gm.train(tokens, total_examples=gm.corpus_count, epochs=epochs)
    out["gensim"] = {"seconds": time.perf_counter() - start, "model": gm}
    return out


def _fasttext_three(texts: list[str], tmp: Path, epochs: int, min_count: int = MIN_COUNT):
    """plm, Facebook and gensim fastText on the same words: (vocab, plm result, peers, words per epoch)."""
    sg = SkipgramSpec(window=WINDOW, negatives=NEG, min_count=min_count, subsample=SAMPLE)
    vocab = build_vocab([texts], min_count, True)
    encoded = encode_sentences([texts], vocab, True)
    tokens = [split_words(t, True) for t in texts]
    tokens = [t for t in tokens if t]
    texts_path = tmp / "train.txt"
    texts_path.write_text("\n".join(" ".join(t) for t in tokens) + "\n", encoding="utf-8")
    cfg = FastTextSpec(dim=DIM, epochs=epochs, minn=MINN, maxn=MAXN, buckets=BUCKETS, lr=LR)
    start = time.perf_counter()
    result = train_fasttext(cfg, sg, vocab, encoded, seed=1)
    plm_s = time.perf_counter() - start
    peers = _train_peers(texts_path, tokens, epochs, min_count)
    return vocab, result, plm_s, peers, int(sum(len(s) for s in encoded))


def _plm_oov(result):  # noqa: ANN001, ANN202
    """Unseen words of a plm fastText result: the mean of their n-gram rows."""

    def vec(word: str) -> np.ndarray | None:
        buckets = ngram_buckets(word, MINN, MAXN, BUCKETS)
        return result.model.ngram_vector(buckets).numpy() if buckets else None

    return vec


PARTS = set(os.environ.get("PLM_BENCH_PARTS", "fasttext,glove,korean").split(","))


def test_fasttext_glove_vs_peers(tmp_path):
    texts = _sentences(["sample:lee", "sample:enwiki"], tmp_path / "en")
    if "fasttext" in PARTS:
        _fasttext_english(texts, tmp_path)
    if "glove" in PARTS:
        _glove(texts)
    if "korean" in PARTS:
        _korean(tmp_path)


def _fasttext_english(texts: list[str], tmp_path: Path) -> None:
    vocab, result, plm_s, peers, words_per_epoch = _fasttext_three(texts, tmp_path, EPOCHS)
    fb, gm = peers["fasttext"]["model"], peers["gensim"]["model"]
    fb_words = [w for w in fb.get_words() if w != "</s>"]
    assert set(fb_words) == set(vocab.words) == set(gm.wv.index_to_key)  # the same vocabulary for all three
    scores = {
        "plm": {**_similarity(result.words, result.vectors, _plm_oov(result)),
                "words_per_s": words_per_epoch * EPOCHS / plm_s, "seconds": plm_s},
        "fasttext": {**_similarity(fb_words, np.vstack([fb.get_word_vector(w) for w in fb_words]), fb.get_word_vector),
                     "words_per_s": words_per_epoch * EPOCHS / peers["fasttext"]["seconds"],
                     "seconds": peers["fasttext"]["seconds"]},
        "gensim": {**_similarity(list(gm.wv.index_to_key), gm.wv.vectors, lambda w: gm.wv[w]),
                   "words_per_s": words_per_epoch * EPOCHS / peers["gensim"]["seconds"],
                   "seconds": peers["gensim"]["seconds"]},
    }  # fmt: skip
    print(f"\nfastText: {words_per_epoch} words/epoch, {len(vocab)} words, {EPOCHS} epochs")
    for key in ("wordsim353", "simlex999", "wordsim353_all", "simlex999_all"):
        best = max(scores["fasttext"][key], scores["gensim"][key])
        bench(f"fasttext_{key}_spearman", "spearman", scores["plm"][key], best,
              fasttext=scores["fasttext"][key], gensim=scores["gensim"][key], delta=scores["plm"][key] - best)  # fmt: skip
    for key in ("wordsim353_coverage", "simlex999_coverage", "wordsim353_all_coverage", "simlex999_all_coverage"):
        bench(f"fasttext_{key}", "fraction of pairs", scores["plm"][key], scores["fasttext"][key],
              gensim=scores["gensim"][key])  # fmt: skip
    bench("fasttext_words_per_s", "words/s", scores["plm"]["words_per_s"], scores["fasttext"]["words_per_s"],
          gensim=scores["gensim"]["words_per_s"], plm_seconds=plm_s)  # fmt: skip

    assert np.isfinite(result.vectors).all()


def _glove(texts: list[str]) -> None:
    """GloVe vs plm word2vec on the same words (the same vocabulary)."""
    vocab = build_vocab([texts], MIN_COUNT, True)
    sg = SkipgramSpec(window=WINDOW, negatives=NEG, min_count=MIN_COUNT, subsample=SAMPLE)
    encoded = encode_sentences([texts], vocab, True)
    start = time.perf_counter()
    w2v = train_word2vec(Word2VecSpec(dim=DIM, epochs=EPOCHS), sg, vocab, encoded, seed=1)
    w2v_s = time.perf_counter() - start
    w2v_scores = _similarity(w2v.words, w2v.vectors, lambda w: None)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        stats = write_cooccurrence(encoded, vocab, CooccurrenceSpec(), Path(tmp) / "co")
        count_s = time.perf_counter() - start
        i, j, x = read_cooccurrence(sorted((Path(tmp) / "co").glob("part-*.parquet")))
    for epochs in sorted({EPOCHS, 25}):
        glove = train_glove(GloveSpec(dim=DIM, epochs=epochs), vocab, i, j, x, seed=1)
        g = _similarity(glove.words, glove.vectors, lambda w: None)
        for key in ("wordsim353", "simlex999"):
            bench(f"glove_{epochs}ep_{key}_spearman", "spearman", g[key], w2v_scores[key],
                  peer_name=f"plm word2vec {EPOCHS} epochs", coverage=g[f"{key}_coverage"])  # fmt: skip
        bench(f"glove_{epochs}ep_seconds", "seconds", glove.metrics["seconds"] + count_s, w2v_s,
              counting_seconds=count_s, entries=stats.entries, peer_name=f"plm word2vec {EPOCHS} epochs")  # fmt: skip
        assert np.isfinite(glove.vectors).all()


def _korean(tmp_path: Path) -> None:
    from kiwipiepy import Kiwi

    rng = np.random.default_rng(0)
    texts = _sentences(["sample:ko-constitution", "sample:ko-bills"], tmp_path / "ko", text_unit="file")
    min_count = 2
    vocab = build_vocab([texts], min_count, True)
    kiwi = Kiwi()
    stem = {w: kiwi.tokenize(w)[0].form for w in vocab.words if all("\uac00" <= c <= "\ud7a3" for c in w)}
    by_stem: dict[str, list[str]] = {}
    for w, s in stem.items():
        by_stem.setdefault(s, []).append(w)
    candidates = sorted(w for w, s in stem.items() if len(by_stem[s]) > 1 and w != s)
    heldout = set(rng.choice(candidates, size=max(1, len(candidates) // 10), replace=False).tolist())
    kept = [" ".join(t for t in split_words(s, True) if t not in heldout) for s in texts]
    epochs = 20
    vocab_k, result, plm_s, peers, words = _fasttext_three(kept, tmp_path, epochs, min_count)
    assert not heldout & set(vocab_k.words)
    fb, gm = peers["fasttext"]["model"], peers["gensim"]["model"]

    def hit_rate(words_: list[str], vectors: np.ndarray, vec) -> float:  # noqa: ANN001
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        hits = []
        for w in sorted(heldout):
            v = vec(w)
            if v is None or not np.any(v):
                hits.append(False)
                continue
            top = np.argsort(-(unit @ (v / np.linalg.norm(v))))[:5]
            hits.append(any(stem.get(words_[t]) == stem[w] for t in top))
        return float(np.mean(hits))

    hangul = [w for w in vocab_k.words if w in stem]
    chance = float(np.mean([1 - (1 - sum(stem.get(u) == stem[w] for u in hangul) / len(vocab_k)) ** 5
                            for w in sorted(heldout)]))  # fmt: skip
    fb_words = [w for w in fb.get_words() if w != "</s>"]
    plm_rate = hit_rate(result.words, result.vectors, _plm_oov(result))
    fb_rate = hit_rate(fb_words, np.vstack([fb.get_word_vector(w) for w in fb_words]), fb.get_word_vector)
    gm_rate = hit_rate(list(gm.wv.index_to_key), gm.wv.vectors, lambda w: gm.wv[w])
    bench("fasttext_korean_heldout_stem_hit@5", "fraction of held-out forms", plm_rate, max(fb_rate, gm_rate),
          fasttext=fb_rate, gensim=gm_rate, chance=chance, heldout=len(heldout), vocab=len(vocab_k), words=words,
          epochs=epochs, examples={w: stem[w] for w in sorted(heldout)[:5]})  # fmt: skip
