"""Sequence classification: head shapes, encoder loading, training from scratch and from a pretrained dir, inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from plm.config import FinetuneSpec
from plm.finetune.engine import TextClassifier, accuracy_and_macro_f1, finetune_classifier, load_encoder
from plm.finetune.heads import BertForSequenceClassification
from plm.models.bert import BertConfig, BertForPreTraining
from plm.tracker import NullTracker
from plm.train.engine import load_pretrained, save_model_dir

VOCAB = 64
CFG = BertConfig(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64)
ID2LABEL = {0: "neg", 1: "pos"}
SPEC = FinetuneSpec(epochs=4, batch_size=16, lr=1e-3, seq_len=24, seed=3)


def toy_task(n: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """Separable: label 0 draws tokens from 5..33, label 1 from 34..63; `[CLS] ... [SEP]` wrapped."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for _ in range(n):
        y = int(rng.integers(0, 2))
        lo, hi = (5, 34) if y == 0 else (34, VOCAB)
        ids.append([2] + rng.integers(lo, hi, int(rng.integers(3, 20))).tolist() + [3])
        labels.append(y)
    return ids, labels


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    torch.manual_seed(11)
    return save_model_dir(BertForPreTraining(CFG), CFG.to_dict(), tmp_path_factory.mktemp("pre") / "model")


def test_head_shapes_and_names():
    model = BertForSequenceClassification(CFG, num_labels=3)
    ids = torch.randint(5, VOCAB, (4, 9))
    out = model(ids, torch.zeros_like(ids), torch.ones_like(ids), labels=torch.tensor([0, 1, 2, 1]))
    assert out["logits"].shape == (4, 3)
    assert out["loss"].ndim == 0
    names = set(model.state_dict())
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= names
    assert all(n.startswith(("bert.", "classifier.")) for n in names)


def test_load_encoder_copies_bert_weights_only(pretrained_dir):
    torch.manual_seed(0)
    scratch = BertForSequenceClassification(CFG, 2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(CFG, 2)
    load_encoder(model, pretrained_dir)
    pre, _ = load_pretrained(pretrained_dir)
    for k, v in pre.bert.state_dict().items():
        assert torch.equal(model.bert.state_dict()[k], v), k
    # the head is untouched: same seed -> same head as the scratch model
    assert torch.equal(model.classifier.weight, scratch.classifier.weight)
    assert not torch.equal(model.bert.pooler.dense.weight, scratch.bert.pooler.dense.weight)


def test_load_encoder_rejects_other_architecture(pretrained_dir):
    other = BertConfig(vocab_size=VOCAB, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    with pytest.raises(ValueError, match="hidden_size"):
        load_encoder(BertForSequenceClassification(other, 2), pretrained_dir)


def test_metrics():
    acc, f1 = accuracy_and_macro_f1([0, 0, 1, 1], [0, 1, 1, 1])
    assert acc == 0.75
    assert f1 == pytest.approx((2 / 3 + 0.8) / 2)


@pytest.mark.parametrize("pretrained", [False, True])
def test_finetune_reaches_high_accuracy_and_round_trips(pretrained, pretrained_dir, tmp_path):
    train_ids, train_labels = toy_task(320, seed=0)
    test_ids, test_labels = toy_task(80, seed=1)
    tracker, seen = NullTracker(), []
    res = finetune_classifier(
        CFG, SPEC, train_ids, train_labels, test_ids, test_labels, ID2LABEL, tmp_path,
        init_from=pretrained_dir if pretrained else None, tracker=tracker, progress=lambda *a: seen.append(a),
    )
    assert res.metrics["test_accuracy"] >= 0.9, res.metrics
    assert res.metrics["test_macro_f1"] >= 0.9
    assert res.metrics["epochs"] == 4
    assert res.model_dir == tmp_path / "model"
    assert len(tracker.history["test_accuracy"]) == 4
    assert len(tracker.history["train_loss"]) == 4 * 20 == len(seen)
    assert seen[-1] == ("finetune", 80, 80)
    config = json.loads((res.model_dir / "config.json").read_text())
    assert config["num_labels"] == 2 and config["id2label"] == {"0": "neg", "1": "pos"}

    clf = TextClassifier.load(res.model_dir)
    labels, probs = clf.predict_ids(test_ids)
    assert len(labels) == len(probs) == 80
    assert all(abs(sum(p) - 1) < 1e-5 and len(p) == 2 for p in probs)
    acc = np.mean([lab == ID2LABEL[y] for lab, y in zip(labels, test_labels)])
    assert acc == pytest.approx(res.metrics["test_accuracy"])
    # long inputs are clipped to max_seq_len (keeping [SEP]) rather than failing
    long_labels, _ = clf.predict_ids([[2] + [40] * 200 + [3]])
    assert long_labels == ["pos"]
    assert clf.predict_ids([]) == ([], [])


def test_same_seed_is_deterministic(tmp_path):
    train_ids, train_labels = toy_task(64, seed=0)
    test_ids, test_labels = toy_task(16, seed=1)
    spec = SPEC.model_copy(update={"epochs": 1})
    a = finetune_classifier(CFG, spec, train_ids, train_labels, test_ids, test_labels, ID2LABEL, tmp_path / "a", None)
    b = finetune_classifier(CFG, spec, train_ids, train_labels, test_ids, test_labels, ID2LABEL, tmp_path / "b", None)
    assert (a.model_dir / "model.safetensors").read_bytes() == (b.model_dir / "model.safetensors").read_bytes()
    assert a.metrics == b.metrics
