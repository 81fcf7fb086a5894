"""pretrain_bert end to end at debug size on synthetic shards: loss falls, runs are bit-identical, NaN guard."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from plm.config import TrainSpec
from plm.models.bert import BertConfig
from plm.tracker import NullTracker
from plm.train.checkpoint import load_checkpoint
from plm.train.engine import load_pretrained, pretrain_bert, resume_point

VOCAB = 64
# dropout 0 and a high lr: the toy task is learnt within the step budget of a unit test
CFG = BertConfig(
    vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64, dropout=0.0
)


def write_mlm_shard(path: Path, rows: int, seed: int) -> Path:
    """Learnable toy data: segment A repeats one token; B repeats the same token (NSP 0) or another (NSP 1).

    15 % of the non-special tokens (and always the first) are replaced by [MASK]: copying a neighbour solves MLM.
    """
    rng = np.random.default_rng(seed)
    ids, types, labels, nsp = [], [], [], []
    for _ in range(rows):
        motif = rng.integers(5, VOCAB, 1)
        is_random = int(rng.random() < 0.5)
        other = rng.integers(5, VOCAB, 1) if is_random else motif
        la, lb = int(rng.integers(4, 12)), int(rng.integers(4, 12))
        a, b = np.resize(motif, la), np.resize(other, lb)
        row = np.concatenate([[2], a, [3], b, [3]]).astype(np.int64)
        lab = np.full(len(row), -100)
        special = np.isin(row, [2, 3])
        pick = (rng.random(len(row)) < 0.15) & ~special
        pick[1] = True
        lab[pick] = row[pick]
        row[pick] = 4
        ids.append(row.tolist())
        types.append([0] * (la + 2) + [1] * (lb + 1))
        labels.append(lab.tolist())
        nsp.append(is_random)
    table = pa.table(
        {
            "input_ids": pa.array(ids, pa.list_(pa.int32())),
            "token_type_ids": pa.array(types, pa.list_(pa.int8())),
            "labels": pa.array(labels, pa.list_(pa.int32())),
            "nsp_label": pa.array(nsp, pa.int8()),
            "a_doc_id": [str(i) for i in range(rows)],
            "b_doc_id": [str(i) for i in range(rows)],
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    train = [write_mlm_shard(d / f"train-{i}.parquet", 256, seed=i) for i in range(2)]
    val = [write_mlm_shard(d / "val-0.parquet", 64, seed=100)]
    return train, val


SPEC = TrainSpec(steps=120, batch_size=16, lr=3e-3, warmup_steps=10, log_every=20, eval_batches=4, device="cpu", seed=7)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pretrain_learns_and_is_deterministic(shards, tmp_path):
    train, val = shards
    tracker, seen = NullTracker(), []
    res = pretrain_bert(CFG, SPEC, train, val, tmp_path / "a", tracker=tracker, progress=lambda *a: seen.append(a))
    res2 = pretrain_bert(CFG, SPEC, train, val, tmp_path / "b")

    # outputs
    assert res.checkpoint == tmp_path / "a" / "checkpoint.pt" and res.checkpoint.is_file()
    assert sorted(p.name for p in res.model_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((res.model_dir / "config.json").read_text()) == {"arch": "bert", **CFG.to_dict()}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint.pt", "model"]
    # bit-identical across runs
    assert _sha(res.model_dir / "model.safetensors") == _sha(res2.model_dir / "model.safetensors")
    timing = ("tokens_per_s", "steps_per_s")
    assert {k: v for k, v in res.metrics.items() if k not in timing} == {
        k: v for k, v in res2.metrics.items() if k not in timing
    }
    # learning: the logged training loss falls well below its start
    losses = [v for _, v in tracker.history["loss"]]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.8, losses
    assert res.metrics["val_mlm_loss"] < np.log(VOCAB - 5) - 0.6
    assert res.metrics["val_mlm_accuracy"] > 0.1  # chance: 1/59
    for key in ("val_loss", "val_mlm_loss", "val_nsp_loss", "val_mlm_accuracy", "val_nsp_accuracy",
                "train_loss", "tokens", "tokens_per_s", "steps"):
        assert key in res.metrics
    for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "lr", "grad_norm", "tokens_per_s"):
        assert key in tracker.history
    assert [s for _, s, _ in seen] == list(range(1, 121)) and seen[0][0] == "pretrain"
    assert res.metrics["steps"] == 120

    # the exported model reloads with tied weights and reproduces the final eval
    model, cfg = load_pretrained(res.model_dir)
    assert cfg == CFG
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    ck = load_checkpoint(res.checkpoint)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["model"][k]), k
    assert ck["step"] == 120 and ck["extra"]["train"]["seed"] == 7


def test_nan_guard_raises_and_writes_nothing(shards, tmp_path):
    train, val = shards
    spec = SPEC.model_copy(update={"steps": 10, "warmup_steps": 1, "lr": 1e30})
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        pretrain_bert(CFG, spec, train, val, tmp_path / "out")
    assert not (tmp_path / "out" / "model").exists()
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_nan_guard_on_injected_inf(shards, tmp_path, monkeypatch):
    train, val = shards
    from plm.models import bert as bert_mod

    original = bert_mod.BertForPreTraining.forward

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out["loss"] = out["loss"] * float("inf")
        return out

    monkeypatch.setattr(bert_mod.BertForPreTraining, "forward", poisoned)
    with pytest.raises(FloatingPointError, match="at step 1"):
        pretrain_bert(CFG, SPEC.model_copy(update={"steps": 3, "warmup_steps": 1}), train, val, tmp_path / "out")
    assert not (tmp_path / "out" / "model").exists()


def test_resume_after_crash_is_bit_identical(shards, tmp_path):
    train, val = shards
    spec = SPEC.model_copy(update={"steps": 30, "warmup_steps": 5, "log_every": 5})
    cfg = BertConfig(**{**CFG.to_dict(), "dropout": 0.1})  # dropout: the RNG state must be restored too
    full = pretrain_bert(cfg, spec, train, val, tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_at_17(what, step, total):
        if step == 17:
            raise Crash

    with pytest.raises(Crash):
        pretrain_bert(cfg, spec, train, val, tmp_path / "run", progress=crash_at_17, checkpoint_every=10)
    latest = resume_point(tmp_path / "run")
    assert latest is not None and load_checkpoint(latest)["step"] == 10
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()

    seen = []
    resumed = pretrain_bert(
        cfg, spec, train, val, tmp_path / "run", progress=lambda *a: seen.append(a[1]),
        resume_from=latest,
    )  # fmt: skip
    assert seen == list(range(11, 31))
    assert _sha(resumed.model_dir / "model.safetensors") == _sha(full.model_dir / "model.safetensors")
    assert resumed.metrics["val_loss"] == full.metrics["val_loss"]

    with pytest.raises(ValueError, match="different train"):
        pretrain_bert(cfg, spec.model_copy(update={"lr": 1e-3}), train, val, tmp_path / "x", resume_from=latest)
