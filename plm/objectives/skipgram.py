"""Skip-gram / CBOW examples with negative sampling (word2vec), vectorised over whole shards.

The algorithm is word2vec's (Mikolov et al. 2013, the C tool and gensim):
  * words are `\\w+` runs (Unicode-aware, so a Korean eojeol stays one word: `word_unit="eojeol"`),
    or Kiwi's morphemes (`word_unit="morpheme"`: 학교에서 -> 학교 에서, their surface forms, punctuation
    dropped), optionally lowercased;
    words rarer than `min_count` are dropped from the corpus (not replaced by an unknown token);
  * frequent-word subsampling keeps a token with probability min(1, (sqrt(f/t) + 1) * t/f),
    f = count / total over the vocabulary;
  * each kept center draws its radius b uniformly from 1..window; its contexts are the kept tokens
    of the same sentence within distance b;
  * k negatives per example from unigram^0.75 (alias table: exact, O(1) per draw), a negative equal
    to the positive (skip-gram: the context; CBOW: the center) is re-drawn so every row has k.

Sharding: sentences are cut into shards of about `shard_size` *expected* examples, planned from the
keep probabilities alone (before any random draw), and shard s draws from
`default_rng([seed, 7, s])`. So the output is byte-identical for any worker count or order, and a
shard whose file exists is skipped (resume). Statistics go into each shard's Parquet metadata, so a
resumed run reports the same totals.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plm.config import SkipgramSpec
from plm.objectives.shardio import read_meta, stats_meta, write_shard
from plm.objectives.shardrun import run_shards
from plm.tracker import Progress, no_progress

OBJECTIVE_CODE = 7
NOISE_POWER = 0.75
STATS_KEY = b"plm.skipgram.stats"
NEG_KEY = b"plm.skipgram.negatives"
POS_KEY = b"plm.skipgram.positives"
VOCAB_FILE = "vocab.parquet"
BUCKETS = 20
TOP_WORDS = 5
DRAW_CHUNK = 1 << 15

WORD_RE = re.compile(r"\w+")


# ---- vocabulary and corpus ---------------------------------------------------------------------


WORD_UNITS = ("eojeol", "morpheme")


def split_words(text: str, lowercase: bool, word_unit: str = "eojeol") -> list[str]:
    """The words of a sentence: Unicode `\\w+` runs (`eojeol`: a Korean eojeol, particles attached, stays
    whole) or Kiwi's morphemes (`morpheme`)."""
    return split_words_batch([text], lowercase, word_unit)[0]


def split_words_batch(texts: Sequence[str], lowercase: bool, word_unit: str = "eojeol") -> list[list[str]]:
    """`split_words` of many texts; `morpheme` sends the whole batch to Kiwi at once.

    A morpheme is Kiwi's form (its normalised surface: 했다 -> 하 었 다), kept when it is a `\\w+` run
    (punctuation and symbols dropped, as `eojeol` drops them); non-Korean text comes back as Kiwi's
    tokens (words and numbers).
    """
    if word_unit == "eojeol":
        return [WORD_RE.findall(t.lower() if lowercase else t) for t in texts]
    if word_unit != "morpheme":
        raise ValueError(f"word_unit must be one of {WORD_UNITS}, got {word_unit!r}")
    from plm.corpus.sentences import _kiwi

    out = []
    for tokens in _kiwi().tokenize(list(texts)):
        words = [w for tok in tokens for w in WORD_RE.findall(tok.form)]
        out.append([w.lower() for w in words] if lowercase else words)
    return out


@dataclass
class Vocab:
    """Words sorted by count (descending, then word) with their counts; id = position."""

    words: list[str]
    counts: np.ndarray  # int64

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @property
    def total(self) -> int:
        """Tokens in the corpus that are in the vocabulary (the `f` denominator)."""
        return int(self.counts.sum())

    def save(self, path: Path) -> None:
        """Write `word string, count int64` Parquet atomically."""
        table = pa.table({"word": pa.array(self.words, pa.string()), "count": pa.array(self.counts, pa.int64())})
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Vocab:
        """Read a vocabulary written by `save`."""
        table = pq.read_table(path)
        return cls(table.column("word").to_pylist(), table.column("count").to_numpy().astype(np.int64))


