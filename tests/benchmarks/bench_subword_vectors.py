"""fastText and GloVe: plm against Facebook's `fasttext`, gensim's `FastText` and plm's word2vec, in one run.

English (Lee background corpus + the enwiki sample, ingested through plm, train split, `\\w+` lowercase
words): skip-gram, dim 100, window 5, 5 negatives, min_count 5, subsample 1e-3, n-grams 3-6, 200k
buckets, lr 0.05, `PLM_FT_EPOCHS` epochs (default 5) for all three fastText trainers (the two peers with
2 threads, plm with one update thread plus one drawing pairs), each trained with seeds 1..`PLM_FT_SEEDS`
(default 3; 1 with `PLM_BENCH_QUICK=1`): plm's `seed`, gensim's `FastText(seed=)`, Facebook's C++ `seed`
(fasttext 0.9.3's `train_unsupervised` takes no `seed` keyword; see `_facebook`). The peers' 2-thread
training is not reproducible even for one seed; plm's is. Reported per trainer: WordSim-353 and
SimLex-999 Spearman on the pairs whose words are all in the vocabulary (the same pairs for all three:
the same vocabulary), the same on every pair with unseen words built from their n-grams (`*_all`), the
coverage of each (OOV coverage), and words/s (in-vocabulary corpus words x epochs / training seconds).
Each Spearman line gives the mean over seeds (`plm`, `fasttext`, `gensim`; `peer` = the better peer's
mean, `delta` = plm minus it), each trainer's per-seed values, sd and 95 % t interval over seeds, and a
no-training baseline (`baseline_ngram_jaccard`: Jaccard overlap of the two words' character 3-6-grams).

The resolution of the pairs themselves (`fasttext_*_delta_bootstrap`): a paired bootstrap over word pairs
(2,000 resamples of the pairs with replacement, generator seed 0; the same resample for plm and the better
peer) of plm's seed-mean Spearman minus the better peer's, on the pairs that every run of both covers.
Per seed, not seed-averaged cosines: each resample recomputes every seed's Spearman and averages them, so
the interval is for exactly the difference the Spearman lines report (a Spearman of averaged cosines is
an ensemble's score, higher than any one run's, and not the figure the target is about). It holds the
seeds fixed, so it measures what the pairs can resolve; the seeds' own spread is `seed_se` (the standard
error of the difference of the two seed means). `target_verdict`: `met` when the whole 95 % interval
lies above -0.02 (issue 13: within 0.02 of the better peer), `missed` when it lies below, `not resolved`
when it straddles -0.02; `difference_resolved` when it excludes 0.
GloVe (window 10, 1/d, symmetric, x_max 100, alpha 0.75, AdaGrad lr 0.05) against plm word2vec (the same
skip-gram settings) on the same words: the same epochs (`PLM_FT_EPOCHS`) and GloVe's own 25.

Korean (konlpy's constitution + bills, one document per file, eojeol = word): a held-out word-form task. A tenth of the
inflected all-Hangul word types whose stem (first kiwipiepy morpheme) has another form in the vocabulary are
removed from the training text; after training, each held-out form gets its vector from n-grams and
counts as a hit when one of its 5 nearest vocabulary words shares its stem (`heldout_stem_hit@5`,
with the rate a random vocabulary word would reach as `chance`). The same for the three trainers.

Prints `BENCH <name> {json}` lines (unit, plm, peer, ratio). Run (`PLM_BENCH_PARTS=fasttext,glove,korean`
picks parts; the English fastText part with 3 seeds alone took 16 minutes on 2 shared cores):
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
from plm.eval.wordsim import spearman, wordsim
from plm.finetune.report import t_interval
from plm.objectives.cooccurrence import read_cooccurrence, write_cooccurrence
from plm.objectives.skipgram import build_vocab, encode_sentences, split_words
from plm.objectives.subwords import char_ngrams, ngram_buckets
from plm.samples import package_dir
from plm.train.fasttext import train_fasttext
from plm.train.glove import train_glove
from plm.train.word2vec import train_word2vec

gensim_ft = pytest.importorskip("gensim.models.fasttext")
fasttext = pytest.importorskip("fasttext")

QUICK = os.environ.get("PLM_BENCH_QUICK") == "1"
EPOCHS = int(os.environ.get("PLM_FT_EPOCHS", "5"))
SEEDS = list(range(1, int(os.environ.get("PLM_FT_SEEDS", "1" if QUICK else "3")) + 1))
RESAMPLES, TARGET = 2000, 0.02  # the pair bootstrap; issue 13: within 0.02 of the better peer
TRAINERS, PEERS = ("plm", "fasttext", "gensim"), ("fasttext", "gensim")
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


def _facebook(texts_path: Path, epochs: int, min_count: int, seed: int):  # noqa: ANN202
    """Facebook's skip-gram with `seed`: fasttext 0.9.3's `train_unsupervised` refuses a `seed` keyword
    (`train_supervised` takes one) but hands its defaults' `seed` to the C++ trainer (the input matrix's
    initialisation, each thread's RNG), so the seed is set there for this call."""
    defaults = fasttext.FastText.unsupervised_default
    saved, defaults["seed"] = defaults["seed"], seed
    try:
        return fasttext.train_unsupervised(str(texts_path), model="skipgram", dim=DIM, ws=WINDOW, neg=NEG,
                                           minCount=min_count, minn=MINN, maxn=MAXN, bucket=BUCKETS, t=SAMPLE, lr=LR,
                                           epoch=epochs, thread=2, verbose=0)  # fmt: skip
    finally:
        defaults["seed"] = saved


