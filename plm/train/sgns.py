"""word2vec's training loop compiled with numba: skip-gram / CBOW with negative sampling, no Python per pair.

The algorithm is the C tool's (Mikolov et al. 2013) read straight off the encoded corpus, as gensim
does: each epoch subsamples frequent words afresh, every kept center draws its radius b uniformly
from 1..window, each (context, center) pair is one update of the context's input vector against the
center's output vector and `negatives` draws from unigram^0.75 (Walker's alias method),
and the learning rate decays linearly from `lr` to `min_lr` over all words of all epochs.

Threads: the corpus is cut into `threads` contiguous parts of equal words trained at once on one shared
pair of tables without locks (Hogwild, as word2vec and gensim); each part starts at the learning rate a
serial pass would have there. One thread is bit-for-bit reproducible for a
seed; more threads race on the shared rows, so the vectors differ run to run by the order of updates
(their quality does not: see tests/benchmarks/bench_word2vec.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

MAX_EXP = 6.0
EXP_TABLE_SIZE = 1000
CHUNK_WORDS = 10_000  # the learning rate is recomputed (and progress counted) every this many words


def _score_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The C tool's sigmoid table over [-MAX_EXP, MAX_EXP) in EXP_TABLE_SIZE steps, and beside it log sigma and
    log(1 - sigma) (gensim's LOG_TABLE, for the loss): one lookup per pair instead of an exp and a log."""
    x = (np.arange(EXP_TABLE_SIZE, dtype=np.float64) / EXP_TABLE_SIZE * 2.0 - 1.0) * MAX_EXP
    sig = 1.0 / (1.0 + np.exp(-x))
    return sig.astype(np.float32), np.log(sig).astype(np.float32), np.log1p(-sig).astype(np.float32)


SIGMOID, LOG_SIGMOID, LOG_ONE_MINUS = _score_tables()


@numba.njit(cache=True, nogil=True, fastmath=True)
def _next(state: np.ndarray) -> np.uint64:
    """xorshift64* step on state[0] (one private generator per thread)."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return x * np.uint64(2685821657736338717)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _uniform(state: np.ndarray) -> float:
    return float(_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _pair_update(h: np.ndarray, out: np.ndarray, work: np.ndarray, label: float, lr: float) -> float:
    """One (hidden, output row) logistic update, word2vec's: `work` += g * out, `out` += g * h, g = (label - sigma) * lr,
    sigma read from the C tool's table and the score clipped at +-MAX_EXP as there; returns the pair's loss
    (-log sigma for the positive, -log(1 - sigma) for a negative, from the tables beside it)."""
    f = np.float32(0.0)
    for d in range(h.shape[0]):
        f += h[d] * out[d]
    if f >= MAX_EXP:
        g, loss = (label - 1.0) * lr, 0.0 if label == 1.0 else f
    elif f <= -MAX_EXP:
        g, loss = label * lr, -f if label == 1.0 else 0.0
    else:
        i = int((f + MAX_EXP) * (EXP_TABLE_SIZE / MAX_EXP / 2.0))
        g = (label - SIGMOID[i]) * lr
        loss = -LOG_SIGMOID[i] if label == 1.0 else -LOG_ONE_MINUS[i]
    g32 = np.float32(g)
    for d in range(h.shape[0]):
        work[d] += g32 * out[d]
    for d in range(h.shape[0]):
        out[d] += g32 * h[d]
    return float(loss)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _draw(prob: np.ndarray, alias: np.ndarray, state: np.ndarray) -> int:
    """A word drawn from count^0.75 by Walker's alias method (`negative_alias`): one 64-bit draw gives a column
    (its high 32 bits, scaled without a division) and a coin (its low 32 bits). Constant time, and two reads of
    vocabulary-sized arrays that stay in cache (the C tool's 10^7-entry table costs a cache miss per draw)."""
    x = _next(state)
    i = np.int64(((x >> np.uint64(32)) * np.uint64(prob.shape[0])) >> np.uint64(32))
    coin = float(x & np.uint64(0xFFFFFFFF)) * (1.0 / 4294967296.0)
    return i if coin < prob[i] else np.int64(alias[i])  # int64 both ways (uint64 with int64 would unify to float)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sampled_updates(h: np.ndarray, syn1: np.ndarray, work: np.ndarray, center: int, prob: np.ndarray,
                     alias: np.ndarray, state: np.ndarray, negatives: int, lr: float) -> float:
    """The center word as the positive and `negatives` draws from count^0.75 (the center itself skipped),
    each one `_pair_update`; returns their summed loss."""
    total = 0.0
    for j in range(negatives + 1):
        if j == 0:
            target, label = center, 1.0
        else:
            target = _draw(prob, alias, state)
            if target == center:
                continue
            label = 0.0
        total += _pair_update(h, syn1[target], work, label, lr)
    return total


