"""Word-word co-occurrence counts for GloVe (Pennington et al. 2014), vectorised, sharded, bounded in memory.

Counting is GloVe's `cooccur` tool's: words are the skip-gram vocabulary's (`\\w+`, rare words dropped
from the sentences before windows are taken); two words d <= `window` apart in one sentence add 1/d
(`distance_weighting`, else 1) to X[word, context], and with `symmetric` to X[context, word] as well
(without it only the context to the left of each word counts, GloVe's `-symmetric 0`).

Two passes, each bounded: (1) the sentences are cut into shards of about `shard_tokens` tokens and each
shard's counts are aggregated on their own (numpy sort + segment sums) into `partial/part-<s>.parquet`;
(2) the partials are merged part by part, each part holding the rows with `i % merge_parts == part`,
into `part-<p>.parquet` (`i int32, j int32, x float64`, sorted by (i, j)). Sums are taken in a fixed
order, so the files are byte-identical whatever was resumed; a finished file is never redone.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plm.config import CooccurrenceSpec
from plm.objectives.shardio import write_shard
from plm.objectives.skipgram import VOCAB_FILE, Vocab, flatten
from plm.tracker import Progress, no_progress

PARTIAL_DIR = "partial"


@dataclass
class CooccurrenceStats:
    tokens: int = 0
    pairs: int = 0  # (word, context) increments, both directions counted when symmetric
    entries: int = 0  # non-zero cells of X after merging
    total: float = 0.0  # sum of X

    def summary(self) -> dict[str, float]:
        return {"tokens": float(self.tokens), "pairs": float(self.pairs), "entries": float(self.entries),
                "total_weight": self.total}  # fmt: skip


def count_pairs(ids: np.ndarray, lengths: np.ndarray, cfg: CooccurrenceSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every (word, context) increment of consecutive sentences (`ids` flat, `lengths` per sentence)
    as int64 keys `word * 2**32 + context` and their weights (unaggregated)."""
    sentence = np.repeat(np.arange(len(lengths)), lengths)
    keys, weights = [], []
    ids64 = ids.astype(np.int64)
    for d in range(1, cfg.window + 1):
        same = sentence[:-d] == sentence[d:]
        left, right = ids64[:-d][same], ids64[d:][same]  # `left` is the context to the left of `right`
        w = np.full(len(left), 1.0 / d if cfg.distance_weighting else 1.0)
        keys.append((right << 32) | left)
        weights.append(w)
        if cfg.symmetric:
            keys.append((left << 32) | right)
            weights.append(w)
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(keys), np.concatenate(weights)


def aggregate(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum weights per key: sorted unique keys and their totals (stable sort: a fixed summation order)."""
    if not len(keys):
        return keys, weights
    order = np.argsort(keys, kind="stable")
    keys, weights = keys[order], weights[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.add.reduceat(weights, starts)


def _table(keys: np.ndarray, values: np.ndarray) -> pa.Table:
    return pa.table({"i": pa.array((keys >> 32).astype(np.int32)), "j": pa.array((keys & 0xFFFFFFFF).astype(np.int32)),
                     "x": pa.array(values, pa.float64())})  # fmt: skip


def plan_shards(offsets: np.ndarray, shard_tokens: int) -> np.ndarray:
    """Sentence boundaries of the counting shards: about `shard_tokens` tokens each, whole sentences."""
    shard_of = offsets[:-1] // shard_tokens
    return np.searchsorted(shard_of, np.arange(int(shard_of[-1]) + 2 if len(shard_of) else 1))


def part_path(out_dir: Path, part: int) -> Path:
    return out_dir / f"part-{part:05d}.parquet"


def write_cooccurrence(
    sentences: Sequence[np.ndarray], vocab: Vocab, cfg: CooccurrenceSpec, out_dir: Path,
    progress: Progress = no_progress,
) -> CooccurrenceStats:  # fmt: skip
    """Count, then merge, into `out_dir/part-*.parquet` (+ `vocab.parquet`); see the module docstring."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / VOCAB_FILE).exists():
        vocab.save(out_dir / VOCAB_FILE)
    ids, offsets = flatten(sentences)
    stats = CooccurrenceStats(tokens=len(ids))
    partial_dir = out_dir / PARTIAL_DIR
    finals = [part_path(out_dir, p) for p in range(cfg.merge_parts)]
    bounds = plan_shards(offsets, cfg.shard_tokens)
    partials = []
    for s in range(len(bounds) - 1):
        first, last = bounds[s], bounds[s + 1]
        keys, weights = count_pairs(ids[offsets[first] : offsets[last]], np.diff(offsets[first : last + 1]), cfg)
        stats.pairs += len(keys)
        path = part_path(partial_dir, s)
        partials.append(path)
        if not path.exists() and not all(f.exists() for f in finals):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_shard(_table(*aggregate(keys, weights)), path, {})
        progress("cooccurrence", s + 1, len(bounds) - 1)
    for part, final in enumerate(finals):
        if not final.exists():
            keys, weights = [np.zeros(0, np.int64)], [np.zeros(0)]
            for path in partials:  # one partial at a time, keeping only this part's rows
                t = pq.read_table(path)
                i = t["i"].to_numpy()
                mine = i % cfg.merge_parts == part
                keys.append((i[mine].astype(np.int64) << 32) | t["j"].to_numpy()[mine].astype(np.int64))
                weights.append(t["x"].to_numpy()[mine])
            write_shard(_table(*aggregate(np.concatenate(keys), np.concatenate(weights))), final, {})
        meta = pq.read_metadata(final)
        stats.entries += meta.num_rows
        stats.total += float(pc.sum(pq.read_table(final, columns=["x"])["x"]).as_py() or 0.0)
    shutil.rmtree(partial_dir, ignore_errors=True)
    return stats


def read_cooccurrence(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All entries of the merged parts: (i int64, j int64, x float64)."""
    if not paths:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    return (table["i"].to_numpy().astype(np.int64), table["j"].to_numpy().astype(np.int64),
            table["x"].to_numpy().astype(np.float64))  # fmt: skip
