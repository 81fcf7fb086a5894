"""Learning-rate schedules: linear warmup from 0 to the peak, then linear decay to 0 or cosine decay to a floor."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_linear(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr for the update taken after `step` completed steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warmup, then half a cosine from 1 down to `min_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    kind: Literal["linear", "cosine"] = "linear",
    min_ratio: float = 0.0,
) -> LambdaLR:
    """A LambdaLR stepping once per optimizer step (`kind`: linear to 0, or cosine to `min_ratio`)."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be in [0, total_steps={total_steps})")
    if kind == "cosine":
        return LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps, min_ratio))
    if kind != "linear":
        raise ValueError(f"unknown schedule {kind!r} (linear | cosine)")
    return LambdaLR(optimizer, lambda step: warmup_linear(step, warmup_steps, total_steps))
