"""Transformer building blocks of a BERT encoder: attention, feed-forward, post-LN and pre-LN blocks.

Module and attribute names follow HF `transformers` so that a state dict maps one to one: the post-LN
block onto `BertLayer` (`attention.self.query`, `attention.output.dense`, `intermediate.dense`,
`output.LayerNorm`, ...), the pre-LN block onto `MegatronBertLayer` (`attention.ln`, `attention.self.*`,
`attention.output.dense`, `ln`, `intermediate.dense`, `output.dense`), HF's pre-LN BERT.
Shapes: B batch, T sequence length, C hidden size, H heads, D = C // H head size.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn


_C = TypeVar("_C", bound="ModelConfig")


class ModelConfig:
    """What BERT's and GPT's config dataclasses share: dict round trip and the attention dropout."""

    dropout: float
    attention_dropout: float | None

    @property
    def attention_dropout_p(self) -> float:
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_C], d: dict[str, Any]) -> _C:
        """Build from a dict; unknown keys (`arch`, a classifier's `num_labels`, ...) are ignored."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1 = real token, 0 = padding -> (B, 1, 1, T) bool, True = may be attended to."""
    return attention_mask.bool()[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention` (fused kernels on CPU and GPU)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        H = self.num_heads
        q = self.query(x).view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        k = self.key(x).view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        v = self.value(x).view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        # mask (B, 1, 1, T): padded keys get no weight; padded queries still attend to real keys,
        # so no row is fully masked (that would give NaN) and their outputs are simply ignored.
        # None (no padding anywhere): the flash kernel applies on GPU, which takes no mask.
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, D)
        return y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)


class DenseAddNorm(nn.Module):
    """Post-LN residual: LayerNorm(residual + dropout(dense(h))). HF's `BertSelfOutput` and `BertOutput`."""

    def __init__(self, in_size: int, hidden_size: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))  # (B, T, C)


class Attention(nn.Module):
    """Self-attention plus its output projection, residual and LayerNorm (HF `BertAttention`)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, eps: float, attention_dropout: float) -> None:
        super().__init__()
        self.self = SelfAttention(hidden_size, num_heads, attention_dropout)
        self.output = DenseAddNorm(hidden_size, hidden_size, dropout, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)  # (B, T, C)


class Intermediate(nn.Module):
    """Feed-forward expansion with GELU (HF `BertIntermediate`)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # (B, T, 4C)


class TransformerBlock(nn.Module):
    """One post-LN BERT layer: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float,
        eps: float,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        p_attn = dropout if attention_dropout is None else attention_dropout
        self.attention = Attention(hidden_size, num_heads, dropout, eps, p_attn)
        self.intermediate = Intermediate(hidden_size, intermediate_size)
        self.output = DenseAddNorm(intermediate_size, hidden_size, dropout, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)  # (B, T, C)
        return self.output(self.intermediate(x), x)  # (B, T, C)


# ---- pre-LN (Megatron-BERT layout) -------------------------------------------------------------


class DenseAdd(nn.Module):
    """Pre-LN residual: residual + dropout(dense(h)); the LayerNorm sits before the sublayer instead."""

    def __init__(self, in_size: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return residual + self.dropout(self.dense(h))  # (B, T, C)


class PreLNAttention(nn.Module):
    """x + dropout(dense(attn(LN(x)))) (HF `MegatronBertAttention`)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, eps: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(hidden_size, eps=eps)
        self.self = SelfAttention(hidden_size, num_heads, attention_dropout)
        self.output = DenseAdd(hidden_size, hidden_size, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(self.ln(x), mask), x)  # (B, T, C)


class PreLNTransformerBlock(nn.Module):
    """One pre-LN layer: x = x + attn(LN(x)); x = x + ffn(LN(x)). The residual stream is never normalised
    in place, which keeps gradients well scaled in deep or high-learning-rate runs (Xiong et al., 2020)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        dropout: float,
        eps: float,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        p_attn = dropout if attention_dropout is None else attention_dropout
        self.attention = PreLNAttention(hidden_size, num_heads, dropout, eps, p_attn)
        self.ln = nn.LayerNorm(hidden_size, eps=eps)
        self.intermediate = Intermediate(hidden_size, intermediate_size)
        self.output = DenseAdd(intermediate_size, hidden_size, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)  # (B, T, C)
        return self.output(self.intermediate(self.ln(x)), x)  # (B, T, C)
