"""Causal-LM packing: exact concatenation with EOS, document indices, seeded order, resume (Lee corpus ids)."""

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import ObjectivesSpec
from plm.objectives import clm
from plm.objectives import skipgram as sg
from plm.samples import resolve_sample

pytest.importorskip("gensim")

EOS = 0


@dataclass
class Doc:  # the shape of plm.tokenizer.encode.EncodedDoc that packing reads
    doc_id: str
    sentences: list[np.ndarray]


@pytest.fixture(scope="module")
def docs():
    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    vocab = sg.build_vocab([lines], min_count=1, lowercase=True)
    out = []
    for i, line in enumerate(lines):
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", line) if s.strip()]
        ids = [a + 1 for a in sg.encode_sentences([sentences], vocab, lowercase=True)]  # 0 is EOS
        if ids:
            out.append(Doc(f"lee{i}", ids))
    return out


def _joined(docs):
    return np.concatenate([np.r_[np.concatenate(d.sentences), EOS] for d in docs]).astype(np.int32)


def test_pack_is_exact_and_indices_follow_documents(docs):
    packed = clm.pack_clm([d.sentences for d in docs], 128, EOS)
    stream = _joined(docs)
    np.testing.assert_array_equal(np.r_[packed.input_ids.reshape(-1), packed.tail], stream)
    assert packed.input_ids.dtype == np.int32 and packed.doc_index.dtype == np.int16
    assert len(packed.tail) < 128 and packed.stats.dropped_tokens == len(packed.tail)
    # Reference: the document index restarts at 0 in each row and steps after every EOS.
    rows = stream[: packed.input_ids.size].reshape(-1, 128)
    reference = np.zeros_like(rows, dtype=np.int64)
    reference[:, 1:] = np.cumsum(rows[:, :-1] == EOS, axis=1)
    np.testing.assert_array_equal(packed.doc_index, reference)
    assert packed.stats.doc_segments == int((reference[:, -1] + 1).sum())
    assert packed.stats.tokens + packed.stats.dropped_tokens == sum(sum(map(len, d.sentences)) + 1 for d in docs)


def test_write_clm_order_schema_resume(docs, tmp_path):
    cfg = ObjectivesSpec(kinds=["clm"], seq_len=64, docs_per_shard=64, seed=3, clm={"boundary_mask": True})
    stats = clm.write_clm(docs, "train", cfg, EOS, tmp_path / "a")
    files = sorted((tmp_path / "a").glob("part-*.parquet"))
    assert len(files) == -(-len(docs) // 64) and stats.shards_written == len(files)
    for shard, path in enumerate(files):
        table = pq.read_table(path)
        assert table.schema.field("input_ids").type.value_type == pa.int32()
        assert table.schema.field("doc_index").type.value_type == pa.int16()
        part = docs[shard * 64 : (shard + 1) * 64]
        expected = _joined([part[i] for i in clm.shard_order(len(part), 3, shard)])
        got = np.concatenate(table.column("input_ids").to_numpy()) if table.num_rows else np.zeros(0, np.int32)
        np.testing.assert_array_equal(got, expected[: len(got)])
        assert len(expected) - len(got) < 64
    s = stats.summary()
    assert s["docs"] == len(docs) and s["sequences"] * 64 == s["tokens"] and s["docs_per_sequence"] > 1

    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    files[1].unlink()
    resumed = clm.write_clm(docs, "train", cfg, EOS, tmp_path / "a")
    assert (resumed.shards_written, resumed.shards_reused) == (1, len(files) - 1)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == digests
    assert resumed.summary()["tokens"] == s["tokens"]

    plain = clm.write_clm(docs, "train", ObjectivesSpec(kinds=["clm"], seq_len=64, docs_per_shard=64, seed=3), EOS, tmp_path / "b")
    assert pq.read_schema(tmp_path / "b" / "part-00000.parquet").names == ["input_ids"]
    assert plain.tokens == stats.tokens