def _train_peers(texts_path: Path, tokens: list[list[str]], epochs: int, min_count: int, seed: int) -> dict[str, dict]:
    out = {}
    start = time.perf_counter()
    fb = _facebook(texts_path, epochs, min_count, seed)
    assert fb.f.getArgs().seed == seed
    out["fasttext"] = {"seconds": time.perf_counter() - start, "model": fb}
    gm = gensim_ft.FastText(sg=1, vector_size=DIM, window=WINDOW, negative=NEG, min_count=min_count, min_n=MINN,
                            max_n=MAXN, bucket=BUCKETS, sample=SAMPLE, alpha=LR, workers=2, seed=seed)  # fmt: skip
    gm.build_vocab(tokens)
    start = time.perf_counter()
    gm.train(tokens, total_examples=gm.corpus_count, epochs=epochs)
    out["gensim"] = {"seconds": time.perf_counter() - start, "model": gm}
    return out


def _fasttext_three(texts: list[str], tmp: Path, epochs: int, min_count: int = MIN_COUNT, seed: int = 1):
    """plm, Facebook and gensim fastText on the same words, all with `seed`: (vocab, plm result, plm seconds,
    peers, words per epoch)."""
    sg = SkipgramSpec(window=WINDOW, negatives=NEG, min_count=min_count, subsample=SAMPLE)
    vocab = build_vocab([texts], min_count, True)
    encoded = encode_sentences([texts], vocab, True)
    tokens = [split_words(t, True) for t in texts]
    tokens = [t for t in tokens if t]
    texts_path = tmp / "train.txt"
    texts_path.write_text("\n".join(" ".join(t) for t in tokens) + "\n", encoding="utf-8")
    cfg = FastTextSpec(dim=DIM, epochs=epochs, minn=MINN, maxn=MAXN, buckets=BUCKETS, lr=LR)
    start = time.perf_counter()
    result = train_fasttext(cfg, sg, vocab, encoded, seed=seed)
    plm_s = time.perf_counter() - start
    peers = _train_peers(texts_path, tokens, epochs, min_count, seed)
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
    runs: dict[str, list[dict]] = {name: [] for name in TRAINERS}  # per trainer, per seed: scores and pair cosines
    for seed in SEEDS:
        vocab, result, plm_s, peers, words_per_epoch = _fasttext_three(texts, tmp_path, EPOCHS, seed=seed)
        fb, gm = peers["fasttext"]["model"], peers["gensim"]["model"]
        fb_words = [w for w in fb.get_words() if w != "</s>"]
        assert set(fb_words) == set(vocab.words) == set(gm.wv.index_to_key)  # the same vocabulary for all three
        assert np.isfinite(result.vectors).all()
        tables = {"plm": (result.words, result.vectors, _plm_oov(result), plm_s),
                  "fasttext": (fb_words, np.vstack([fb.get_word_vector(w) for w in fb_words]), fb.get_word_vector,
                               peers["fasttext"]["seconds"]),
                  "gensim": (list(gm.wv.index_to_key), gm.wv.vectors, gm.wv.get_vector, peers["gensim"]["seconds"])}
        for name, (words, vectors, oov, seconds) in tables.items():
            runs[name].append({**_similarity(words, vectors, oov), "words_per_s": words_per_epoch * EPOCHS / seconds,
                               "seconds": seconds, "cosines": _pair_cosines(words, vectors, oov)})  # fmt: skip
        print(f"\nfastText seed {seed}: " + ", ".join(f"{n} simlex999 {runs[n][-1]['simlex999']:.3f}" for n in TRAINERS))
    print(f"\nfastText: {words_per_epoch} words/epoch, {len(vocab)} words, {EPOCHS} epochs, seeds {SEEDS}")
    for key in ("wordsim353", "simlex999", "wordsim353_all", "simlex999_all"):
        stats = {name: _over_seeds([r[key] for r in runs[name]]) for name in TRAINERS}
        mean = {name: stats[name]["mean"] for name in TRAINERS}
        better = max(PEERS, key=mean.get)
        bench(f"fasttext_{key}_spearman", "spearman", mean["plm"], mean[better], fasttext=mean["fasttext"],
              gensim=mean["gensim"], delta=mean["plm"] - mean[better], seeds=SEEDS,
              **{f"{name}_{k}": v for name in TRAINERS for k, v in stats[name].items() if k != "mean"},
              baseline_ngram_jaccard=_jaccard_baseline(key, vocab.words))  # fmt: skip
        _bootstrap_line(key, vocab.words, runs["plm"], runs[better], better)
    for key in ("wordsim353_coverage", "simlex999_coverage", "wordsim353_all_coverage", "simlex999_all_coverage"):
        cover = {name: float(np.mean([r[key] for r in runs[name]])) for name in TRAINERS}
        bench(f"fasttext_{key}", "fraction of pairs", cover["plm"], cover["fasttext"], gensim=cover["gensim"])
    speed = {name: _over_seeds([r["words_per_s"] for r in runs[name]]) for name in TRAINERS}
    bench("fasttext_words_per_s", "words/s", speed["plm"]["mean"], speed["fasttext"]["mean"],
          gensim=speed["gensim"]["mean"], plm_seconds=float(np.mean([r["seconds"] for r in runs["plm"]])),
          **{f"{name}_per_seed": speed[name]["per_seed"] for name in TRAINERS})  # fmt: skip


