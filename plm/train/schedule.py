"""Learning-rate schedule: linear warmup from 0 to the peak, then linear decay to 0 at `total_steps`."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_linear(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr for the update taken after `step` completed steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be in [0, total_steps={total_steps})")
    return LambdaLR(optimizer, lambda step: warmup_linear(step, warmup_steps, total_steps))
