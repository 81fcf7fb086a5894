"""Held-out evaluation of pretrained language models: BERT masked-token accuracy, GPT perplexity.

Both take an iterable of batches (as the pretraining loaders yield them) and the model's own
forward pass with targets, which returns losses as means plus detached correct/total counts, so
totals here are weighted by predicted tokens (MLM, CLM) or examples (NSP), not by batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import torch
from torch import nn


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; plain fp32 on CPU (CPU bf16 is slower on most hosts and not bit-stable)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_mlm(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device) -> dict[str, float]:
    """loss (= mlm_loss + nsp_loss), mlm_loss, nsp_loss, mlm_accuracy, nsp_accuracy over `batches`."""
    was_training = model.training
    model.eval()
    sums = {"mlm_loss": 0.0, "nsp_loss": 0.0, "mlm_correct": 0, "mlm_total": 0, "nsp_correct": 0, "nsp_total": 0}
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            out = model(**batch)
        mlm_n, nsp_n = int(out["mlm_total"]), int(out["nsp_total"])
        sums["mlm_loss"] += float(out["mlm_loss"]) * mlm_n
        sums["nsp_loss"] += float(out["nsp_loss"]) * nsp_n
        for key in ("mlm_correct", "mlm_total", "nsp_correct", "nsp_total"):
            sums[key] += int(out[key])
    model.train(was_training)
    mlm_n, nsp_n = max(1, sums["mlm_total"]), max(1, sums["nsp_total"])
    metrics = {
        "mlm_loss": sums["mlm_loss"] / mlm_n,
        "nsp_loss": sums["nsp_loss"] / nsp_n,
        "mlm_accuracy": sums["mlm_correct"] / mlm_n,
        "nsp_accuracy": sums["nsp_correct"] / nsp_n,
    }
    metrics["loss"] = metrics["mlm_loss"] + metrics["nsp_loss"]
    return metrics


@torch.no_grad()
def evaluate_clm(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device) -> dict[str, float]:
    """loss (mean next-token cross-entropy over predicted tokens), accuracy and perplexity = exp(loss)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            out = model(**batch)
        n = int(out["lm_total"])
        loss_sum += float(out["loss"]) * n
        correct += int(out["lm_correct"])
        total += n
    model.train(was_training)
    loss = loss_sum / max(1, total)
    return {"loss": loss, "accuracy": correct / max(1, total), "perplexity": math.exp(min(loss, 50.0))}


def evaluate_lm(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device, kind: str
) -> dict[str, float]:
    """`evaluate_mlm` for kind `mlm`, `evaluate_clm` for `clm`."""
    if kind == "mlm":
        return evaluate_mlm(model, batches, device)
    if kind == "clm":
        return evaluate_clm(model, batches, device)
    raise ValueError(f"unknown objective kind {kind!r} (mlm | clm)")
