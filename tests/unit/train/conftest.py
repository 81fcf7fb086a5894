"""Tiny learnable example shards (MLM+NSP and CLM) and debug-size model configs shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from plm.train.loader import StreamingLoader

VOCAB = 64
SEQ = 32


def write_mlm_shard(path: Path, rows: int, seed: int) -> Path:
    """Segment A repeats one token, B the same (NSP 0) or another (NSP 1); 15 % masked, always position 1."""
    rng = np.random.default_rng(seed)
    ids, types, labels, nsp = [], [], [], []
    for _ in range(rows):
        motif = rng.integers(5, VOCAB, 1)
        is_random = int(rng.random() < 0.5)
        other = rng.integers(5, VOCAB, 1) if is_random else motif
        la, lb = int(rng.integers(4, 12)), int(rng.integers(4, 12))
        row = np.concatenate([[2], np.resize(motif, la), [3], np.resize(other, lb), [3]]).astype(np.int64)
        lab = np.full(len(row), -100)
        pick = (rng.random(len(row)) < 0.15) & ~np.isin(row, [2, 3])
        pick[1] = True
        lab[pick] = row[pick]
        row[pick] = 4
        ids.append(row.tolist())
        types.append([0] * (la + 2) + [1] * (lb + 1))
        labels.append(lab.tolist())
        nsp.append(is_random)
    table = pa.table({
        "input_ids": pa.array(ids, pa.list_(pa.int32())),
        "token_type_ids": pa.array(types, pa.list_(pa.int8())),
        "labels": pa.array(labels, pa.list_(pa.int32())),
        "nsp_label": pa.array(nsp, pa.int8()),
    })  # fmt: skip
    pq.write_table(table, path, row_group_size=16)  # several row groups: the streaming reader seeks
    return path


def write_clm_shard(path: Path, rows: int, seed: int) -> Path:
    """Fixed-length sequences counting up from a random start (mod the vocabulary): next token = this + 1."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(1, VOCAB, rows)
    ids = [[1 + (int(s) + t) % (VOCAB - 1) for t in range(SEQ)] for s in starts]
    pq.write_table(pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32()))}), path, row_group_size=16)
    return path


def make_shards(d: Path, kind: str, n_train: int = 4, rows: int = 48) -> tuple[list[Path], list[Path]]:
    """`n_train` training shards and one held-out shard of `kind` (mlm | clm) under `d`."""
    write = write_mlm_shard if kind == "mlm" else write_clm_shard
    d.mkdir(parents=True, exist_ok=True)
    train = [write(d / f"part-{i:05d}.parquet", rows, seed=i) for i in range(n_train)]
    return train, [write(d / "val-00000.parquet", 32, seed=100)]


@pytest.fixture(scope="session")
def mlm_shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("mlm"), "mlm")


@pytest.fixture(scope="session")
def clm_shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("clm"), "clm")


class BothRanks:
    """One process's loader yielding rank 0's micro-batch rows followed by rank 1's (what two DDP ranks of
    batch_size // 2 see together), for the one-process side of the DDP equivalence tests."""

    def __init__(self, train: list[Path], spec, kind: str = "clm") -> None:
        self.ranks = [StreamingLoader(train, spec.batch_size // 2, kind, seed=spec.seed,
                                      buffer_rows=spec.shuffle_buffer, rank=r, world=2) for r in range(2)]  # fmt: skip

    def __next__(self) -> dict[str, torch.Tensor]:
        parts = [next(r) for r in self.ranks]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def state_dict(self) -> dict:
        return {"ranks": [r.state_dict() for r in self.ranks]}

    def load_state_dict(self, state: dict) -> None:
        for r, s in zip(self.ranks, state["ranks"], strict=True):
            r.load_state_dict(s)


@pytest.fixture(scope="session")
def both_ranks():
    """The `BothRanks` class (conftest modules are not importable under --import-mode=importlib)."""
    return BothRanks