@numba.njit(cache=True, nogil=True, fastmath=True)
def _train_part(
    ids: np.ndarray, offsets: np.ndarray, first: int, last: int, keep: np.ndarray, prob: np.ndarray, alias: np.ndarray,
    syn0: np.ndarray, syn1: np.ndarray, window: int, negatives: int, cbow: bool, contexts: int,
    lr0: float, min_lr: float, words_before: float, total_words: float, seed: int, share: float,
    done: np.ndarray, slot: int, loss: np.ndarray,
) -> None:  # fmt: skip
    """Train on sentences first..last-1 of (ids, offsets). `done[slot]` counts raw words processed;
    the learning rate of this part assumes the other parts progress at the same pace (`share` = this
    part's fraction of an epoch's words). `loss[slot*2:+2]` accumulates (sum of losses, updates)."""
    dim = syn0.shape[1]
    state = np.empty(1, dtype=np.uint64)
    state[0] = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    sentence = np.empty(1024, dtype=np.int64)
    neu1 = np.zeros(dim, dtype=np.float32)
    work = np.zeros(dim, dtype=np.float32)
    l1 = np.zeros(dim, dtype=np.float32)
    lr = lr0
    since = 0
    for s in range(first, last):
        lo, hi = offsets[s], offsets[s + 1]
        n = hi - lo
        if n > sentence.shape[0]:
            sentence = np.empty(n, dtype=np.int64)
        k = 0
        for i in range(lo, hi):  # subsampling: a fresh draw every epoch
            w = ids[i]
            if keep[w] >= 1.0 or _uniform(state) < keep[w]:
                sentence[k] = w
                k += 1
        since += n
        if since >= CHUNK_WORDS or s == last - 1:
            done[slot] += since
            since = 0
            progress = (words_before + done[slot] / share) / total_words
            lr = max(min_lr, lr0 - (lr0 - min_lr) * min(progress, 1.0))
        for pos in range(k):
            center = sentence[pos]
            b = int(_next(state) % np.uint64(window))  # radius window - b, uniform in 1..window
            start = max(0, pos - window + b)
            end = min(k, pos + window - b + 1)
            if cbow:
                count = 0
                for d in range(dim):
                    neu1[d] = 0.0
                for c in range(start, end):
                    if c != pos:
                        row = sentence[c]
                        for d in range(dim):
                            neu1[d] += syn0[row, d]
                        count += 1
                if count == 0:
                    continue
                for d in range(dim):
                    neu1[d] /= count
                    work[d] = 0.0
                loss[slot * 2] += _sampled_updates(neu1, syn1, work, center, prob, alias, state, negatives, lr)
                loss[slot * 2 + 1] += 1.0
                for c in range(start, end):  # the C tool adds the mean's gradient to every context word
                    if c != pos:
                        row = sentence[c]
                        for d in range(dim):
                            syn0[row, d] += work[d]
                continue
            n_ctx = end - start - 1 if contexts == 0 else contexts
            for t in range(n_ctx):
                if contexts == 0:  # every position of the dynamic window
                    c = start + t
                    if c >= pos:
                        c += 1
                else:  # `contexts` positions drawn uniformly from the full window (a wide, sampled window)
                    lo_c, hi_c = max(0, pos - window), min(k, pos + window + 1)
                    if hi_c - lo_c <= 1:
                        break
                    c = lo_c + int(_next(state) % np.uint64(hi_c - lo_c - 1))
                    if c >= pos:
                        c += 1
                row = sentence[c]  # skip-gram: the context word's input vector predicts the center
                for d in range(dim):
                    l1[d] = syn0[row, d]
                    work[d] = 0.0
                loss[slot * 2] += _sampled_updates(l1, syn1, work, center, prob, alias, state, negatives, lr)
                for d in range(dim):
                    syn0[row, d] += work[d]
                loss[slot * 2 + 1] += 1.0
    done[slot] += since


