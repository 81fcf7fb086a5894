"""BERT pretraining examples (NSP pairs + MLM masks) written as Parquet shards, with realised statistics.

Shard schema: input_ids list<int32>, token_type_ids list<int8>, labels list<int32> (-100 where not
predicted), nsp_label int8 (0 = IsNext, 1 = random), a_doc_id, b_doc_id. Sequences are unpadded.
Each (split, copy) draws from its own RNG seeded by (seed, split, copy), so the output does not
depend on how the work is scheduled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plm.config import ObjectivesSpec
from plm.objectives.mlm import mask_tokens
from plm.objectives.nsp import PairInstance, create_pairs
from plm.tokenizer.encode import EncodedDoc
from plm.tokenizer.train import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS
from plm.tracker import Progress, no_progress

SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("token_type_ids", pa.list_(pa.int8())),
        ("labels", pa.list_(pa.int32())),
        ("nsp_label", pa.int8()),
        ("a_doc_id", pa.string()),
        ("b_doc_id", pa.string()),
    ]
)
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


@dataclass
class ExampleStats:
    examples: int = 0
    tokens: int = 0
    candidates: int = 0
    selected: int = 0
    masked: int = 0
    random: int = 0
    kept: int = 0
    nsp_random: int = 0
    nsp_forced: int = 0
    lengths: list[int] = field(default_factory=list)

    def add(self, other: ExampleStats) -> None:
        for name in ("examples", "tokens", "candidates", "selected", "masked", "random", "kept", "nsp_random", "nsp_forced"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.lengths.extend(other.lengths)

    def summary(self) -> dict[str, float]:
        sel = max(self.selected, 1)
        coin = self.examples - self.nsp_forced
        return {
            "examples": float(self.examples),
            "tokens": float(self.tokens),
            "mask_rate": self.selected / max(self.candidates, 1),
            "mask_token_share": self.masked / sel,
            "random_token_share": self.random / sel,
            "unchanged_share": self.kept / sel,
            "nsp_random_rate": self.nsp_random / max(self.examples, 1),
            "nsp_random_rate_unforced": (self.nsp_random - self.nsp_forced) / max(coin, 1),
            "nsp_forced_random": float(self.nsp_forced),
            "mean_length": float(np.mean(self.lengths)) if self.lengths else 0.0,
        }


def check_statistics(stats: dict[str, float], cfg: ObjectivesSpec) -> list[str]:
    """Realised statistics outside `cfg.tolerance` of their targets, as messages (empty = pass).

    The NSP coin is checked on the pairs where it was tossed: BERT forces a random B when a chunk
    holds a single sentence, and those are reported separately (`nsp_forced_random`).
    """
    keep = 1 - cfg.mask_fraction - cfg.random_fraction
    targets = {
        "mask_rate": cfg.mlm_probability,
        "mask_token_share": cfg.mask_fraction,
        "random_token_share": cfg.random_fraction,
        "unchanged_share": keep,
        "nsp_random_rate_unforced": cfg.nsp_random_fraction,
    }
    return [
        f"{key} = {stats[key]:.4f}, target {target:.4f} +- {cfg.tolerance}"
        for key, target in targets.items()
        if abs(stats[key] - target) > cfg.tolerance
    ]


def _list_array(rows: Sequence[np.ndarray], dtype: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    values = np.concatenate(rows) if rows else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=dtype))


def _mask_and_table(
    pairs: list[PairInstance], doc_ids: list[str], cfg: ObjectivesSpec, vocab_size: int, rng: np.random.Generator
) -> tuple[pa.Table, ExampleStats]:
    n, t = len(pairs), cfg.seq_len
    ids = np.full((n, t), PAD_ID, dtype=np.int32)
    types = np.zeros((n, t), dtype=np.int8)
    lengths = np.empty(n, dtype=np.int64)
    for r, p in enumerate(pairs):
        la, lb = len(p.tokens_a), len(p.tokens_b)
        row = [CLS_ID, *p.tokens_a, SEP_ID, *p.tokens_b, SEP_ID]
        ids[r, : len(row)] = row
        types[r, la + 2 : la + lb + 3] = 1
        lengths[r] = len(row)
    special = (ids == CLS_ID) | (ids == SEP_ID) | (np.arange(t)[None, :] >= lengths[:, None])
    masked = mask_tokens(
        ids, special, rng,
        vocab_size=vocab_size, n_special=len(SPECIAL_TOKENS), mask_id=MASK_ID,
        probability=cfg.mlm_probability, max_predictions=cfg.max_predictions,
        mask_fraction=cfg.mask_fraction, random_fraction=cfg.random_fraction,
    )  # fmt: skip
    rows = range(n)
    table = pa.Table.from_arrays(
        [
            _list_array([masked.input_ids[r, : lengths[r]] for r in rows], pa.int32()),
            _list_array([types[r, : lengths[r]] for r in rows], pa.int8()),
            _list_array([masked.labels[r, : lengths[r]] for r in rows], pa.int32()),
            pa.array([int(p.is_random_next) for p in pairs], pa.int8()),
            pa.array([doc_ids[p.a_doc] for p in pairs], pa.string()),
            pa.array([doc_ids[p.b_doc] for p in pairs], pa.string()),
        ],
        schema=SCHEMA,
    )
    stats = ExampleStats(
        examples=n,
        tokens=int(lengths.sum()),
        candidates=masked.n_candidates,
        selected=masked.n_selected,
        masked=masked.n_masked,
        random=masked.n_random,
        kept=masked.n_kept,
        nsp_random=sum(p.is_random_next for p in pairs),
        nsp_forced=sum(p.forced_random for p in pairs),
        lengths=lengths.tolist(),
    )
    return table, stats


def write_bert_examples(
    docs: list[EncodedDoc],
    split: str,
    cfg: ObjectivesSpec,
    vocab_size: int,
    out_dir: Path,
    progress: Progress = no_progress,
) -> ExampleStats:
    """Generate `cfg.dupe_factor` copies of NSP+MLM examples for one split into `out_dir/part-*.parquet`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = [d.sentences for d in docs]
    doc_ids = [d.doc_id for d in docs]
    total = ExampleStats()
    shard = 0
    for copy in range(cfg.dupe_factor):
        rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], copy])
        pairs: list[PairInstance] = []
        for i in range(len(documents)):
            pairs.extend(create_pairs(documents, i, cfg.seq_len, cfg.short_seq_prob, cfg.nsp_random_fraction, rng))
        order = rng.permutation(len(pairs))
        pairs = [pairs[j] for j in order]
        for start in range(0, len(pairs), cfg.shard_size):
            table, stats = _mask_and_table(pairs[start : start + cfg.shard_size], doc_ids, cfg, vocab_size, rng)
            pq.write_table(table, out_dir / f"part-{shard:05d}.parquet", compression="zstd")
            total.add(stats)
            shard += 1
            progress(f"examples {split}", total.examples, None)
    return total
