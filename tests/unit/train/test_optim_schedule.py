"""AdamW parameter groups and the warmup/decay schedule."""

from __future__ import annotations

import pytest
import torch

from plm.models.bert import BertConfig, BertForPreTraining
from plm.train.optim import build_optimizer
from plm.train.schedule import build_scheduler, warmup_linear


def test_no_decay_on_biases_and_layernorm():
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    model = BertForPreTraining(cfg)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert all(p.ndim >= 2 for p in decay["params"])
    assert "bert.embeddings.word_embeddings.weight" in decayed
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed
    assert "bert.embeddings.LayerNorm.weight" in not_decayed
    assert "bert.encoder.layer.0.output.LayerNorm.bias" in not_decayed
    assert "cls.predictions.bias" in not_decayed
    assert "bert.pooler.dense.bias" in not_decayed
    # every parameter exactly once; the tied decoder weight is not a second entry
    assert len(decayed) + len(not_decayed) == len(list(model.parameters()))
    assert isinstance(opt, torch.optim.AdamW)


def test_schedule_values():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, warmup_steps=4, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_no_warmup_and_invalid():
    assert warmup_linear(0, 0, 10) == 1.0
    assert warmup_linear(10, 0, 10) == 0.0
    with pytest.raises(ValueError):
        build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 10, 10)


def test_cosine_schedule_to_floor():
    from plm.train.schedule import warmup_cosine

    assert warmup_cosine(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20, 0.1) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert warmup_cosine(20, 4, 20, 0.1) == pytest.approx(0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, 4, 20, "cosine", 0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[3] == pytest.approx(2.0) and lrs[-1] > 0.2 and all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    with pytest.raises(ValueError, match="unknown schedule"):
        build_scheduler(opt, 4, 20, "step")  # type: ignore[arg-type]


def test_grad_accum_must_divide_batch():
    from plm.config import TrainSpec

    with pytest.raises(ValueError, match="divisible by train.grad_accum"):
        TrainSpec(batch_size=10, grad_accum=3)
