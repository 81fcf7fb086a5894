"""Causal-LM examples: documents packed into fixed-length sequences with EOS between them (GPT).

Per shard of `docs_per_shard` documents: the documents are put in a seeded order
(`default_rng([seed, 11, shard])`), each document's sentences are concatenated and followed by EOS,
and the stream is cut into `seq_len` sequences; the last partial sequence is dropped and counted.
With `boundary_mask`, `doc_index list<int16>` gives each token's document index within its
sequence (0 for the first, possibly partial, document), from which block-diagonal attention masks
are built. Shards are `part-<shard>.parquet`, written atomically, skipped when present (resume),
statistics in their metadata: the output does not depend on which run or worker wrote a shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from plm.config import ObjectivesSpec
from plm.objectives.shardio import read_stats, stats_meta, write_shard
from plm.tracker import Progress, no_progress

if TYPE_CHECKING:  # only the shape (doc_id, sentences) is used; no import-time coupling
    from plm.tokenizer.encode import EncodedDoc

OBJECTIVE_CODE = 11
STATS_KEY = b"plm.clm.stats"


@dataclass
class ClmStats:
    """Packing statistics, additive over shards."""

    sequences: int = 0
    tokens: int = 0  # tokens inside the written sequences, EOS included
    dropped_tokens: int = 0  # the partial tail of each shard's stream
    docs: int = 0
    doc_segments: int = 0  # (sequence, document) pieces: sum over sequences of the documents they touch
    shards_written: int = 0
    shards_reused: int = 0

    def add(self, other: ClmStats) -> None:
        """Accumulate another shard's statistics."""
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def summary(self) -> dict[str, float]:
        """Counts and means as floats for tracking."""
        return {
            "sequences": float(self.sequences),
            "tokens": float(self.tokens),
            "dropped_tokens": float(self.dropped_tokens),
            "dropped_fraction": self.dropped_tokens / max(self.tokens + self.dropped_tokens, 1),
            "docs": float(self.docs),
            "docs_per_sequence": self.doc_segments / max(self.sequences, 1),
            "shards_written": float(self.shards_written),
            "shards_reused": float(self.shards_reused),
        }


@dataclass
class Packed:
    """Packed sequences: (n, seq_len) ids and document indices, and the dropped tail of the stream."""

    input_ids: np.ndarray  # int32
    doc_index: np.ndarray  # int16
    tail: np.ndarray  # int32
    stats: ClmStats


def pack_clm(docs: Sequence[Sequence[np.ndarray]], seq_len: int, eos_id: int) -> Packed:
    """Concatenate documents (each a list of sentence id arrays) with EOS after each; cut into rows."""
    if seq_len >= 1 << 15:
        raise ValueError("seq_len must be < 32768 (doc_index is int16)")
    pieces: list[np.ndarray] = []
    eos = np.array([eos_id], dtype=np.int32)
    lengths = np.empty(len(docs), dtype=np.int64)
    for i, sentences in enumerate(docs):
        pieces.extend(sentences)
        pieces.append(eos)
        lengths[i] = sum(len(s) for s in sentences) + 1
    stream = np.concatenate(pieces).astype(np.int32, copy=False) if pieces else np.zeros(0, np.int32)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    n = len(stream) // seq_len
    cut = n * seq_len
    ids = stream[:cut].reshape(n, seq_len)
    doc = doc_of[:cut].reshape(n, seq_len)
    doc_index = (doc - doc[:, :1]).astype(np.int16)
    stats = ClmStats(
        sequences=n, tokens=cut, dropped_tokens=len(stream) - cut, docs=len(docs),
        doc_segments=int(doc_index[:, -1].astype(np.int64).sum()) + n,
    )  # fmt: skip
    return Packed(ids, doc_index, stream[cut:], stats)


def _fixed_lists(rows: np.ndarray, dtype: pa.DataType) -> pa.ListArray:
    n, width = rows.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1), type=dtype))


def clm_table(packed: Packed, boundary_mask: bool) -> pa.Table:
    """The shard schema: `input_ids list<int32>` (+ `doc_index list<int16>` with boundary masks)."""
    columns = {"input_ids": _fixed_lists(packed.input_ids, pa.int32())}
    if boundary_mask:
        columns["doc_index"] = _fixed_lists(packed.doc_index, pa.int16())
    return pa.table(columns)


def shard_order(n_docs: int, seed: int, shard: int) -> np.ndarray:
    """The seeded order of a shard's documents."""
    return np.random.default_rng([seed, OBJECTIVE_CODE, shard]).permutation(n_docs)


def shard_path(out_dir: Path, shard: int) -> Path:
    """Where shard `shard` is written."""
    return out_dir / f"part-{shard:05d}.parquet"


def _write_shard(docs: Sequence[EncodedDoc], cfg: ObjectivesSpec, eos_id: int, shard: int, path: Path) -> ClmStats:
    order = shard_order(len(docs), cfg.seed, shard)
    packed = pack_clm([docs[i].sentences for i in order], cfg.seq_len, eos_id)
    table = clm_table(packed, cfg.clm.boundary_mask)
    write_shard(table, path, stats_meta(STATS_KEY, asdict(packed.stats)))
    packed.stats.shards_written = 1
    return packed.stats


def read_shard_stats(path: Path) -> ClmStats:
    """The statistics a shard file carries in its metadata."""
    stats = ClmStats(**read_stats(path, STATS_KEY))
    stats.shards_written, stats.shards_reused = 0, 1
    return stats


def write_clm(
    docs: Sequence[EncodedDoc],
    split: str,
    cfg: ObjectivesSpec,
    eos_id: int,
    out_dir: Path,
    progress: Progress = no_progress,
) -> ClmStats:
    """Pack one split's documents into `out_dir/part-<shard>.parquet`, `cfg.docs_per_shard` documents a shard."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = ClmStats()
    n_shards = -(-len(docs) // cfg.docs_per_shard)
    for shard in range(n_shards):
        path = shard_path(out_dir, shard)
        if path.exists():
            total.add(read_shard_stats(path))
        else:
            lo = shard * cfg.docs_per_shard
            total.add(_write_shard(docs[lo : lo + cfg.docs_per_shard], cfg, eos_id, shard, path))
        progress(f"clm {split}", shard + 1, n_shards)
    return total
