"""Transformer block internals."""

from __future__ import annotations

import math

import torch

from plm.models.layers import SelfAttention, TransformerBlock, key_padding_mask


def test_key_padding_mask_shape_and_meaning():
    m = key_padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert m.shape == (2, 1, 1, 3)
    assert m.dtype == torch.bool
    assert m[0, 0, 0].tolist() == [True, True, False]


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = SelfAttention(16, 2, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    y = attn(x, key_padding_mask(am))

    B, T, C, H = 2, 5, 16, 2
    q = attn.query(x).view(B, T, H, C // H).transpose(1, 2)
    k = attn.key(x).view(B, T, H, C // H).transpose(1, 2)
    v = attn.value(x).view(B, T, H, C // H).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
    scores = scores.masked_fill(~key_padding_mask(am), float("-inf"))
    ref = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_block_is_post_ln():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, 64, dropout=0.0, eps=1e-12).eval()
    y = block(torch.randn(2, 5, 16) * 10, key_padding_mask(torch.ones(2, 5)))
    # the last op is a LayerNorm with weight 1 / bias 0: every position has mean 0, variance 1
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-4, rtol=0)
