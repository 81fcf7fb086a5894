"""GloVe's co-occurrence counts: a hand computation, the left-only variant, and shard/part independence."""

import numpy as np
import pyarrow.parquet as pq

from plm.config import CooccurrenceSpec
from plm.objectives.cooccurrence import read_cooccurrence, write_cooccurrence
from plm.objectives.skipgram import Vocab

VOCAB = Vocab(["a", "b", "c"], np.array([2, 2, 1]))
A, B, C = 0, 1, 2
SENTENCES = [np.array([A, B, C], np.int32), np.array([B, A], np.int32)]  # "a b c", "b a"


def _counts(tmp_path, name, sentences=SENTENCES, **cfg):
    stats = write_cooccurrence(sentences, VOCAB, CooccurrenceSpec(**cfg), tmp_path / name)
    i, j, x = read_cooccurrence(sorted((tmp_path / name).glob("part-*.parquet")))
    return {(int(a), int(b)): float(v) for a, b, v in zip(i, j, x, strict=True)}, stats


def test_symmetric_distance_weighted_counts_by_hand(tmp_path):
    counts, stats = _counts(tmp_path, "sym", window=2)
    # a-b adjacent in both sentences, b-c adjacent, a-c two apart (1/2); c and the next sentence's b never pair
    assert counts == {(A, B): 2.0, (B, A): 2.0, (B, C): 1.0, (C, B): 1.0, (A, C): 0.5, (C, A): 0.5}
    assert stats.entries == 6 and stats.total == 7.0 and stats.tokens == 5
    assert not (tmp_path / "sym" / "partial").exists()  # intermediate counts are removed once merged


def test_left_contexts_only_and_unweighted(tmp_path):
    counts, _ = _counts(tmp_path, "left", window=2, symmetric=False)
    assert counts == {(B, A): 1.0, (C, B): 1.0, (C, A): 0.5, (A, B): 1.0}  # X[word, word to its left]
    flat, _ = _counts(tmp_path, "flat", window=2, distance_weighting=False)
    assert flat[(A, C)] == 1.0 and flat[(A, B)] == 2.0


def test_files_do_not_depend_on_shards_or_parts(tmp_path):
    rng = np.random.default_rng(0)
    sentences = [rng.integers(0, 3, rng.integers(1, 9)).astype(np.int32) for _ in range(200)]
    one, _ = _counts(tmp_path, "one", sentences, window=3, shard_tokens=10**9, merge_parts=1)
    many, stats = _counts(tmp_path, "many", sentences, window=3, shard_tokens=7, merge_parts=2)
    assert one.keys() == many.keys() and np.allclose([one[k] for k in one], [many[k] for k in one], rtol=1e-12)
    assert stats.entries == len(many) and len(list((tmp_path / "many").glob("part-*.parquet"))) == 2
    part1 = pq.read_table(tmp_path / "many" / "part-00001.parquet")
    assert set((part1["i"].to_numpy() % 2).tolist()) == {1}
