"""AdamW with BERT's weight-decay rule: no decay on biases, LayerNorm weights or any 1-D parameter."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices and embeddings (decayed), everything 1-D (biases, LayerNorm: not decayed).

    Tied parameters appear once (`named_parameters` de-duplicates them).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_norm_or_bias = p.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name
        (no_decay if is_norm_or_bias else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over `param_groups`; `fused`: one kernel for all parameters (no per-tensor launches, no host sync)."""
    # eps 1e-6 as in BERT's original AdamWeightDecay.
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=fused or None)
