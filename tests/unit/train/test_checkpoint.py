"""Checkpoint round trip through torch.load(weights_only=True), RNG restore, atomic write."""

from __future__ import annotations

import random

import numpy as np
import torch

from plm.models.bert import BertConfig, BertForPreTraining
from plm.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from plm.train.optim import build_optimizer
from plm.train.schedule import build_scheduler

CFG = BertConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)


def _trained_state():
    torch.manual_seed(0)
    model = BertForPreTraining(CFG)
    opt = build_optimizer(model, 1e-3, 0.01)
    sched = build_scheduler(opt, 2, 10)
    ids = torch.randint(5, 40, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    for _ in range(3):
        model(ids, labels=labels, nsp_label=torch.tensor([0, 1]))["loss"].backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def test_round_trip_weights_only(tmp_path):
    model, opt, sched = _trained_state()
    path = save_checkpoint(
        tmp_path / "ck" / "checkpoint.pt", model, opt, sched, step=3,
        loader_state={"epoch": 1, "index": 8, "seed": 5}, extra={"config": CFG.to_dict(), "fp": "abc"},
    )
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
    ck = load_checkpoint(path)  # weights_only=True inside
    assert ck["step"] == 3
    assert ck["loader"] == {"epoch": 1, "index": 8, "seed": 5}
    assert ck["extra"]["config"] == CFG.to_dict()

    torch.manual_seed(99)
    model2 = BertForPreTraining(CFG)
    opt2 = build_optimizer(model2, 1e-3, 0.01)
    sched2 = build_scheduler(opt2, 2, 10)
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optimizer"])
    sched2.load_state_dict(ck["scheduler"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    assert model2.cls.predictions.decoder.weight is model2.bert.embeddings.word_embeddings.weight
    assert sched2.last_epoch == 3
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)


def test_rng_states_restored(tmp_path):
    model, opt, sched = _trained_state()
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    path = save_checkpoint(tmp_path / "c.pt", model, opt, sched, step=3, loader_state={})
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(42)
    np.random.seed(42)
    random.seed(42)
    set_rng_state(load_checkpoint(path)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]


def test_overwrite_is_atomic_replace(tmp_path):
    model, opt, sched = _trained_state()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, opt, sched, step=1, loader_state={})
    save_checkpoint(path, model, opt, sched, step=2, loader_state={})
    assert load_checkpoint(path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