def build_vocab(
    sentence_batches: Iterable[list[str]], min_count: int, lowercase: bool, word_unit: str = "eojeol"
) -> Vocab:
    """Count words over all batches; keep those with count >= min_count, sorted by count desc, word."""
    counter: Counter[str] = Counter()
    for batch in sentence_batches:
        for words in split_words_batch(batch, lowercase, word_unit):
            counter.update(words)
    kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
    return Vocab([w for w, _ in kept], np.array([c for _, c in kept], dtype=np.int64))


def encode_sentences(
    sentence_batches: Iterable[list[str]], vocab: Vocab, lowercase: bool, word_unit: str = "eojeol"
) -> list[np.ndarray]:
    """Sentences as int32 vocabulary ids; out-of-vocabulary words dropped (as word2vec does), empty sentences too."""
    index = vocab.index
    out = []
    for batch in sentence_batches:
        for words in split_words_batch(batch, lowercase, word_unit):
            ids = [i for i in map(index.get, words) if i is not None]
            if ids:
                out.append(np.array(ids, dtype=np.int32))
    return out


# ---- the three random steps ----------------------------------------------------------------------


def keep_probability(counts: np.ndarray, subsample: float) -> np.ndarray:
    """Per word, word2vec's keep probability min(1, (sqrt(f/t) + 1) * t/f); all ones when t = 0."""
    if subsample <= 0:
        return np.ones(len(counts))
    f = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(f / subsample) + 1) * subsample / f)


def noise_distribution(counts: np.ndarray, power: float = NOISE_POWER) -> np.ndarray:
    """The negative-sampling distribution: counts^power, normalised."""
    weights = counts.astype(np.float64) ** power
    return weights / weights.sum()


