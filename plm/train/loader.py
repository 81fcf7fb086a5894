"""Batches of pretraining examples from Parquet shards: seeded shuffling, dynamic padding, resumable position.

Skeleton simplification: every shard is read into memory up front (token ids as flat numpy arrays
with offsets, ~4 bytes a token). That is fine for the quickstart corpus; a streaming reader over
row groups can replace `_Examples` later without changing the `PretrainLoader` interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from plm.models.bert import IGNORE_INDEX

PAD_ID = 0
COLUMNS = ("input_ids", "token_type_ids", "labels", "nsp_label")
Masker = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""masker(input_ids, attention_mask, rng) -> (corrupted ids, labels): dynamic MLM masking per batch."""


class _Ragged:
    """A list<int> column as flat values + offsets: row i is values[offsets[i]:offsets[i + 1]]."""

    def __init__(self, column: pa.ChunkedArray, dtype: type[np.integer]) -> None:
        arr = column.combine_chunks()
        offsets = arr.offsets.to_numpy().astype(np.int64)
        self.offsets = offsets - offsets[0]  # a sliced array's offsets start past 0; flatten() is sliced too
        self.values = arr.flatten().to_numpy(zero_copy_only=False).astype(dtype)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


class _Examples:
    """All rows of all shards, in shard order then row order."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise ValueError("no example shards given")
        table = pa.concat_tables([pq.read_table(p, columns=list(COLUMNS)) for p in paths])
        self.input_ids = _Ragged(table.column("input_ids"), np.int64)
        self.token_type_ids = _Ragged(table.column("token_type_ids"), np.int64)
        self.labels = _Ragged(table.column("labels"), np.int64)
        self.nsp_label = table.column("nsp_label").to_numpy().astype(np.int64)
        self.lengths = self.input_ids.lengths()

    def __len__(self) -> int:
        return len(self.nsp_label)

    def collate(
        self, idx: np.ndarray, masker: Masker | None = None, rng: np.random.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad the rows `idx` to the longest of them: ids 0, token types 0, labels -100, mask 0.

        With a `masker`, the stored (clean) ids are masked here and the labels come from it.
        """
        T = int(self.lengths[idx].max())
        B = len(idx)
        input_ids = np.full((B, T), PAD_ID, dtype=np.int64)
        token_type_ids = np.zeros((B, T), dtype=np.int64)
        labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
        attention_mask = np.zeros((B, T), dtype=np.int64)
        for b, i in enumerate(idx):
            n = self.lengths[i]
            input_ids[b, :n] = self.input_ids.row(i)
            token_type_ids[b, :n] = self.token_type_ids.row(i)
            labels[b, :n] = self.labels.row(i)
            attention_mask[b, :n] = 1
        if masker is not None:
            input_ids, labels = masker(input_ids, attention_mask, rng or np.random.default_rng())
        return {
            "input_ids": torch.from_numpy(input_ids),
            "token_type_ids": torch.from_numpy(token_type_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels),
            "nsp_label": torch.from_numpy(self.nsp_label[idx]),
        }


@dataclass
class LoaderPosition:
    """Where the next batch starts: `index` rows into the permutation of `epoch`."""

    epoch: int = 0
    index: int = 0


class PretrainLoader:
    """Infinite iterator of padded batches, reshuffled every epoch with a generator seeded by (seed, epoch).

    The batch sequence depends only on (shards, batch_size, seed, shuffle), so a run restored to a
    `state_dict()` sees exactly the batches the uninterrupted run would have seen. An epoch's tail
    shorter than `batch_size` is dropped (`drop_last`) so every training batch has the same size.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        masker: Masker | None = None,
    ) -> None:
        self.examples = _Examples([Path(p) for p in paths])
        self.masker = masker
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        if drop_last and len(self.examples) < batch_size:
            raise ValueError(f"{len(self.examples)} examples are fewer than one batch of {batch_size}")
        self.position = LoaderPosition()
        self._order = self._permutation(0)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.examples)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _permutation(self, epoch: int) -> np.ndarray:
        n = len(self.examples)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        pos = self.position
        n = len(self.examples)
        remaining = n - pos.index
        if remaining <= 0 or (self.drop_last and remaining < self.batch_size):
            self.position = pos = LoaderPosition(pos.epoch + 1, 0)
            self._order = self._permutation(pos.epoch)
        idx = self._order[pos.index : pos.index + self.batch_size]
        self.position = LoaderPosition(pos.epoch, pos.index + len(idx))
        # The mask RNG depends only on the batch position: a resumed run draws the same masks.
        rng = np.random.default_rng([self.seed, 7, pos.epoch, pos.index]) if self.masker else None
        return self.examples.collate(idx, self.masker, rng)

    def epoch_batches(self, max_batches: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """One pass in epoch-0 order (e.g. evaluation), at most `max_batches`; leaves the position alone."""
        order = self._permutation(0)
        for k, start in enumerate(range(0, len(order), self.batch_size)):
            if max_batches is not None and k >= max_batches:
                return
            rng = np.random.default_rng([self.seed, 8, k]) if self.masker else None
            yield self.examples.collate(order[start : start + self.batch_size], self.masker, rng)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.position.epoch, "index": self.position.index, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"loader state was saved with seed {state['seed']}, this loader has seed {self.seed}")
        self.position = LoaderPosition(int(state["epoch"]), int(state["index"]))
        self._order = self._permutation(self.position.epoch)
