"""Batches of pretraining examples from Parquet shards: streaming, seeded shuffling, prefetch, resumable position.

Two readers share one collation:
- `StreamingLoader` (training): reads row groups on demand, so memory is bounded by the shuffle
  buffer. Per epoch the shard order is permuted (seeded by (seed, epoch)); rows flow in that order
  into buffers of `buffer_rows` rows, each buffer is permuted with a generator seeded by
  (seed, epoch, buffer) and cut into batches. Its state (epoch, buffer number, where the buffer
  starts, rows of it consumed) is enough to rebuild the exact batch sequence after a restart.
  With `world > 1`, rank r reads shards r, r + world, ... (every rank its own data).
- `PretrainLoader` (evaluation, small sets): every shard in memory, one permutation per epoch.
`Prefetcher` runs a loader in a background thread `depth` batches ahead and measures the time the
training loop waits for data; its `state_dict()` is the state after the last batch *consumed*.

Row kinds: `mlm` (input_ids, token_type_ids, labels, nsp_label; padded per batch, optional dynamic
`Masker`) and `clm` (fixed-length input_ids, labels = input_ids (the model shifts), optional doc_index).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from plm.models.bert import IGNORE_INDEX

PAD_ID = 0
COLUMNS = ("input_ids", "token_type_ids", "labels", "nsp_label")
CLM_COLUMNS = ("input_ids",)
Kind = Literal["mlm", "clm"]
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


def _columns(kind: Kind, schema: pa.Schema) -> list[str]:
    if kind == "mlm":
        return list(COLUMNS)
    return ["input_ids"] + (["doc_index"] if "doc_index" in schema.names else [])


class _Examples:
    """Rows of a table (all shards, or one shuffle buffer) as flat arrays, in table order."""

    def __init__(self, table: pa.Table, kind: Kind) -> None:
        self.kind = kind
        self.input_ids = _Ragged(table.column("input_ids"), np.int64)
        self.lengths = self.input_ids.lengths()
        self.doc_index = _Ragged(table.column("doc_index"), np.int64) if "doc_index" in table.column_names else None
        if kind == "mlm":
            self.token_type_ids = _Ragged(table.column("token_type_ids"), np.int64)
            self.labels = _Ragged(table.column("labels"), np.int64)
            self.nsp_label = table.column("nsp_label").to_numpy().astype(np.int64)

    @classmethod
    def read(cls, paths: Sequence[Path], kind: Kind) -> _Examples:
        if not paths:
            raise ValueError("no example shards given")
        cols = _columns(kind, pq.read_schema(paths[0]))
        return cls(pa.concat_tables([pq.read_table(p, columns=cols) for p in paths]), kind)

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, idx: Sequence[int]) -> list[tuple[np.ndarray, ...]]:
        """The rows `idx` as tuples of arrays (kind mlm: ids, types, labels, nsp; clm: ids[, doc_index])."""
        if self.kind == "mlm":
            return [(self.input_ids.row(i), self.token_type_ids.row(i), self.labels.row(i), self.nsp_label[i])
                    for i in idx]  # fmt: skip
        if self.doc_index is not None:
            return [(self.input_ids.row(i), self.doc_index.row(i)) for i in idx]
        return [(self.input_ids.row(i),) for i in idx]

    def collate(self, idx: Sequence[int], masker: Masker | None = None, rng: np.random.Generator | None = None):
        return collate(self.kind, self.rows(idx), masker, rng)


def collate(
    kind: Kind, rows: list[tuple[np.ndarray, ...]], masker: Masker | None = None, rng: np.random.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Stack rows into a batch. mlm: pad to the longest row (ids 0, types 0, labels -100, mask 0), and with a
    `masker` mask the stored (clean) ids here; clm: rows have one length, labels = input_ids."""
    B = len(rows)
    if kind == "clm":
        input_ids = torch.from_numpy(np.stack([r[0] for r in rows]).astype(np.int64))
        batch = {"input_ids": input_ids, "labels": input_ids.clone()}
        if rows and len(rows[0]) > 1:
            batch["doc_index"] = torch.from_numpy(np.stack([r[1] for r in rows]).astype(np.int64))
        return batch
    T = max(len(r[0]) for r in rows)
    input_ids = np.full((B, T), PAD_ID, dtype=np.int64)
    token_type_ids = np.zeros((B, T), dtype=np.int64)
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
    attention_mask = np.zeros((B, T), dtype=np.int64)
    for b, (ids, types, labs, _) in enumerate(rows):
        n = len(ids)
        input_ids[b, :n] = ids
        token_type_ids[b, :n] = types
        labels[b, :n] = labs
        attention_mask[b, :n] = 1
    if masker is not None:
        input_ids, labels = masker(input_ids, attention_mask, rng or np.random.default_rng())
    return {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "labels": torch.from_numpy(labels),
        "nsp_label": torch.from_numpy(np.array([r[3] for r in rows], dtype=np.int64)),
    }


