"""Pretraining loader: padding, determinism, per-epoch reshuffle, resume position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from plm.train.loader import PretrainLoader


def write_shards(tmp: Path, n_shards: int = 2, rows: int = 10, seed: int = 0) -> list[Path]:
    """Tiny pretraining shards; row r of shard s has input_ids [2, 1000*s + r, ..., 3] (identifiable rows)."""
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(n_shards):
        ids, types, labels = [], [], []
        for r in range(rows):
            n = int(rng.integers(3, 9))
            row = [2, 1000 * s + r + 5] + [int(x) for x in rng.integers(5, 50, n - 3)] + [3]
            ids.append(row)
            types.append([0] * (n // 2) + [1] * (n - n // 2))
            labels.append([-100, row[1]] + [-100] * (n - 2))
        table = pa.table(
            {
                "input_ids": pa.array(ids, pa.list_(pa.int32())),
                "token_type_ids": pa.array(types, pa.list_(pa.int8())),
                "labels": pa.array(labels, pa.list_(pa.int32())),
                "nsp_label": pa.array([r % 2 for r in range(rows)], pa.int8()),
                "a_doc_id": [f"d{s}"] * rows,
                "b_doc_id": [f"d{s}"] * rows,
            }
        )
        path = tmp / f"part-{s:05d}.parquet"
        pq.write_table(table, path, row_group_size=4)  # several row groups: chunked columns
        paths.append(path)
    return paths


def _rows(batch) -> list[int]:
    return batch["input_ids"][:, 1].tolist()


def test_batch_padding_and_mask(tmp_path):
    loader = PretrainLoader(write_shards(tmp_path), batch_size=4, seed=1)
    batch = next(loader)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "nsp_label"}
    assert all(v.dtype == torch.int64 for v in batch.values())
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape == (4, int(lengths.max()))
    for b, n in enumerate(lengths.tolist()):
        assert batch["input_ids"][b, n - 1] == 3  # [SEP] last real token
        assert torch.all(batch["input_ids"][b, n:] == 0)
        assert torch.all(batch["labels"][b, n:] == -100)
        assert torch.all(batch["token_type_ids"][b, n:] == 0)
        assert batch["labels"][b, 1] == batch["input_ids"][b, 1]


def test_same_seed_same_order_and_different_seed_differs(tmp_path):
    paths = write_shards(tmp_path)
    la, lb, lc = PretrainLoader(paths, 4, seed=7), PretrainLoader(paths, 4, seed=7), PretrainLoader(paths, 4, seed=8)
    seq_a = [_rows(next(la)) for _ in range(12)]
    seq_b = [_rows(next(lb)) for _ in range(12)]
    seq_c = [_rows(next(lc)) for _ in range(12)]
    assert seq_a == seq_b
    assert seq_a != seq_c


def test_epochs_cover_all_rows_and_reshuffle(tmp_path):
    loader = PretrainLoader(write_shards(tmp_path), batch_size=5, seed=3)  # 20 rows: 4 batches an epoch
    assert len(loader) == 4
    epoch0 = [r for _ in range(4) for r in _rows(next(loader))]
    epoch1 = [r for _ in range(4) for r in _rows(next(loader))]
    assert sorted(epoch0) == sorted(epoch1) == sorted(epoch0)
    assert len(set(epoch0)) == 20
    assert epoch0 != epoch1
    assert loader.position.epoch == 1


def test_drop_last_starts_next_epoch(tmp_path):
    loader = PretrainLoader(write_shards(tmp_path), batch_size=6, seed=3)  # 20 rows: 3 full batches
    for _ in range(3):
        next(loader)
    assert loader.state_dict()["index"] == 18
    assert next(loader)["input_ids"].shape[0] == 6
    assert loader.position.epoch == 1 and loader.position.index == 6


def test_resume_from_state(tmp_path):
    paths = write_shards(tmp_path)
    full = PretrainLoader(paths, 3, seed=5)
    expected = [_rows(next(full)) for _ in range(15)]
    first = PretrainLoader(paths, 3, seed=5)
    for _ in range(7):
        next(first)
    state = first.state_dict()
    resumed = PretrainLoader(paths, 3, seed=5)
    resumed.load_state_dict(state)
    assert [_rows(next(resumed)) for _ in range(8)] == expected[7:]
    with pytest.raises(ValueError, match="seed"):
        PretrainLoader(paths, 3, seed=6).load_state_dict(state)


def test_epoch_batches_is_one_ordered_pass(tmp_path):
    loader = PretrainLoader(write_shards(tmp_path), batch_size=6, shuffle=False, drop_last=False)
    batches = list(loader.epoch_batches())
    assert [b["input_ids"].shape[0] for b in batches] == [6, 6, 6, 2]
    assert [r for b in batches for r in _rows(b)] == [1000 * s + r + 5 for s in range(2) for r in range(10)]
    assert len(list(loader.epoch_batches(max_batches=2))) == 2
    assert loader.position.index == 0


def test_too_few_examples(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        PretrainLoader(write_shards(tmp_path, n_shards=1, rows=3), batch_size=4)


# ---- streaming loader and prefetcher ---------------------------------------------------------------

from plm.train.loader import Prefetcher, StreamingLoader  # noqa: E402


def test_streaming_epoch_covers_rows_once_and_reshuffles(tmp_path):
    paths = write_shards(tmp_path, n_shards=3, rows=10)  # 30 rows, row groups of 4
    loader = StreamingLoader(paths, 5, seed=2, buffer_rows=7)
    epoch0 = [r for _ in range(6) for r in _rows(next(loader))]
    epoch1 = [r for _ in range(6) for r in _rows(next(loader))]
    assert sorted(epoch0) == sorted(epoch1) == sorted(1000 * s + r + 5 for s in range(3) for r in range(10))
    assert epoch0 != epoch1 and loader.state.epoch == 1
    # a buffer never mixes rows from beyond its 7 rows: memory is bounded by buffer_rows
    assert loader._buffer is None or len(loader._buffer[1]) <= 7


def test_streaming_matches_in_memory_unshuffled_and_drops_the_tail(tmp_path):
    paths = write_shards(tmp_path, n_shards=2, rows=10)
    stream = StreamingLoader(paths, 6, shuffle=False, buffer_rows=5)
    memory = PretrainLoader(paths, 6, shuffle=False)
    for _ in range(7):  # 3 full batches an epoch (the tail of 2 rows dropped), across two epochs
        a, b = next(stream), next(memory)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_resume_mid_buffer_and_refuses_other_layout(tmp_path):
    paths = write_shards(tmp_path, n_shards=3, rows=10)
    full = StreamingLoader(paths, 4, seed=9, buffer_rows=6)
    expected = [_rows(next(full)) for _ in range(20)]
    first = StreamingLoader(paths, 4, seed=9, buffer_rows=6)
    for _ in range(5):
        next(first)
    state = first.state_dict()
    assert state["offset"] not in (0,) or state["buffer"] > 0
    resumed = StreamingLoader(paths, 4, seed=9, buffer_rows=6)
    resumed.load_state_dict(state)
    assert [_rows(next(resumed)) for _ in range(15)] == expected[5:]
    with pytest.raises(ValueError, match="buffer_rows"):
        StreamingLoader(paths, 4, seed=9, buffer_rows=7).load_state_dict(state)
    with pytest.raises(ValueError, match="rank"):
        StreamingLoader(paths, 4, seed=9, buffer_rows=6, rank=1, world=2).load_state_dict(state)


def test_prefetcher_state_is_the_consumed_position(tmp_path):
    paths = write_shards(tmp_path, n_shards=2, rows=10)
    plain = StreamingLoader(paths, 3, seed=4, buffer_rows=8)
    expected = [_rows(next(plain)) for _ in range(9)]
    ahead = Prefetcher(StreamingLoader(paths, 3, seed=4, buffer_rows=8), depth=4)
    got = [_rows(next(ahead)) for _ in range(4)]
    state = ahead.state_dict()  # the thread has read further; the state must not
    ahead.close()
    resumed = Prefetcher(StreamingLoader(paths, 3, seed=4, buffer_rows=8), depth=2)
    resumed.load_state_dict(state)
    got += [_rows(next(resumed)) for _ in range(5)]
    resumed.close()
    assert got == expected and ahead.wait_s >= 0


def test_prefetcher_surfaces_loader_errors(tmp_path):
    class Broken:
        def __next__(self):
            raise OSError("disk gone")

        def state_dict(self):
            return {}

    with pytest.raises(OSError, match="disk gone"):
        next(Prefetcher(Broken(), depth=2))


def test_clm_rows(tmp_path):
    path = tmp_path / "clm.parquet"
    pq.write_table(pa.table({"input_ids": pa.array([[1, 2, 3, 4]] * 5, pa.list_(pa.int32())),
                             "doc_index": pa.array([[0, 0, 1, 1]] * 5, pa.list_(pa.int16()))}), path)  # fmt: skip
    batch = next(StreamingLoader([path], 2, "clm"))
    assert set(batch) == {"input_ids", "labels", "doc_index"} and batch["input_ids"].shape == (2, 4)
    assert torch.equal(batch["labels"], batch["input_ids"]) and batch["doc_index"].dtype == torch.int64
