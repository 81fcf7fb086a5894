"""Sentence-pair classification and regression: reading, `[CLS] A [SEP] B [SEP]` encoding, heads, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plm.config import FinetuneSpec
from plm.finetune.engine import TextClassifier, collate, finetune_classifier, pearson_spearman
from plm.finetune.heads import BertForSequenceClassification
from plm.finetune.run import prepare_task
from plm.finetune.tasks import encode_pairs, read_labelled
from plm.tokenizer.train import CLS_ID, SEP_ID, load_tokenizer

from .conftest import PAIRS, tiny_config

PAIR_SPEC = FinetuneSpec(task_type="pair_classification", format="csv", data=str(PAIRS), text_column="sentence1",
                         text_pair_column="sentence2", label_column="label", seq_len=48)  # fmt: skip
REG_SPEC = PAIR_SPEC.model_copy(update={"task_type": "regression", "label_column": "similarity"})


def test_pair_csv_reads_both_texts_and_counts_bad_rows():
    data = read_labelled(PAIR_SPEC)
    assert len(data.texts) == len(data.pairs) == 161 and data.skipped == 1  # the row with an empty first text
    assert set(data.labels) == {"same", "different"}
    reg = read_labelled(REG_SPEC)
    assert len(reg.texts) == 160 and reg.skipped == 2  # + the row whose score is not a number
    assert all(0 <= float(v) <= 5 for v in reg.labels)


def test_parquet_and_single_text_regression(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"t": ["a", "b", None], "y": [1.5, None, 2.0]}), tmp_path / "d.parquet")
    data = read_labelled(FinetuneSpec(task_type="regression", format="parquet", data=str(tmp_path / "d.parquet"),
                                      text_column="t", label_column="y", text_pair_column=""))  # fmt: skip
    assert data.texts == ["a"] and data.labels == ["1.5"] and data.pairs is None and data.skipped == 2


def test_encode_pairs_segments_and_longest_first_truncation(tokenizer_path):
    tok = load_tokenizer(tokenizer_path)
    long_a = "the fire " * 30
    ids, types = encode_pairs(tok, [long_a, "short"], ["hill top", "the fire service"], 16)
    first, second = ids[0], ids[1]
    assert len(first) == 16 and first[0] == CLS_ID and first.count(SEP_ID) == 2 and first[-1] == SEP_ID
    sep = first.index(SEP_ID)
    assert types[0] == [0] * (sep + 1) + [1] * (16 - sep - 1)
    assert len(tok.encode("hill top", add_special_tokens=False).ids) == 16 - sep - 2  # the short side kept whole
    assert types[1][-1] == 1 and types[1][0] == 0 and len(second) < 16
    single, single_types = encode_pairs(tok, ["short"], None, 16)
    assert single_types == [[0] * len(single[0])] and single[0][-1] == SEP_ID


def test_collate_carries_segments_and_float_labels():
    batch = collate([[2, 5, 3, 6, 3], [2, 7, 3]], [0.5, 2.0], [[0, 0, 0, 1, 1], [0, 0, 0]])
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert batch["labels"].dtype == torch.float32 and batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]


def test_regression_head_uses_mse():
    model = BertForSequenceClassification(tiny_config(64), num_labels=1)
    ids = torch.randint(5, 64, (3, 7))
    out = model(ids, labels=torch.tensor([0.0, 1.0, 2.0]))
    assert out["logits"].shape == (3, 1)
    expected = torch.nn.functional.mse_loss(out["logits"].squeeze(-1), torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(out["loss"], expected)


def test_pearson_spearman():
    p, s = pearson_spearman([1, 2, 3, 4], [1, 3, 2, 10])
    assert s == pytest.approx(0.8) and 0.7 < p < 1
    assert np.isnan(pearson_spearman([1, 1, 1], [1, 2, 3])[0])


def toy_pairs(n: int, seed: int, regression: bool) -> tuple[list[list[int]], list[list[int]], list]:
    """A is noise; the target depends on segment B only: class = B drawn high, value = share of high B tokens."""
    rng = np.random.default_rng(seed)
    ids, types, labels = [], [], []
    for _ in range(n):
        a = rng.integers(5, 64, int(rng.integers(3, 10))).tolist()
        share = float(rng.random())
        b = [int(rng.integers(34, 64)) if rng.random() < share else int(rng.integers(5, 34)) for _ in range(12)]
        ids.append([2, *a, 3, *b, 3])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        labels.append(share * 5 if regression else int(share > 0.5))
    return ids, types, labels


@pytest.mark.parametrize("regression", [False, True])
def test_pair_heads_learn_from_segment_b(regression, tmp_path):
    cfg = tiny_config(64)
    tr_ids, tr_types, tr_y = toy_pairs(256, 0, regression)
    te_ids, te_types, te_y = toy_pairs(64, 1, regression)
    ft = FinetuneSpec(epochs=4, batch_size=16, lr=5e-3 if regression else 2e-3, seq_len=32, seed=3)
    res = finetune_classifier(cfg, ft, tr_ids, tr_y, te_ids, te_y, {} if regression else {0: "low", 1: "high"},
                              tmp_path, None, train_types=tr_types, test_types=te_types)  # fmt: skip
    if regression:
        assert res.metrics["test_pearson"] > 0.7 and res.metrics["test_spearman"] > 0.7, res.metrics
        values = TextClassifier.load(res.model_dir).predict_values(te_ids[:4], type_ids=te_types[:4])
        assert len(values) == 4 and all(isinstance(v, float) for v in values)
    else:
        assert res.metrics["test_accuracy"] > 0.8, res.metrics


def test_prepare_task_encodes_pairs_for_bert(tokenizer_path, bert_dir):
    task = prepare_task(PAIR_SPEC, bert_dir, tokenizer_path, "bert")
    assert task.kind == "pair_classifier" and task.primary == "accuracy" and task.pair
    assert task.label_names == ["different", "same"] and task.skipped == 1
    assert len(task.train_idx) + len(task.test_idx) == 161 == task.table.num_rows
    assert set(task.table.column("split").to_pylist()) == {"train", "test"}
    _, types = task.bert_rows(task.train_idx + task.test_idx)  # encoded on first use
    assert all(1 in t for t in types) and len(task.encoded) == len(task.train_idx) + len(task.test_idx)
    reg = prepare_task(REG_SPEC, bert_dir, tokenizer_path, "bert")
    assert reg.kind == "regressor" and reg.primary == "pearson" and reg.label_names == []
    with pytest.raises(ValueError, match="word2vec has no span head"):
        prepare_task(FinetuneSpec(task_type="qa", format="squad", data=str(PAIRS)), bert_dir, tokenizer_path, "word2vec")


def test_strategy_resolution():
    from plm.finetune.engine import resolve_strategy

    assert resolve_strategy("scratch", True) == "full"  # the baseline: random weights, everything trains
    assert resolve_strategy("frozen", False) == "full"  # nothing pretrained to freeze
    assert resolve_strategy("discriminative", True) == "discriminative"
    with pytest.raises(ValueError, match="word2vec"):
        resolve_strategy("embeddings", True)