def tokens_in(batch: dict[str, torch.Tensor]) -> int:
    """Real (non-padding) tokens of a batch."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


def mlm_positions(labels: torch.Tensor, multiple: int = 64) -> torch.Tensor:
    """(B, T) MLM labels (-100 = not predicted) on the host -> (P,) flat indices of the predicted positions,
    padded with B * T (out of range: "no position") up to a multiple of `multiple`.

    Made on the host, it spares the device a boolean gather (a sync) and gives the model a few fixed
    shapes (P in steps of `multiple`), so a compiled step is not recompiled for every count.
    """
    flat = (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)  # (N,)
    size = max(multiple, -(-flat.numel() // multiple) * multiple)
    padded = torch.full((size,), labels.numel(), dtype=torch.int64)
    padded[: flat.numel()] = flat
    return padded


# ---- streaming ----------------------------------------------------------------------------------


@dataclass
class StreamState:
    """Where the next row comes from: row `offset` of buffer `buffer` of `epoch`, which starts at
    row `start_row` of the `start_shard`-th shard in that epoch's shard order."""

    epoch: int = 0
    buffer: int = 0
    start_shard: int = 0
    start_row: int = 0
    offset: int = 0


class StreamingLoader:
    """Infinite iterator of batches streamed from Parquet row groups with a seeded shuffle buffer.

    The batch sequence depends only on (shards, rank, world, batch_size, buffer_rows, seed, shuffle),
    so a loader restored to a `state_dict()` yields exactly the batches the uninterrupted one would.
    A partial batch at the end of an epoch is dropped so that every batch has `batch_size` rows.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        batch_size: int,
        kind: Kind = "mlm",
        seed: int = 0,
        buffer_rows: int = 8192,
        shuffle: bool = True,
        masker: Masker | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        paths = [Path(p) for p in sorted(paths)][rank::world]
        if not paths:
            raise ValueError(f"no example shards for rank {rank} of {world} (shard i goes to rank i % world)")
        self.paths, self.batch_size, self.kind, self.seed = paths, batch_size, kind, seed
        self.buffer_rows, self.shuffle, self.masker = max(buffer_rows, 1), shuffle, masker
        self.rank, self.world = rank, world
        self.row_groups = [[pq.ParquetFile(p).metadata.row_group(i).num_rows
                            for i in range(pq.ParquetFile(p).metadata.num_row_groups)] for p in paths]  # fmt: skip
        self.rows_per_shard = [sum(g) for g in self.row_groups]
        if sum(self.rows_per_shard) < batch_size:
            raise ValueError(f"{sum(self.rows_per_shard)} examples are fewer than one batch of {batch_size}")
        self.columns = _columns(kind, pq.read_schema(paths[0]))
        self.state = StreamState()
        self._buffer: tuple[_Examples, np.ndarray, tuple[int, int]] | None = None  # rows, order, end position

    def _shard_order(self, epoch: int) -> np.ndarray:
        n = len(self.paths)
        return np.random.default_rng([self.seed, 3, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def _read(self, epoch: int, shard_pos: int, row: int) -> tuple[pa.Table | None, tuple[int, int]]:
        """Up to `buffer_rows` rows from (shard_pos, row) of `epoch`'s shard order, row group by row group."""
        order = self._shard_order(epoch)
        parts, need = [], self.buffer_rows
        while need > 0 and shard_pos < len(order):
            s = int(order[shard_pos])
            if row >= self.rows_per_shard[s]:
                shard_pos, row = shard_pos + 1, 0
                continue
            f = pq.ParquetFile(self.paths[s])
            first = 0
            for g, n in enumerate(self.row_groups[s]):
                if row < first + n:
                    table = f.read_row_group(g, columns=self.columns).slice(row - first, need)
                    parts.append(table)
                    need -= table.num_rows
                    row += table.num_rows
                    break
                first += n
        table = pa.concat_tables(parts) if parts else None
        return table, (shard_pos, row)

    def _load_buffer(self) -> bool:
        """Fill the buffer at the current state; False when the epoch has no rows left."""
        st = self.state
        table, end = self._read(st.epoch, st.start_shard, st.start_row)
        if table is None or table.num_rows == 0:
            return False
        n = table.num_rows
        order = np.random.default_rng([self.seed, 5, st.epoch, st.buffer]).permutation(n) if self.shuffle else np.arange(n)
        self._buffer = (_Examples(table, self.kind), order, end)
        return True

    def _next_epoch(self) -> None:
        self.state = StreamState(epoch=self.state.epoch + 1)
        self._buffer = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        start = self.state
        rows: list[tuple[np.ndarray, ...]] = []
        while len(rows) < self.batch_size:
            if self._buffer is None and not self._load_buffer():
                self._next_epoch()  # the epoch's tail shorter than a batch is dropped
                rows = []
                start = self.state
                continue
            examples, order, end = self._buffer  # type: ignore[misc]
            st = self.state
            take = order[st.offset : st.offset + self.batch_size - len(rows)]
            rows.extend(examples.rows(take))
            offset = st.offset + len(take)
            if offset >= len(order):  # buffer used up: the next one starts where this one's rows ended
                self.state = StreamState(st.epoch, st.buffer + 1, end[0], end[1], 0)
                self._buffer = None
            else:
                self.state = StreamState(st.epoch, st.buffer, st.start_shard, st.start_row, offset)
        # The mask RNG depends only on the batch position: a resumed run draws the same masks.
        rng = np.random.default_rng([self.seed, 7, self.rank, start.epoch, start.buffer, start.offset]) if self.masker else None
        return collate(self.kind, rows, self.masker, rng)

    def state_dict(self) -> dict[str, int]:
        """The position after the last batch returned, plus what the batch order depends on."""
        return {**vars(self.state), "seed": self.seed, "rank": self.rank, "world": self.world,
                "batch_size": self.batch_size, "buffer_rows": self.buffer_rows}  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("seed", "rank", "world", "batch_size", "buffer_rows"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"loader state was saved with {key}={state[key]}, this loader has {getattr(self, key)}")
        self.state = StreamState(*(int(state[k]) for k in ("epoch", "buffer", "start_shard", "start_row", "offset")))
        self._buffer = None


