"""GPT decoder: causality, shifted loss, packed-document masks, tied head, HF names, GPT-2 init, FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from plm.models.gpt import GPTConfig, GPTLMHeadModel, positions_and_mask

CFG = GPTConfig(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_position=64)


def _model(cfg: GPTConfig = CFG) -> GPTLMHeadModel:
    torch.manual_seed(0)
    return GPTLMHeadModel(cfg).eval()


def test_logits_shape_and_causality():
    model = _model()
    ids = torch.randint(0, CFG.vocab_size, (2, 12))
    logits = model(ids)["logits"]
    assert logits.shape == (2, 12, CFG.vocab_size)
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % CFG.vocab_size
    logits2 = model(changed)["logits"]
    torch.testing.assert_close(logits2[:, :7], logits[:, :7], atol=1e-5, rtol=1e-5)  # the past never sees the future
    assert not torch.allclose(logits2[:, 7:], logits[:, 7:], atol=1e-3)


def test_loss_is_shifted_cross_entropy_with_ignored_targets():
    model = _model()
    torch.manual_seed(1)
    ids = torch.randint(0, CFG.vocab_size, (3, 10))
    labels = ids.clone()
    labels[1, 6:] = -100  # e.g. padding
    out = model(ids, labels=labels)
    logits = model(ids)["logits"]
    naive = F.cross_entropy(logits[:, :-1].reshape(-1, CFG.vocab_size), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out["loss"], naive)
    assert out["lm_loss"] is out["loss"]
    valid = labels[:, 1:] != -100
    assert int(out["lm_total"]) == int(valid.sum()) == 3 * 9 - 4
    correct = (logits[:, :-1].argmax(-1) == labels[:, 1:]) & valid
    assert int(out["lm_correct"]) == int(correct.sum())
    # untrained: about ln(V) per token
    assert abs(float(out["loss"].detach()) - math.log(CFG.vocab_size)) < 0.5


def test_batch_without_targets_gives_zero_finite_loss():
    model = _model().train()
    ids = torch.randint(0, CFG.vocab_size, (2, 6))
    out = model(ids, labels=torch.full_like(ids, -100))
    assert float(out["loss"].detach()) == 0.0 and int(out["lm_total"]) == 0
    out["loss"].backward()  # still part of the graph


def test_backward_reaches_all_parameters():
    model = _model().train()
    ids = torch.randint(0, CFG.vocab_size, (2, 8))
    model(ids, labels=ids)["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_positions_and_mask_from_doc_index():
    doc = torch.tensor([[0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 0]])
    pos, mask = positions_and_mask(doc)
    assert pos.tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]
    assert mask.shape == (2, 1, 6, 6) and mask.dtype == torch.bool
    assert mask[0, 0, 4].tolist() == [False, False, False, True, True, False]  # own document, causal
    assert torch.equal(mask[1, 0], torch.ones(6, 6, dtype=torch.bool).tril())  # one document: plain causal


def test_packed_documents_behave_like_separate_sequences():
    model = _model()
    torch.manual_seed(2)
    a, b = torch.randint(0, CFG.vocab_size, (1, 5)), torch.randint(0, CFG.vocab_size, (1, 7))
    packed = torch.cat([a, b], 1)
    doc = torch.tensor([[0] * 5 + [1] * 7])
    out = model(packed, doc_index=doc)["logits"]
    torch.testing.assert_close(out[:, :5], model(a)["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 5:], model(b)["logits"], atol=1e-5, rtol=1e-5)
    # without the boundary mask the second document does see the first
    assert not torch.allclose(model(packed)["logits"][:, 5:], model(b)["logits"], atol=1e-3)
    # the loss path takes doc_index too
    assert torch.isfinite(model(packed, labels=packed, doc_index=doc)["loss"])


def test_head_tied_and_names_match_hf_gpt2():
    model = _model(GPTConfig(vocab_size=60, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=128))
    assert model.lm_head.weight is model.transformer.wte.weight
    h = "transformer.h.0."
    expected = {
        "transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "transformer.ln_f.bias",
        "lm_head.weight",
        *(h + f"{m}.{p}" for m in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
          for p in ("weight", "bias")),
    }  # fmt: skip
    assert set(model.state_dict()) == expected


def test_gpt2_init_scales_residual_projections():
    cfg = GPTConfig(vocab_size=500, hidden_size=128, num_layers=8, num_heads=4, intermediate_size=512)
    model = _model(cfg)
    block = model.transformer.h[0]
    assert abs(block.mlp.c_fc.weight.std().item() - 0.02) < 0.002
    for w in (block.attn.c_proj.weight, block.mlp.c_proj.weight):
        assert abs(w.std().item() - 0.02 / math.sqrt(2 * 8)) < 0.001
    assert torch.all(block.attn.c_attn.bias == 0) and torch.all(block.ln_1.weight == 1)


def test_gpt2_small_size_and_flops():
    cfg = GPTConfig(vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)
    with torch.device("meta"):  # counts only: no 124M-parameter allocation
        model = GPTLMHeadModel(cfg)
    assert model.num_params() == 124_439_808  # HF GPT2LMHeadModel's count (tied head once)
    n = 124_439_808 - 1024 * 768  # minus position embeddings
    assert model.flops_per_token(1024) == 6 * n + 12 * 12 * 768 * 1024


def test_config_round_trip_and_length_check():
    cfg = GPTConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, dropout=0.2)
    assert GPTConfig.from_dict(cfg.to_dict() | {"arch": "gpt"}) == cfg
    assert cfg.attention_dropout_p == 0.2
    model = _model(GPTConfig(**{**CFG.to_dict(), "max_position": 8}))
    with pytest.raises(ValueError, match="max_position"):
        model(torch.zeros(1, 9, dtype=torch.long))