class NegativeSampler:
    """Exact draws from a discrete distribution with Vose's alias table (O(1) per draw)."""

    def __init__(self, probs: np.ndarray) -> None:
        n = len(probs)
        if n < 2:
            raise ValueError("negative sampling needs a vocabulary of at least 2 words")
        self.probs = probs
        scaled = probs * n
        prob = np.ones(n)
        alias = np.arange(n, dtype=np.int32)
        small = [i for i in range(n) if scaled[i] < 1.0]
        large = [i for i in range(n) if scaled[i] >= 1.0]
        scaled = scaled.tolist()
        while small and large:
            s, g = small.pop(), large.pop()
            prob[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        # What is left over has probability 1 up to rounding: prob stays 1, alias itself.
        self.prob, self.alias = prob, alias
        # Column j is kept when x = u * n < j + prob[j]: one gather and one compare per draw.
        self.threshold = np.arange(n) + prob

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n int32 ids; one uniform double gives both the column (integer part) and the coin (fraction).

        Works in cache-sized chunks with reused buffers: on whole shards, fresh multi-megabyte
        temporaries cost more in page faults than the arithmetic (the stream of draws is the same).
        """
        size = len(self.prob)
        out = np.empty(n, dtype=np.int32)
        chunk = max(1, min(n, DRAW_CHUNK))
        x, col, thr = np.empty(chunk), np.empty(chunk, dtype=np.intp), np.empty(chunk)
        other, use_alias = np.empty(chunk, dtype=np.int32), np.empty(chunk, dtype=bool)
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            xs, cs, ts, os_, us, dst = x[:m], col[:m], thr[:m], other[:m], use_alias[:m], out[lo : lo + m]
            rng.random(out=xs)
            xs *= size
            np.copyto(cs, xs, casting="unsafe")  # floor: xs >= 0
            np.minimum(cs, size - 1, out=cs)  # u * n can round up to n
            np.take(self.threshold, cs, out=ts)
            np.greater_equal(xs, ts, out=us)
            np.copyto(dst, cs, casting="unsafe")
            np.take(self.alias, cs, out=os_)
            np.copyto(dst, os_, where=us)
        return out

    def draw_excluding(self, positives: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """(len(positives), k) ids, each re-drawn until it differs from its row's positive."""
        neg = self.draw(len(positives) * k, rng).reshape(len(positives), k)
        bad = np.flatnonzero(neg == positives[:, None])
        while len(bad):
            neg.flat[bad] = self.draw(len(bad), rng)
            bad = bad[neg.flat[bad] == positives[bad // k]]
        return neg


def subsample(ids: np.ndarray, keep_prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the tokens kept by frequent-word subsampling."""
    return rng.random(len(ids)) < keep_prob[ids]


def window_positions(sentence: np.ndarray, radius: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """All (center, context) positions of a kept-token stream: same sentence, 0 < |d| <= radius[center].

    Ordered by center, then context left to right (word2vec's order). Built column by column on an
    (n, 2*window) mask, one vectorised pass per offset, then read back in row-major order.
    """
    n = len(sentence)
    mask = np.zeros((n, 2 * window), dtype=bool)
    for d in range(1, min(window, n - 1) + 1):
        same = sentence[:-d] == sentence[d:]
        mask[:-d, window + d - 1] = same & (radius[:-d] >= d)  # right context i + d of center i
        mask[d:, window - d] = same & (radius[d:] >= d)  # left context i - d of center i
    flat = np.flatnonzero(mask)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    centers = flat // (2 * window)
    return centers, centers + offsets[flat % (2 * window)]


def expected_contexts(sentence: np.ndarray, window: int) -> np.ndarray:
    """Per kept token, E[number of contexts] over the radius draw: mean_b min(b, left) + min(b, right)."""
    n = len(sentence)
    starts = np.flatnonzero(np.r_[True, sentence[1:] != sentence[:-1]])
    lengths = np.diff(np.r_[starts, n])
    left = np.arange(n) - np.repeat(starts, lengths)
    right = np.repeat(lengths, lengths) - 1 - left
    b = np.arange(1, window + 1)
    g = np.minimum(b[None, :], np.arange(window + 1)[:, None]).mean(axis=1)  # g[m] = mean_b min(b, m)
    return g[np.minimum(left, window)] + g[np.minimum(right, window)]


# ---- statistics -----------------------------------------------------------------------------------


@dataclass
class SkipgramStats:
    """Realised statistics, additive over shards; `summary()` compares them with their expectations."""

    window: int
    negatives_per_example: int
    cbow: bool = False
    tokens: int = 0
    kept: int = 0
    kept_expected: float = 0.0
    kept_variance: float = 0.0
    examples: int = 0
    pairs: int = 0  # skip-gram pairs; for CBOW, the context words summed over examples
    pairs_expected: float = 0.0
    radius_hist: list[int] = field(default_factory=list)
    shards_written: int = 0
    shards_reused: int = 0
    negative_counts: np.ndarray | None = None
    positive_counts: np.ndarray | None = None
    noise: np.ndarray | None = None  # unigram^0.75 over the vocabulary, set by write_skipgram

    def scalars(self) -> dict[str, object]:
        """The JSON-able fields (what a shard's metadata stores besides the count arrays)."""
        skip = {"negative_counts", "positive_counts", "noise", "shards_written", "shards_reused"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def add(self, other: SkipgramStats) -> None:
        """Accumulate another shard's statistics."""
        for key in ("tokens", "kept", "kept_expected", "kept_variance", "examples", "pairs", "pairs_expected",
                    "shards_written", "shards_reused"):  # fmt: skip
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.radius_hist = (np.array(self.radius_hist or [0] * self.window) + other.radius_hist).tolist()
        for key in ("negative_counts", "positive_counts"):
            mine, theirs = getattr(self, key), getattr(other, key)
            setattr(self, key, theirs.copy() if mine is None else mine + theirs)

    def expected_negatives(self) -> np.ndarray:
        """Expected negative count per word given the positives, re-drawing included.

        A negative of an example with positive p is drawn from q conditioned on != p, so
        E[n_w] = k * q_w * sum_{examples, p != w} 1 / (1 - q_p).
        """
        q, pos, k = self.noise, self.positive_counts, self.negatives_per_example
        assert q is not None and pos is not None
        per_example = pos / (1 - q)
        return k * q * (per_example.sum() - per_example)

    def summary(self) -> dict[str, float]:
        """Realised statistics next to their expectations, as floats for tracking."""
        w = self.window
        radius = np.arange(1, w + 1)
        hist = np.asarray(self.radius_hist or [0] * w, dtype=np.float64)
        out = {
            "tokens": float(self.tokens),
            "kept_tokens": float(self.kept),
            "examples": float(self.examples),
            "pairs": float(self.pairs),
            "subsample_keep_rate": self.kept / max(self.tokens, 1),
            "subsample_keep_rate_expected": self.kept_expected / max(self.tokens, 1),
            "pairs_per_word": self.pairs / max(self.kept, 1),
            "pairs_per_word_expected": self.pairs_expected / max(self.kept, 1),
            "mean_radius": float(hist @ radius / max(hist.sum(), 1)),
            "mean_radius_expected": (w + 1) / 2,
            "shards_written": float(self.shards_written),
            "shards_reused": float(self.shards_reused),
        }
        if self.negative_counts is not None and self.noise is not None and self.negative_counts.sum():
            observed = self.negative_counts / self.negative_counts.sum()
            expected = self.expected_negatives()
            expected_p = expected / expected.sum()
            out["negatives_tv"] = 0.5 * float(np.abs(observed - expected_p).sum())
            out["negatives_tv_unigram075"] = 0.5 * float(np.abs(observed - self.noise).sum())
            buckets = _mass_buckets(self.noise)
            out["negatives_tv_buckets"] = 0.5 * float(
                np.abs(np.bincount(buckets, observed) - np.bincount(buckets, expected_p)).sum()
            )
            for i in range(min(TOP_WORDS, len(expected))):
                out[f"negatives_ratio_top{i + 1}"] = float(self.negative_counts[i] / max(expected[i], 1e-12))
        return out


def _mass_buckets(q: np.ndarray) -> np.ndarray:
    """Bucket per word: contiguous runs of the (count-sorted) vocabulary of about 1/BUCKETS noise mass."""
    before = np.cumsum(q) - q
    return np.minimum((before * BUCKETS).astype(np.int64), BUCKETS - 1)


def check_skipgram(stats: SkipgramStats, cfg: SkipgramSpec, tolerance: float) -> list[str]:
    """Statistics outside their allowance, as messages (empty = pass).

    The allowance is `tolerance` or four standard errors of sampling noise, whichever is larger,
    so a small split cannot fail by chance and a large one is held to `tolerance`.
    """
    s = stats.summary()
    w, failures = cfg.window, []
    kept, tokens = max(stats.kept, 1), max(stats.tokens, 1)

    def gate(key: str, target: float, se: float, relative: bool = False) -> None:
        deviation = s[key] / target - 1 if relative else s[key] - target
        allowed = max(tolerance, 4 * se)
        if abs(deviation) > allowed:
            kind = "relative " if relative else ""
            failures.append(f"skipgram {key} = {s[key]:.4f}, expected {target:.4f} ({kind}allowance {allowed:.4f})")

    gate("subsample_keep_rate", s["subsample_keep_rate_expected"], np.sqrt(stats.kept_variance) / tokens)
    gate("mean_radius", (w + 1) / 2, np.sqrt((w * w - 1) / 12 / kept), relative=True)
    if stats.pairs_expected > 0:  # CBOW: the same count, context words per center
        # Each center's context count varies at most like 2b: var <= (w^2 - 1) / 3.
        gate("pairs_per_word", s["pairs_per_word_expected"], np.sqrt(kept * (w * w - 1) / 3) / stats.pairs_expected,
             relative=True)  # fmt: skip
    if "negatives_tv_buckets" in s:
        draws = float(stats.negative_counts.sum())  # type: ignore[union-attr]
        gate("negatives_tv_buckets", 0.0, np.sqrt(BUCKETS / draws))
        expected = stats.expected_negatives()
        for i in range(min(TOP_WORDS, len(expected))):
            gate(f"negatives_ratio_top{i + 1}", 1.0, 1 / np.sqrt(max(expected[i], 1.0)))
    return failures


# ---- one shard ------------------------------------------------------------------------------------


@dataclass
class ShardExamples:
    """One shard's examples as arrays (CBOW: `context` flat with `context_offsets`)."""

    center: np.ndarray
    context: np.ndarray
    negatives: np.ndarray  # (examples, k)
    context_offsets: np.ndarray | None
    stats: SkipgramStats

    def table(self) -> pa.Table:
        """The shard as Arrow: center int32, context int32 | list<int32>, negatives list<int32>."""
        n, k = self.negatives.shape
        negatives = pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), pa.array(self.negatives.reshape(-1))
        )
        if self.context_offsets is None:
            context = pa.array(self.context)
        else:
            context = pa.ListArray.from_arrays(pa.array(self.context_offsets), pa.array(self.context))
        return pa.Table.from_arrays([pa.array(self.center), context, negatives], ["center", "context", "negatives"])


def flatten(sentences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sentences as one int32 id array and their int64 offsets (len + 1)."""
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences)), out=offsets[1:])
    ids = np.concatenate(sentences).astype(np.int32, copy=False) if len(sentences) else np.zeros(0, np.int32)
    return ids, offsets


def skipgram_shard(
    ids: np.ndarray,
    lengths: np.ndarray,
    keep_prob: np.ndarray,
    sampler: NegativeSampler,
    cfg: SkipgramSpec,
    rng: np.random.Generator,
) -> ShardExamples:
    """Subsample, window and draw negatives for one shard (ids of consecutive sentences of `lengths`)."""
    w, v = cfg.window, len(keep_prob)
    sentence = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    p = keep_prob[ids]
    keep = subsample(ids, keep_prob, rng)
    ids, sentence = ids[keep], sentence[keep]
    radius = rng.integers(1, w + 1, size=len(ids), dtype=np.int32)
    centers, contexts = window_positions(sentence, radius, w)
    stats = SkipgramStats(
        window=w, negatives_per_example=cfg.negatives, cbow=cfg.cbow,
        tokens=len(keep), kept=len(ids), kept_expected=float(p.sum()), kept_variance=float((p * (1 - p)).sum()),
        pairs=len(centers), pairs_expected=float(expected_contexts(sentence, w).sum()),
        radius_hist=np.bincount(radius, minlength=w + 1)[1:].tolist(),
    )  # fmt: skip
    if cfg.cbow:
        per_center = np.bincount(centers, minlength=len(ids))
        rows = np.flatnonzero(per_center)
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(per_center[rows], out=offsets[1:])
        center, context, positive = ids[rows], ids[contexts], ids[rows]
    else:
        offsets = None
        center, context = ids[centers], ids[contexts]
        positive = context
    negatives = sampler.draw_excluding(positive, cfg.negatives, rng)
    stats.examples = len(center)
    stats.negative_counts = np.bincount(negatives.reshape(-1), minlength=v).astype(np.int64)
    stats.positive_counts = np.bincount(positive, minlength=v).astype(np.int64)
    return ShardExamples(center, context, negatives, offsets, stats)


# ---- shards on disk -------------------------------------------------------------------------------


def plan_shards(ids: np.ndarray, offsets: np.ndarray, keep_prob: np.ndarray, cfg: SkipgramSpec) -> np.ndarray:
    """Sentence boundaries of the shards: about `shard_size` expected examples each, no random draw.

    A kept token yields about window + 1 skip-gram pairs (2 * E[b]) or one CBOW example.
    """
    per_token = 1.0 if cfg.cbow else cfg.window + 1.0
    cumulative = np.r_[0.0, np.cumsum(keep_prob[ids])]
    shard_of = (cumulative[offsets[:-1]] * per_token // cfg.shard_size).astype(np.int64)
    return np.searchsorted(shard_of, np.arange(int(shard_of[-1]) + 2 if len(shard_of) else 1))


def shard_path(out_dir: Path, shard: int) -> Path:
    """Where shard `shard` is written."""
    return out_dir / f"part-{shard:05d}.parquet"


def _write_shard(shard: int, work: dict[str, Any]) -> SkipgramStats:
    """One skip-gram shard written (`work`: the encoded corpus, shard bounds, sampler and spec every shard reads)."""
    ids: np.ndarray = work["ids"]
    offsets: np.ndarray = work["offsets"]
    bounds: np.ndarray = work["bounds"]
    cfg: SkipgramSpec = work["cfg"]
    out_dir: Path = work["out_dir"]
    rng = np.random.default_rng([work["seed"], OBJECTIVE_CODE, shard])
    first, last = bounds[shard], bounds[shard + 1]
    shard_examples = skipgram_shard(
        ids[offsets[first] : offsets[last]], np.diff(offsets[first : last + 1]),
        work["keep_prob"], work["sampler"], cfg, rng,
    )  # fmt: skip
    stats = shard_examples.stats
    meta = {
        **stats_meta(STATS_KEY, stats.scalars()),
        # Per-word counts, compressed: mostly small numbers, and the footer is read on every resume.
        NEG_KEY: zlib.compress(stats.negative_counts.tobytes(), 1),  # type: ignore[union-attr]
        POS_KEY: zlib.compress(stats.positive_counts.tobytes(), 1),  # type: ignore[union-attr]
    }
    write_shard(shard_examples.table(), shard_path(out_dir, shard), meta)
    stats.shards_written = 1
    return stats


def read_shard_stats(path: Path) -> SkipgramStats:
    """The statistics a shard file carries in its metadata (resume without regenerating)."""
    meta = read_meta(path)
    stats = SkipgramStats(**json.loads(meta[STATS_KEY]))
    stats.negative_counts = np.frombuffer(zlib.decompress(meta[NEG_KEY]), dtype=np.int64).copy()
    stats.positive_counts = np.frombuffer(zlib.decompress(meta[POS_KEY]), dtype=np.int64).copy()
    stats.shards_reused = 1
    return stats


def write_skipgram(
    sentences: Sequence[np.ndarray],
    vocab: Vocab,
    cfg: SkipgramSpec,
    seed: int,
    out_dir: Path,
    progress: Progress = no_progress,
    workers: int = 1,
    shards: Iterable[int] | None = None,
) -> SkipgramStats:
    """Write skip-gram (or CBOW) shards `part-<shard>.parquet` and `vocab.parquet` into `out_dir`.

    `shards` restricts the work to some shard indices (the others are neither written nor counted);
    the files are the same whichever subset, order or worker count produced them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / VOCAB_FILE
    if not vocab_path.exists():
        vocab.save(vocab_path)
    keep_prob = keep_probability(vocab.counts, cfg.subsample)
    noise = noise_distribution(vocab.counts)
    ids, offsets = flatten(sentences)
    bounds = plan_shards(ids, offsets, keep_prob, cfg)
    wanted = range(len(bounds) - 1) if shards is None else sorted(set(shards))
    total = SkipgramStats(window=cfg.window, negatives_per_example=cfg.negatives, cbow=cfg.cbow)
    total.negative_counts = np.zeros(len(vocab), np.int64)
    total.positive_counts = np.zeros(len(vocab), np.int64)
    todo = []
    for shard in wanted:
        path = shard_path(out_dir, shard)
        if path.exists():
            total.add(read_shard_stats(path))
        else:
            todo.append(shard)
    work = dict(ids=ids, offsets=offsets, bounds=bounds, cfg=cfg, out_dir=out_dir, seed=seed, keep_prob=keep_prob,
                sampler=NegativeSampler(noise))  # fmt: skip
    for stats in run_shards(_write_shard, todo, work, workers, grouped=True, share=out_dir):
        total.add(stats)
        progress("skipgram", total.examples, None)
    total.noise = noise
    return total