class Prefetcher:
    """Runs `loader` in a daemon thread up to `depth` batches ahead (depth 0: inline).

    `wait_s` accumulates the time `__next__` spent waiting for a batch (inline: the time to build it),
    so the engine can log the fraction of step time spent on data. Call `close()` when done.
    """

    def __init__(self, loader: Any, depth: int) -> None:
        self.loader, self.depth = loader, depth
        self.wait_s = 0.0
        self._state = loader.state_dict()
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _work(self) -> None:
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                item: Any = (next(self.loader), self.loader.state_dict())
            except BaseException as exc:  # surfaced in the training thread
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        if self.depth <= 0:
            batch = next(self.loader)
            self._state = self.loader.state_dict()
        else:
            if self._thread is None:
                self._queue = queue.Queue(maxsize=self.depth)
                self._thread = threading.Thread(target=self._work, name="plm-prefetch", daemon=True)
                self._thread.start()
            item = self._queue.get()  # type: ignore[union-attr]
            if isinstance(item, BaseException):
                raise item
            batch, self._state = item
        self.wait_s += time.perf_counter() - t0
        return batch

    def state_dict(self) -> dict[str, int]:
        return dict(self._state)

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self._thread is not None:
            raise RuntimeError("load_state_dict must come before the first batch")
        self.loader.load_state_dict(state)
        self._state = self.loader.state_dict()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ---- in memory ----------------------------------------------------------------------------------


@dataclass
class LoaderPosition:
    """Where the next batch starts: `index` rows into the permutation of `epoch`."""

    epoch: int = 0
    index: int = 0


class PretrainLoader:
    """Infinite iterator of batches with every shard in memory (evaluation and small sets), reshuffled
    every epoch with a generator seeded by (seed, epoch); `state_dict()` restores the exact sequence.
    An epoch's tail shorter than `batch_size` is dropped (`drop_last`) so every batch has the same size.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        masker: Masker | None = None,
        kind: Kind = "mlm",
    ) -> None:
        self.examples = _Examples.read([Path(p) for p in paths], kind)
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
