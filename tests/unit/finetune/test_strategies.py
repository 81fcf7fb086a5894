import pytest
import torch

from plm.finetune.heads import BertForSequenceClassification
from plm.finetune.strategies import build_strategy_optimizer, depth, unfreeze_for_epoch
from plm.models.bert import BertConfig

CFG = BertConfig(vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, max_position=32)


def _model():
    torch.manual_seed(0)
    return BertForSequenceClassification(CFG, 2)


def test_depths():
    assert depth("bert.embeddings.word_embeddings.weight", 3) == 0
    assert depth("bert.encoder.layer.0.attention.self.query.weight", 3) == 1
    assert depth("bert.encoder.layer.2.output.dense.weight", 3) == 3
    assert depth("bert.pooler.dense.weight", 3) == 4 and depth("classifier.weight", 3) == 4


def test_frozen_trains_only_the_head():
    model = _model()
    opt = build_strategy_optimizer(model, "frozen", 1e-3, 0.01, 0.8, 3)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"classifier.weight", "classifier.bias"}
    assert sum(len(g["params"]) for g in opt.param_groups) == 2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(5, 50, (4, 8))
    loss = model(ids, torch.zeros_like(ids), torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1]))["loss"]
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trained


def test_discriminative_learning_rates_decay_from_the_top():
    model = _model()
    opt = build_strategy_optimizer(model, "discriminative", 1e-3, 0.01, 0.5, 3)
    by_depth = {g["depth"]: g["lr"] for g in opt.param_groups}
    assert by_depth == pytest.approx({4: 1e-3, 3: 5e-4, 2: 2.5e-4, 1: 1.25e-4, 0: 6.25e-5})
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.01}
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


def test_gradual_unfreezing_goes_down_one_group_per_epoch():
    model = _model()
    lowest = [unfreeze_for_epoch(model, e, 3) for e in range(1, 7)]
    assert lowest == [4, 3, 2, 1, 0, 0]
    assert all(p.requires_grad for p in model.parameters())
