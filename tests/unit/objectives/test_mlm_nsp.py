import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import ObjectivesSpec
from plm.objectives.mlm import IGNORE, mask_tokens
from plm.objectives.nsp import create_pairs, truncate_seq_pair
from plm.objectives.shards import check_statistics, write_bert_examples
from plm.tokenizer.encode import EncodedDoc
from plm.tokenizer.train import CLS_ID, MASK_ID, PAD_ID, SEP_ID

VOCAB = 1000


def synthetic_docs(n_docs=80, seed=0):
    rng = np.random.default_rng(seed)
    return [
        EncodedDoc(f"doc{d}", [rng.integers(5, VOCAB, rng.integers(3, 30)).astype(np.int32) for _ in range(rng.integers(1, 12))])
        for d in range(n_docs)
    ]


def test_mask_exact_counts_and_never_special():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, VOCAB, (256, 128)).astype(np.int32)
    lengths = rng.integers(10, 129, 256)
    special = np.arange(128)[None, :] >= lengths[:, None]
    ids[:, 0] = CLS_ID
    special[:, 0] = True
    ids[special] = PAD_ID
    ids[:, 0] = CLS_ID
    out = mask_tokens(ids, special, rng, vocab_size=VOCAB, n_special=5, mask_id=MASK_ID, probability=0.15,
                      max_predictions=20, mask_fraction=0.8, random_fraction=0.1)
    selected = out.labels != IGNORE
    n_cand = (~special).sum(1)
    expected = np.minimum(20, np.maximum(1, np.rint(n_cand * 0.15)))
    assert (selected.sum(1) == expected).all()
    assert not (selected & special).any()
    assert (out.labels[selected] == ids[selected]).all()
    assert (out.input_ids[~selected] == ids[~selected]).all()
    replaced = out.input_ids[selected]
    assert ((replaced == MASK_ID) | (replaced >= 5)).all()  # random replacements are never special tokens
    n = selected.sum()
    assert abs(out.n_masked / n - 0.8) < 0.02 and abs(out.n_random / n - 0.1) < 0.015


def test_truncate_seq_pair_trims_longer_side():
    rng = np.random.default_rng(0)
    a, b = list(range(50)), list(range(10))
    truncate_seq_pair(a, b, 30, rng)
    assert len(a) + len(b) == 30 and len(b) == 10


def test_pairs_fit_and_is_next_is_the_real_continuation():
    docs = synthetic_docs()
    documents = [d.sentences for d in docs]
    rng = np.random.default_rng(3)
    pairs = [p for i in range(len(documents)) for p in create_pairs(documents, i, 64, 0.1, 0.5, rng)]
    assert pairs
    for p in pairs:
        assert len(p.tokens_a) + len(p.tokens_b) <= 61 and p.tokens_a and p.tokens_b
        if not p.is_random_next:
            assert p.b_doc == p.a_doc
        elif not p.forced_random:
            assert p.b_doc != p.a_doc
    unforced = [p for p in pairs if not p.forced_random]
    rate = np.mean([p.is_random_next for p in unforced])
    assert abs(rate - 0.5) < 0.05


def _digest(directory):
    return [hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.glob("part-*.parquet"))]


def test_shards_schema_statistics_and_determinism(tmp_path):
    cfg = ObjectivesSpec(seq_len=64, shard_size=1000, dupe_factor=2)
    docs = synthetic_docs(600)
    stats = write_bert_examples(docs, "train", cfg, VOCAB, tmp_path / "a")
    write_bert_examples(docs, "train", cfg, VOCAB, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    summary = stats.summary()
    assert check_statistics(summary, cfg) == []
    table = pq.read_table(sorted((tmp_path / "a").glob("*.parquet"))[0])
    assert table.schema.names == ["input_ids", "token_type_ids", "labels", "nsp_label", "a_doc_id", "b_doc_id"]
    assert table.schema.field("input_ids").type.value_type == pa.int32()
    assert table.schema.field("token_type_ids").type.value_type == pa.int8()
    assert table.schema.field("labels").type.value_type == pa.int32()
    for row in table.slice(0, 50).to_pylist():
        ids, types, labels = row["input_ids"], row["token_type_ids"], row["labels"]
        assert ids[0] == CLS_ID and ids[-1] == SEP_ID and len(ids) <= 64
        sep = ids.index(SEP_ID)
        assert set(types[: sep + 1]) == {0} and set(types[sep + 1 :]) == {1}
        assert labels[0] == IGNORE and labels[sep] == IGNORE and labels[-1] == IGNORE
        assert len(ids) == len(types) == len(labels)


def test_statistics_gate_reports_deviations():
    cfg = ObjectivesSpec()
    bad = {"mask_rate": 0.30, "mask_token_share": 0.8, "random_token_share": 0.1, "unchanged_share": 0.1,
           "nsp_random_rate_unforced": 0.5}
    failures = check_statistics(bad, cfg)
    assert len(failures) == 1 and failures[0].startswith("mask_rate")
