"""BERT encoder: shapes, padding mask, tied weights, HF names, MLM-at-masked-positions loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from plm.models.bert import BertConfig, BertForPreTraining, BertModel

CFG = BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=64)


def _model(cls=BertForPreTraining, cfg: BertConfig = CFG):
    torch.manual_seed(0)
    return cls(cfg).eval()


def test_shapes():
    model = _model(BertModel)
    ids = torch.randint(5, CFG.vocab_size, (3, 11))
    seq, pooled = model(ids, torch.zeros_like(ids), torch.ones_like(ids))
    assert seq.shape == (3, 11, 32)
    assert pooled.shape == (3, 32)


def test_padding_does_not_change_real_tokens():
    model = _model(BertModel)
    ids = torch.randint(5, CFG.vocab_size, (1, 7))
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    seq, pooled = model(ids, types, torch.ones_like(ids))
    pad = 5
    ids_p = torch.cat([ids, torch.zeros(1, pad, dtype=torch.long)], 1)
    types_p = torch.cat([types, torch.zeros(1, pad, dtype=torch.long)], 1)
    mask_p = torch.cat([torch.ones_like(ids), torch.zeros(1, pad, dtype=torch.long)], 1)
    seq_p, pooled_p = model(ids_p, types_p, mask_p)
    torch.testing.assert_close(seq_p[:, :7], seq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled_p, pooled, atol=1e-5, rtol=1e-5)
    # and without a mask the padding does leak in: the mask is what makes the difference
    seq_nomask, _ = model(ids_p, types_p, torch.ones_like(ids_p))
    assert not torch.allclose(seq_nomask[:, :7], seq, atol=1e-4)


def test_padded_batch_matches_single_examples():
    model = _model(BertModel)
    a = torch.randint(5, CFG.vocab_size, (1, 9))
    b = torch.randint(5, CFG.vocab_size, (1, 4))
    batch = torch.zeros(2, 9, dtype=torch.long)
    batch[0], batch[1, :4] = a[0], b[0]
    seq, _ = model(batch, torch.zeros_like(batch), (batch != 0).long())
    seq_b, _ = model(b, torch.zeros_like(b), torch.ones_like(b))
    torch.testing.assert_close(seq[1, :4], seq_b[0], atol=1e-5, rtol=1e-5)


def test_decoder_tied_to_word_embeddings():
    model = _model()
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    names = [n for n, _ in model.named_parameters()]
    assert "cls.predictions.decoder.weight" not in names  # named_parameters lists a shared tensor once


def test_state_dict_names_match_hf():
    model = _model(cfg=BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64))
    layer = "bert.encoder.layer.0."
    expected = {
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.embeddings.LayerNorm.bias",
        *(layer + f"attention.self.{m}.{p}" for m in ("query", "key", "value") for p in ("weight", "bias")),
        *(layer + f"attention.output.{m}.{p}" for m in ("dense", "LayerNorm") for p in ("weight", "bias")),
        *(layer + f"intermediate.dense.{p}" for p in ("weight", "bias")),
        *(layer + f"output.{m}.{p}" for m in ("dense", "LayerNorm") for p in ("weight", "bias")),
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        *(f"cls.predictions.transform.{m}.{p}" for m in ("dense", "LayerNorm") for p in ("weight", "bias")),
        "cls.predictions.decoder.weight",
        "cls.predictions.bias",
        "cls.seq_relationship.weight",
        "cls.seq_relationship.bias",
    }
    assert set(model.state_dict()) == expected


def test_init_like_bert():
    model = _model(cfg=BertConfig(vocab_size=2000, hidden_size=64, num_layers=1, num_heads=4, intermediate_size=256))
    w = model.bert.encoder.layer[0].intermediate.dense.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert torch.all(model.bert.encoder.layer[0].output.LayerNorm.weight == 1)
    assert torch.all(model.bert.encoder.layer[0].output.LayerNorm.bias == 0)
    assert torch.all(model.bert.embeddings.word_embeddings.weight[0] == 0)  # [PAD] row


def test_mlm_loss_at_masked_positions_equals_naive_full_logits():
    model = _model()
    torch.manual_seed(1)
    B, T = 4, 12
    ids = torch.randint(5, CFG.vocab_size, (B, T))
    types = torch.zeros_like(ids)
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    labels = torch.full((B, T), -100)
    picks = torch.rand(B, T) < 0.3
    picks[:, 0] = False
    picks[2, 8:] = False
    picks[0, 3] = True
    labels[picks] = torch.randint(5, CFG.vocab_size, (int(picks.sum()),))
    nsp = torch.tensor([0, 1, 1, 0])

    out = model(ids, types, mask, labels=labels, nsp_label=nsp)
    full = model(ids, types, mask)
    logits = full["prediction_logits"].reshape(-1, CFG.vocab_size)
    naive_mlm = F.cross_entropy(logits, labels.reshape(-1), ignore_index=-100)
    naive_nsp = F.cross_entropy(full["seq_relationship_logits"], nsp)
    torch.testing.assert_close(out["mlm_loss"], naive_mlm)
    torch.testing.assert_close(out["nsp_loss"], naive_nsp)
    torch.testing.assert_close(out["loss"], naive_mlm + naive_nsp)
    assert int(out["mlm_total"]) == int(picks.sum())
    correct = (full["prediction_logits"].argmax(-1)[picks] == labels[picks]).sum()
    assert int(out["mlm_correct"]) == int(correct)
    assert int(out["nsp_total"]) == B


def test_backward_reaches_all_parameters():
    model = _model().train()
    ids = torch.randint(5, CFG.vocab_size, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(ids, torch.zeros_like(ids), torch.ones_like(ids), labels=labels, nsp_label=torch.tensor([0, 1]))
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


def test_batch_without_predictions_has_zero_mlm_loss():
    model = _model()
    ids = torch.randint(5, CFG.vocab_size, (2, 8))
    out = model(ids, labels=torch.full_like(ids, -100), nsp_label=torch.tensor([0, 1]))
    assert float(out["mlm_loss"].detach()) == 0.0
    assert torch.isfinite(out["loss"])


def test_config_round_trip_and_attention_dropout():
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, dropout=0.2)
    assert BertConfig.from_dict(cfg.to_dict() | {"num_labels": 2, "id2label": {}}) == cfg
    assert cfg.attention_dropout_p == 0.2  # None follows `dropout`, as in BERT
    model = BertModel(BertConfig(**{**cfg.to_dict(), "attention_dropout": 0.0}))
    assert model.encoder.layer[0].attention.self.dropout == 0.0
    assert model.encoder.layer[0].output.dropout.p == 0.2


PRE = BertConfig(**{**CFG.to_dict(), "norm": "pre"})


def test_pre_ln_layout_is_megatron_bert():
    model = _model(cfg=BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, norm="pre"))
    names = set(model.state_dict())
    layer = "bert.encoder.layer.0."
    assert {layer + "attention.ln.weight", layer + "ln.weight", "bert.encoder.ln.weight", "bert.encoder.ln.bias"} <= names
    assert not any("LayerNorm" in n for n in names if n.startswith("bert."))  # no post-LNs, no embedding LN
    post = _model(cfg=BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64))
    assert model.num_params() == post.num_params()  # the embedding LN became the final encoder LN
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_pre_ln_block_keeps_the_residual_and_encoder_ends_normalised():
    from plm.models.layers import PreLNTransformerBlock, key_padding_mask

    torch.manual_seed(0)
    block = PreLNTransformerBlock(16, 2, 64, dropout=0.0, eps=1e-12).eval()
    x = torch.randn(2, 5, 16) * 10 + 3
    mask = key_padding_mask(torch.ones(2, 5))
    y = block(x, mask)
    # x + attn(LN(x)) + ffn(...): zeroing the sublayers' output projections leaves exactly x
    for dense in (block.attention.output.dense, block.output.dense):
        torch.nn.init.zeros_(dense.weight)
        torch.nn.init.zeros_(dense.bias)
    torch.testing.assert_close(block(x, mask), x)
    assert y.var(-1).mean() > 10  # not normalised in place, unlike post-LN
    seq, _ = _model(BertModel, PRE)(torch.randint(5, 50, (2, 7)))
    torch.testing.assert_close(seq.mean(-1), torch.zeros(2, 7), atol=1e-5, rtol=0)  # final encoder LN


def test_pre_ln_padding_and_masked_loss():
    model = _model(cfg=PRE)
    ids = torch.randint(5, CFG.vocab_size, (1, 6))
    ids_p = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    seq, _ = model.bert(ids)
    seq_p, _ = model.bert(ids_p, attention_mask=(ids_p != 0).long())
    torch.testing.assert_close(seq_p[:, :6], seq, atol=1e-5, rtol=1e-5)
    labels = torch.full_like(ids, -100)
    labels[0, 2] = 7
    out = model(ids, labels=labels, nsp_label=torch.tensor([1]))
    full = model(ids)["prediction_logits"][0, 2]
    torch.testing.assert_close(out["mlm_loss"], F.cross_entropy(full[None], torch.tensor([7])))


def test_norm_is_validated():
    with pytest.raises(ValueError, match="norm"):
        BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, norm="sandwich")


def test_bert_base_size_and_flops():
    cfg = BertConfig(vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)
    with torch.device("meta"):
        model = BertForPreTraining(cfg)
    assert model.num_params() == 110_106_428  # HF BertForPreTraining (bert-base-uncased)
    emb = 30522 * 768 + 512 * 768 + 2 * 768 + 2 * 768  # word, position, type, embedding LayerNorm
    head = 768 * 768 + 768 + 2 * 768 + 30522  # transform dense + LN + output bias
    body = 110_106_428 - emb - head
    attn = 12 * 12 * 768 * 128
    assert model.flops_per_token(128) == 6 * (body + head + 30522 * 768) + attn
    expected = 6 * (body + 0.15 * (head + 30522 * 768)) + attn
    assert model.flops_per_token(128, predicted_fraction=0.15) == pytest.approx(expected, rel=1e-12)


def _masked_batch(B: int = 4, T: int = 12):
    torch.manual_seed(1)
    ids = torch.randint(5, CFG.vocab_size, (B, T))
    labels = torch.full((B, T), -100)
    picks = torch.rand(B, T) < 0.3
    picks[0, 3] = True
    labels[picks] = torch.randint(5, CFG.vocab_size, (int(picks.sum()),))
    return ids, labels, torch.tensor([0, 1, 1, 0])[:B]


def test_static_mlm_positions_give_the_same_loss_counts_and_gradients():
    """The GPU step's host-made, padded `mlm_positions` (static shapes, no boolean gather) change nothing."""
    from plm.train.loader import mlm_positions

    ids, labels, nsp = _masked_batch()
    positions = mlm_positions(labels, multiple=16)
    n = int((labels != -100).sum())
    assert positions.numel() % 16 == 0 and positions.numel() >= n and (positions[n:] == labels.numel()).all()
    outs, grads = [], []
    for extra in ({}, {"mlm_positions": positions}):
        model = _model().train()
        torch.manual_seed(5)  # same dropout draws
        out = model(ids, torch.zeros_like(ids), torch.ones_like(ids), labels=labels, nsp_label=nsp, **extra)
        out["loss"].backward()
        outs.append(out)
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for key in ("loss", "mlm_loss", "nsp_loss"):
        torch.testing.assert_close(outs[0][key], outs[1][key])
    for key in ("mlm_correct", "mlm_total", "nsp_correct"):
        assert int(outs[0][key]) == int(outs[1][key]), key
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], msg=k)
    # no predicted position at all: zero loss in the graph, as the boolean path
    empty = torch.full_like(labels, -100)
    out = _model()(ids, labels=empty, nsp_label=nsp, mlm_positions=mlm_positions(empty))
    assert float(out["mlm_loss"].detach()) == 0.0 and int(out["mlm_total"]) == 0


def test_unpadded_runs_without_a_mask_and_matches_the_all_ones_mask():
    model = _model()
    ids, labels, nsp = _masked_batch()
    with_mask = model(ids, torch.zeros_like(ids), torch.ones_like(ids), labels=labels, nsp_label=nsp)
    unpadded = model(ids, torch.zeros_like(ids), labels=labels, nsp_label=nsp, unpadded=True)
    torch.testing.assert_close(with_mask["loss"], unpadded["loss"])
    # unpadded means no mask at all, not one derived from pad ids: a pad id is attended to like any token
    ids[0, -1] = CFG.pad_token_id
    derived, _ = model.bert(ids)
    none, _ = model.bert(ids, unpadded=True)
    assert not torch.allclose(derived[0, 0], none[0, 0])