def negative_alias(counts: np.ndarray, power: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table of count^power (Vose's construction): column i keeps word i with probability prob[i],
    else gives alias[i]; a uniform column then its coin draws each word with exactly its weight."""
    weights = counts.astype(np.float64) ** power
    n = len(weights)
    scaled = weights * (n / weights.sum())
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias  # what is left holds 1.0 up to rounding


def split_parts(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Sentence ranges of about equal word counts."""
    n = len(offsets) - 1
    targets = np.linspace(0, offsets[-1], parts + 1)
    cuts = np.searchsorted(offsets, targets).clip(0, n)
    cuts[0], cuts[-1] = 0, n
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def train_sgns(
    ids: np.ndarray,
    offsets: np.ndarray,
    counts: np.ndarray,
    keep: np.ndarray,
    dim: int,
    *,
    window: int = 5,
    negatives: int = 5,
    cbow: bool = False,
    contexts: int = 0,
    epochs: int = 5,
    lr: float = 0.025,
    min_lr: float = 1e-4,
    seed: int = 1234,
    threads: int = 1,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(syn0, syn1, metrics) after `epochs` passes over the corpus `ids` cut into sentences by `offsets`.

    `keep` is each word's subsampling keep probability; init (gensim's): syn0 uniform in +-1/dim from the
    seed, syn1 zeros (the C tool's +-0.5/dim gave WordSim-353 0.004-0.013 lower in each of 3 seeds on the
    benchmark corpus, SimLex-999 the same). `on_epoch(epoch, metrics)` is called after each epoch.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    keep = np.ascontiguousarray(keep, dtype=np.float64)
    vocab = len(counts)
    if init is None:
        rng = np.random.default_rng(seed)
        syn0 = ((rng.random((vocab, dim), dtype=np.float32) * 2.0 - 1.0) / dim).astype(np.float32)
        syn1 = np.zeros((vocab, dim), dtype=np.float32)
    else:
        syn0, syn1 = (np.ascontiguousarray(a, dtype=np.float32).copy() for a in init)
    prob, alias = negative_alias(counts)
    # one part of equal words per thread. Parts of ~50k words taken from a queue (gensim's jobs) measured better
    # under load and on the benchmark's SimLex, but cost the quickstart's sentiment features 0.6-2 points in every
    # labelled budget (3 seeds), for reasons not understood (SGNS_VERSION 2)
    parts = split_parts(offsets, max(threads, 1))
    epoch_words = float(offsets[-1])
    total = max(epoch_words * epochs, 1.0)
    start = time.perf_counter()
    loss_sum, updates = 0.0, 0.0
    metrics: dict[str, float] = {}
    with ThreadPoolExecutor(len(parts)) as pool:
        for epoch in range(1, epochs + 1):
            done = np.zeros(len(parts), dtype=np.float64)
            loss = np.zeros(2 * len(parts), dtype=np.float64)
            futures = [  # each part starts at the learning rate a serial pass would have there
                pool.submit(
                    _train_part, ids, offsets, a, b, keep, prob, alias, syn0, syn1, window, negatives, cbow, contexts, lr,
                    min_lr, epoch_words * (epoch - 1) + float(offsets[a]), total,
                    (seed * 1_000_003 + epoch) * 1_000_003 + slot, 1.0, done, slot, loss,
                )  # fmt: skip
                for slot, (a, b) in enumerate(parts)
            ]
            for f in futures:
                f.result()
            loss_sum += float(loss[0::2].sum())
            updates += float(loss[1::2].sum())
            seconds = time.perf_counter() - start
            words = epoch_words * epoch
            metrics = {"train_loss": float(loss[0::2].sum() / max(loss[1::2].sum(), 1.0)), "words": words,
                       "updates": updates, "seconds": seconds, "words_per_s": words / max(seconds, 1e-9),
                       "epoch": float(epoch)}  # fmt: skip
            if on_epoch is not None:
                on_epoch(epoch, metrics)
    if not np.isfinite(syn0).all():
        raise FloatingPointError("word2vec: non-finite vectors (model.lr too high?)")
    return syn0, syn1, metrics


def corpus_arrays(sentences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded sentences as one id array and sentence offsets."""
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(sentences).astype(np.int64) if sentences else np.zeros(0, dtype=np.int64)
    return ids, offsets