def _over_seeds(values: list[float]) -> dict[str, object]:
    """Mean, sd and 95 % t interval over seeds (nan sd and interval with one seed), and the values."""
    mean, lo, hi = t_interval(values)
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": mean, "sd": sd, "ci95": [lo, hi], "per_seed": [float(v) for v in values]}


def _pair_cosines(words: list[str], vectors: np.ndarray, oov_vector) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Cosine of each pair of each set, in file order (unseen words from `oov_vector`; nan without a vector)."""
    index = {w: i for i, w in enumerate(words)}

    def vector(word: str) -> np.ndarray | None:
        v = vectors[index[word]] if word in index else oov_vector(word)
        return None if v is None or not np.any(v) else np.asarray(v, np.float64)

    out = {}
    for name, path in SETS.items():
        cos = []
        for a, b, _ in _pairs(path):
            va, vb = vector(a), vector(b)
            cos.append(np.nan if va is None or vb is None else va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
        out[name] = np.array(cos)
    return out


def _pair_subset(key: str, words: list[str]) -> tuple[str, np.ndarray, np.ndarray]:
    """(set name, human scores, pairs in scope) of a metric key: `simlex999` the in-vocabulary pairs,
    `simlex999_all` every pair."""
    name = key.removesuffix("_all")
    pairs, index = _pairs(SETS[name]), set(words)
    scope = [key.endswith("_all") or (a in index and b in index) for a, b, _ in pairs]
    return name, np.array([s for _, _, s in pairs]), np.array(scope)


def _jaccard_baseline(key: str, words: list[str]) -> float:
    """Spearman of a no-training baseline: the Jaccard overlap of the two words' character 3-6-grams."""
    name, human, scope = _pair_subset(key, words)
    grams = [(set(char_ngrams(a, MINN, MAXN)), set(char_ngrams(b, MINN, MAXN))) for a, b, _ in _pairs(SETS[name])]
    score = np.array([len(ga & gb) / max(len(ga | gb), 1) for ga, gb in grams])
    return spearman(score[scope], human[scope])


def _bootstrap_line(key: str, words: list[str], plm: list[dict], peer: list[dict], peer_name: str) -> None:
    """The resolution of the pairs: a paired bootstrap of plm's seed-mean Spearman minus the better peer's."""
    name, human, scope = _pair_subset(key, words)
    a, b = (np.vstack([r["cosines"][name] for r in runs]) for runs in (plm, peer))  # (seeds, pairs)
    for cosines, runs in ((a, plm), (b, peer)):  # the pair cosines give each run's headline figure back
        for row, r in zip(cosines, runs, strict=True):
            ok = scope & np.isfinite(row)
            assert abs(spearman(row[ok], human[ok]) - r[key]) < 1e-3, (key, spearman(row[ok], human[ok]), r[key])
    keep = scope & np.isfinite(a).all(0) & np.isfinite(b).all(0)  # pairs every run of both has vectors for
    a, b, human = a[:, keep], b[:, keep], human[keep]
    draws = np.random.default_rng(0).integers(0, len(human), size=(RESAMPLES, len(human)))
    diffs = np.array([_seed_mean(a[:, i], human[i]) - _seed_mean(b[:, i], human[i]) for i in draws])
    delta = _seed_mean(a, human) - _seed_mean(b, human)
    lo, hi = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
    verdict = "met" if lo >= -TARGET else "missed" if hi < -TARGET else "not resolved"
    seed_se = (float(np.sqrt(sum(np.var([r[key] for r in runs], ddof=1) / len(runs) for runs in (plm, peer))))
               if len(plm) > 1 else float("nan"))  # fmt: skip
    bench(f"fasttext_{key}_delta_bootstrap", "spearman difference", _seed_mean(a, human), _seed_mean(b, human),
          peer_name=peer_name, delta=delta, ci95=[lo, hi], resamples=RESAMPLES, pairs=int(keep.sum()),
          target=-TARGET, within_target=bool(delta >= -TARGET), target_verdict=verdict,
          difference_resolved=bool(lo > 0 or hi < 0), seed_se=seed_se, seeds=len(plm))  # fmt: skip


def _seed_mean(cosines: np.ndarray, human: np.ndarray) -> float:
    """The mean over seeds (rows) of Spearman(cosine, human)."""
    return float(np.mean([spearman(c, human) for c in cosines]))


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
