"""BERT pretraining (MLM + NSP) on example shards: one seeded, single-device loop.

Outputs in `out_dir`: `checkpoint.pt` (full training state, see `checkpoint.py`) and `model/`
(`model.safetensors` with the tied decoder weight stored once, plus `config.json`). Nothing is
written when training fails, so a directory with `model/` is always a finished run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from plm.config import TrainSpec
from plm.models.bert import BertConfig, BertForPreTraining
from plm.tracker import NullTracker, Progress, Tracker, no_progress
from plm.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from plm.train.loader import Masker, PretrainLoader
from plm.train.optim import build_optimizer
from plm.train.schedule import build_scheduler

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TIED = ("cls.predictions.decoder.weight",)  # == bert.embeddings.word_embeddings.weight


@dataclass
class PretrainResult:
    metrics: dict[str, float]
    """val_loss, val_mlm_loss, val_nsp_loss, val_mlm_accuracy, val_nsp_accuracy (held-out shards),
    train_loss (mean of the last `log_every` steps), tokens (real tokens trained on), tokens_per_s,
    steps_per_s, steps."""
    checkpoint: Path
    """out_dir / "checkpoint.pt"."""
    model_dir: Path
    """out_dir / "model": model.safetensors + config.json."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but CUDA is not available")
    return torch.device(name)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; plain fp32 on CPU (CPU bf16 is slower on most hosts and not bit-stable)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_model_dir(model: torch.nn.Module, config: dict[str, Any], model_dir: Path) -> Path:
    """Write model.safetensors (tied weights once) + config.json into `model_dir`, atomically via a temp dir.

    An existing `model_dir` is replaced. Also used by `plm.finetune` for classifiers (nothing tied there).
    """
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in TIED}
    tmp = Path(tempfile.mkdtemp(prefix=model_dir.name + ".", suffix=".tmp", dir=model_dir.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


def load_pretrained(model_dir: Path) -> tuple[BertForPreTraining, BertConfig]:
    """A `BertForPreTraining` from `save_model_dir` output, decoder re-tied to the word embeddings."""
    model_dir = Path(model_dir)
    cfg = BertConfig.from_dict(json.loads((model_dir / CONFIG).read_text()))
    model = BertForPreTraining(cfg)
    missing, unexpected = model.load_state_dict(load_file(str(model_dir / WEIGHTS)), strict=False)
    if set(missing) - set(TIED) or unexpected:
        raise ValueError(f"{model_dir}: weights do not match the config (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    return model, cfg


@torch.no_grad()
def evaluate(
    model: BertForPreTraining, loader: PretrainLoader, max_batches: int, device: torch.device
) -> dict[str, float]:
    """Token-weighted MLM loss/accuracy and example-weighted NSP loss/accuracy over `max_batches` batches."""
    was_training = model.training
    model.eval()
    sums = {"mlm_loss": 0.0, "nsp_loss": 0.0, "mlm_correct": 0, "mlm_total": 0, "nsp_correct": 0, "nsp_total": 0}
    for batch in loader.epoch_batches(max_batches):
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


class _Window:
    """Sums of the per-step numbers since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.tokens = 0
        self.start = time.perf_counter()
        self.sums: dict[str, float] = {}

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def metrics(self, lr: float) -> dict[str, float]:
        s, n = self.sums, max(1, self.steps)
        return {
            "loss": s["loss"] / n,
            "mlm_loss": s["mlm_loss"] / n,
            "nsp_loss": s["nsp_loss"] / n,
            "mlm_accuracy": s["mlm_correct"] / max(1.0, s["mlm_total"]),
            "nsp_accuracy": s["nsp_correct"] / max(1.0, s["nsp_total"]),
            "grad_norm": s["grad_norm"] / n,
            "lr": lr,
            "tokens_per_s": self.tokens / max(1e-9, time.perf_counter() - self.start),
        }


def _restore(
    ck: dict[str, Any],
    extra: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: PretrainLoader,
) -> int:
    """Load a checkpoint's state into the freshly built objects; returns its step."""
    for key in ("config", "train"):
        if ck["extra"].get(key) != extra[key]:
            raise ValueError(f"checkpoint was written with a different {key}: {ck['extra'].get(key)} != {extra[key]}")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    loader.load_state_dict(ck["loader"])
    set_rng_state(ck["rng"])
    return int(ck["step"])


def pretrain_bert(
    cfg: BertConfig,
    train: TrainSpec,
    train_shards: list[Path],
    val_shards: list[Path],
    out_dir: Path,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    checkpoint_every: int | None = None,
    resume_from: Path | None = None,
    masker: Masker | None = None,
) -> PretrainResult:
    """Pretrain `cfg` from scratch for `train.steps` steps; evaluate on `val_shards`; write checkpoint + model dir.

    `checkpoint_every` also writes `checkpoint.pt` every N steps; `resume_from` continues from such a
    checkpoint (same cfg and spec) and ends with bit-identical weights to an uninterrupted CPU run; its
    train_loss/tokens metrics then cover only the resumed steps.
    Raises FloatingPointError (naming the step) on a non-finite loss or gradient norm; nothing is written then.
    """
    out_dir = Path(out_dir)
    device = resolve_device(train.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(train.seed)
    model = BertForPreTraining(cfg).to(device)
    optimizer = build_optimizer(model, train.lr, train.weight_decay)
    scheduler = build_scheduler(optimizer, train.warmup_steps, train.steps)
    loader = PretrainLoader(train_shards, train.batch_size, seed=train.seed, masker=masker)
    tracker.log_params({"bert_config." + k: v for k, v in cfg.to_dict().items()})
    extra = {"config": cfg.to_dict(), "train": train.model_dump(mode="json")}
    start = 1
    if resume_from is not None:
        start = _restore(load_checkpoint(resume_from, device), extra, model, optimizer, scheduler, loader) + 1

    model.train()
    window, total_tokens, last_losses = _Window(), 0, []
    t0 = time.perf_counter()
    for step in range(start, train.steps + 1):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(loader).items()}
        with autocast(device):
            out = model(**batch)
        loss = out["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        loss_f, grad_norm_f = float(loss.detach()), float(grad_norm)  # one sync per step; also the NaN guard
        if not (math.isfinite(loss_f) and math.isfinite(grad_norm_f)):
            raise FloatingPointError(f"non-finite loss ({loss_f}) or grad norm ({grad_norm_f}) at step {step}")
        optimizer.step()
        scheduler.step()

        tokens = int(batch["attention_mask"].sum())
        total_tokens += tokens
        window.steps += 1
        window.tokens += tokens
        window.add(
            loss=loss_f,
            mlm_loss=float(out["mlm_loss"].detach()),
            nsp_loss=float(out["nsp_loss"].detach()),
            grad_norm=grad_norm_f,
            **{k: float(out[k]) for k in ("mlm_correct", "mlm_total", "nsp_correct", "nsp_total")},
        )
        last_losses = (last_losses + [loss_f])[-train.log_every :]
        if step % train.log_every == 0 or step == train.steps:
            tracker.log_metrics(window.metrics(lr=optimizer.param_groups[0]["lr"]), step=step)
            window.reset()
        if checkpoint_every and step % checkpoint_every == 0 and step < train.steps:
            save_checkpoint(out_dir / "checkpoint.pt", model, optimizer, scheduler, step, loader.state_dict(), extra)
        progress("pretrain", step, train.steps)
    elapsed = time.perf_counter() - t0

    metrics: dict[str, float] = {
        "train_loss": sum(last_losses) / len(last_losses) if last_losses else math.nan,
        "tokens": float(total_tokens),
        "tokens_per_s": total_tokens / max(elapsed, 1e-9),
        "steps_per_s": (train.steps - start + 1) / max(elapsed, 1e-9),
        "steps": float(train.steps),
    }
    if val_shards:
        val_loader = PretrainLoader(val_shards, train.batch_size, shuffle=False, drop_last=False, masker=masker)
        metrics.update({f"val_{k}": v for k, v in evaluate(model, val_loader, train.eval_batches, device).items()})
    tracker.log_metrics(metrics, step=train.steps)

    checkpoint = save_checkpoint(
        out_dir / "checkpoint.pt",
        model,
        optimizer,
        scheduler,
        step=train.steps,
        loader_state=loader.state_dict(),
        extra=extra | {"metrics": metrics},
    )
    model_dir = save_model_dir(model, cfg.to_dict(), out_dir / "model")
    return PretrainResult(metrics=metrics, checkpoint=checkpoint, model_dir=model_dir)
