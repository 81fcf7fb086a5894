"""One pretraining engine for masked (BERT) and causal (GPT) language models.

`pretrain(build, train, train_loader, val_loader, out_dir, kind=...)` runs `train.steps` optimizer
steps of `train.grad_accum` micro-batches each: fused AdamW (no decay on LayerNorm/bias), warmup then
linear or cosine decay, gradient clipping, bf16 autocast and TF32 on CUDA (fp32 on CPU),
`torch.compile` per `train.compile`, DDP when launched by torchrun (see `distributed.py`) or, with
`train.parallel: fsdp`, FSDP2 (`fully_shard` per transformer block, then the root), a
prefetching loader whose wait time is logged, and a NaN guard that fails the run before anything
is written after the bad step. A step never waits for the device: its numbers stay there until a log
line, a checkpoint or the end reads them.

Outputs in `out_dir` (rank 0 only): `checkpoints/step-<N>.pt` every `train.checkpoint_every` steps
(the last `train.keep_checkpoints` kept) and `checkpoints/best.pt` (lowest held-out loss among
them), then `checkpoint.pt` (final state) and `model/` (`model.safetensors` with tied weights
stored once, plus `config.json`). A directory with `model/` is always a finished run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch import nn

from plm.config import TrainSpec, output_slice, run_only_fields
from plm.eval.lm import autocast, evaluate_lm
from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.tracker import NullTracker, Progress, Tracker, no_progress
from plm.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    mark_best,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_path,
)
from plm.train.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    full_state_dicts,
    gather_objects,
    load_sharded_optimizer,
    resolve_device,
    shard_model,
)
from plm.train.export import load_model_dir, save_model_dir
from plm.train.loader import Masker, PretrainLoader, Prefetcher, StreamingLoader, mlm_positions, tokens_in
from plm.train.optim import build_optimizer
from plm.train.schedule import build_scheduler

__all__ = [
    "CONFIG", "WEIGHTS", "PretrainResult", "autocast", "latest_checkpoint", "load_model_dir", "load_pretrained",
    "micro_batch_size",
    "peak_flops", "pretrain", "pretrain_bert", "pretrain_gpt", "pretrain_shards", "resolve_device", "resume_point", "save_model_dir",
]  # fmt: skip

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TIED = ("cls.predictions.decoder.weight",)  # == bert.embeddings.word_embeddings.weight
CHECKPOINTS = "checkpoints"
RUN_ONLY = tuple(sorted(run_only_fields(TrainSpec)))
"""TrainSpec fields that change how a run is executed or recorded, never the weights it ends with."""

# Dense bf16 peak FLOP/s by device-name substring (first match wins); MFU is omitted for others.
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
    ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12), ("L4", 121e12),
)  # fmt: skip


@dataclass
class PretrainResult:
    metrics: dict[str, float]
    """val_* (held-out: loss and, BERT, mlm/nsp loss+accuracy, GPT accuracy+perplexity), train_loss (mean of
    the last `log_every` steps), tokens (real tokens trained on, all ranks), tokens_per_s, steps_per_s, steps."""
    checkpoint: Path
    """out_dir / "checkpoint.pt" (the final training state)."""
    model_dir: Path
    """out_dir / "model": model.safetensors + config.json."""
    model: nn.Module | None = None
    """The trained module (uncompiled, unwrapped), e.g. for an export."""


def micro_batch_size(train: TrainSpec, world: int = 1) -> int:
    """Sequences per micro-batch on one rank: batch_size / (grad_accum x world)."""
    per = train.grad_accum * world
    if train.batch_size % per:
        raise ValueError(f"train.batch_size ({train.batch_size}) must be divisible by grad_accum x world ({per})")
    return train.batch_size // per


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the CUDA device from a small table, None when unknown (or CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def run_slice(train: TrainSpec) -> dict[str, Any]:
    """The part of the train spec that determines the weights (what a resumed checkpoint must match)."""
    return output_slice(train)


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


def evaluate(model: BertForPreTraining, loader: PretrainLoader, max_batches: int, device: torch.device) -> dict[str, float]:
    """Token-weighted MLM loss/accuracy and example-weighted NSP loss/accuracy over `max_batches` batches."""
    return evaluate_lm(model, loader.epoch_batches(max_batches), device, "mlm")


class _Window:
    """Per-step numbers summed on the device since the last log line; read (one sync) only when logged."""

    def __init__(self, kind: str, names: list[str], device: torch.device) -> None:
        self.kind, self.names = kind, names + ["grad_norm"]
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self.reset(0.0)

    def reset(self, wait_s: float) -> None:
        self.steps = 0
        self.start = time.perf_counter()
        self.wait_start = wait_s
        self.sums.zero_()

    def add(self, stats: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.sums[:-1] += stats
        self.sums[-1] += grad_norm.detach().double()
        self.steps += 1

    def metrics(self, lr: float, wait_s: float) -> dict[str, float]:
        s, n = dict(zip(self.names, self.sums.tolist(), strict=True)), max(1, self.steps)
        elapsed = max(1e-9, time.perf_counter() - self.start)
        out = {"loss": s["loss"] / n, "grad_norm": s["grad_norm"] / n, "lr": lr,
               "tokens_per_s": s["tokens"] / elapsed,
               "data_wait_fraction": min(1.0, (wait_s - self.wait_start) / elapsed)}  # fmt: skip
        if self.kind == "mlm":
            out |= {"mlm_loss": s["mlm_loss"] / n, "nsp_loss": s["nsp_loss"] / n,
                    "mlm_accuracy": s["mlm_correct"] / max(1.0, s["mlm_total"]),
                    "nsp_accuracy": s["nsp_correct"] / max(1.0, s["nsp_total"])}  # fmt: skip
        else:
            out |= {"accuracy": s["lm_correct"] / max(1.0, s["lm_total"]), "perplexity": math.exp(min(out["loss"], 50.0))}
        return out


class _Guard:
    """The NaN guard without a host sync per step: the first step with a non-finite loss or gradient norm
    is recorded on the device, and `check()` (called before anything is logged or written) raises for it."""

    def __init__(self, device: torch.device) -> None:
        self.first = torch.zeros(3, dtype=torch.float64, device=device)  # step (0 = none), loss, grad norm

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        grad_norm = grad_norm.detach().double()
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm)) & (self.first[0] == 0)
        now = torch.stack([torch.full_like(loss, step), loss, grad_norm])
        self.first = torch.where(bad, now, self.first)

    def check(self) -> None:
        step, loss, grad_norm = self.first.tolist()
        if step:
            raise FloatingPointError(f"non-finite loss ({loss}) or grad norm ({grad_norm}) at step {int(step)}")


def _device_batch(batch: dict[str, torch.Tensor], kind: str, device: torch.device) -> tuple[dict[str, Any], int]:
    """A host batch moved to `device`, and its real token count (counted on the host: no sync).

    On CUDA an MLM batch also gets host-made `mlm_positions` (static shapes, no boolean gather) and,
    when nothing is padding, `unpadded=True` instead of its mask (the flash attention kernel). On CPU the
    batch goes as it is, so CPU results are unchanged.
    """
    tokens = tokens_in(batch)
    extra: dict[str, Any] = {}
    if kind == "mlm" and device.type == "cuda":
        batch = {**batch, "mlm_positions": mlm_positions(batch["labels"])}
        if bool(batch["attention_mask"].all()):
            batch.pop("attention_mask")
            extra["unpadded"] = True
    if device.type == "cuda":  # pinned, so that the copy is asynchronous (pageable memory can block the host)
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()} | extra, tokens


# Per-step numbers summed over micro-batches and ranks with one all-reduce: (name, mean over micro-batches?);
# "tokens" (counted on the host) comes last.
_STATS = {
    "mlm": (("loss", True), ("mlm_loss", True), ("nsp_loss", True), ("mlm_correct", False), ("mlm_total", False),
            ("nsp_correct", False), ("nsp_total", False), ("tokens", False)),
    "clm": (("loss", True), ("lm_correct", False), ("lm_total", False), ("tokens", False)),
}  # fmt: skip


def _check_resumable(ck: dict[str, Any], extra: dict[str, Any]) -> None:
    """Refuse a checkpoint written for other data, another model or another train spec, naming the difference."""
    have = ck.get("extra", {})
    for key in ("fingerprints", "config", "train", "kind", "world"):
        if key in extra and have.get(key) != extra[key]:
            raise ValueError(
                f"cannot resume: the checkpoint was written with a different {key} "
                f"({have.get(key)} != {extra[key]}); start a fresh run (without resume) instead"
            )


def _compiles(mode: str, device: torch.device) -> bool:
    """`train.compile`: `on`, or `auto` on CUDA."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def _compile(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    if _compiles(mode, device):
        return torch.compile(model)  # type: ignore[return-value]
    return model


def _keeps_cpu_threads(fn: Callable[..., PretrainResult]) -> Callable[..., PretrainResult]:
    """Restore torch's intra-op thread count after `fn` (a resume may adopt its checkpoint's)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> PretrainResult:
        threads = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@_keeps_cpu_threads
def pretrain(
    build: Callable[[], nn.Module],
    train: TrainSpec,
    train_loader: StreamingLoader | PretrainLoader | Iterator[dict[str, torch.Tensor]],
    val_loader: PretrainLoader | None,
    out_dir: Path,
    *,
    kind: Literal["mlm", "clm"],
    config: dict[str, Any],
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    resume_from: Path | None = None,
    extra: dict[str, Any] | None = None,
    dist: DistContext | None = None,
) -> PretrainResult:
    """Train the model `build()` returns (built after seeding with `train.seed`) for `train.steps` steps.

    `train_loader` yields micro-batches of `micro_batch_size(train, world)` sequences (this rank's data)
    and has `state_dict`/`load_state_dict`; `config` is written as the model folder's config.json;
    `extra` (e.g. {"fingerprints": {...}}) is stored in every checkpoint and compared on resume.
    `resume_from` continues from a checkpoint of the same config, data and spec: the result is
    bit-identical to an uninterrupted CPU run: on CPU the checkpoint records torch's intra-op thread
    count (parallel reductions round differently with another count), and a resume adopts it for the
    run, with a warning when this process would have used another. Raises FloatingPointError (naming
    the step) on a non-finite loss or gradient norm; nothing is written after that step.
    With `train.parallel: fsdp` in a multi-process `dist` the model is sharded (`shard_model`); checkpoints
    and the model folder hold the full states gathered to rank 0, and `PretrainResult.model` is None.
    """
    out_dir = Path(out_dir)
    ctx = dist or DistContext(device=resolve_device(train.device))
    device = ctx.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tracker = tracker if ctx.is_main else NullTracker()

    torch.manual_seed(train.seed)
    fsdp = ctx.active and train.parallel == "fsdp"
    # Every rank builds the same full model (same seed). Under FSDP it stays in host memory: sharding moves one
    # block (then the root's embeddings and heads) to the device at a time and keeps only this rank's shard there.
    raw = build() if fsdp else build().to(device)
    extra = {**(extra or {}), "config": config, "train": run_slice(train), "kind": kind, "world": ctx.world}
    tracker.log_params({"model_config." + k: v for k, v in config.items()} | {"world_size": ctx.world})

    start = 1
    rank_state: dict[str, Any] | None = None
    ck = load_checkpoint(resume_from, "cpu") if resume_from is not None else None
    if ck is not None:
        _check_resumable(ck, extra)
        raw.load_state_dict(ck["model"])  # before sharding: FSDP shards the loaded weights
    if fsdp:
        shard_model(raw, raw.transformer_blocks(), device, _compiles(train.compile, device))  # type: ignore[operator]
    # fused on CPU too (~2x the for-loop AdamW); torch 2.13's fused CPU kernel takes FSDP's DTensor shards as well
    optimizer = build_optimizer(raw, train.lr, train.weight_decay, fused=True)
    scheduler = build_scheduler(optimizer, train.warmup_steps, train.steps, train.schedule, train.min_lr_ratio)
    if ck is not None:
        if fsdp:
            load_sharded_optimizer(raw, optimizer, ck["optimizer"])
        else:
            optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        rank_state = ck["ranks"][ctx.rank] if "ranks" in ck else {"loader": ck["loader"], "rng": ck["rng"]}
        train_loader.load_state_dict(rank_state["loader"])  # type: ignore[union-attr]
        start = int(ck["step"]) + 1
        saved = ck.get("extra", {}).get("cpu_threads")
        if device.type == "cpu" and saved and saved != torch.get_num_threads():
            warnings.warn(f"pretrain: resuming with {saved} CPU threads as the checkpoint was written (this process "
                          f"would use {torch.get_num_threads()}), so the run continues bit-identically", stacklevel=3)  # fmt: skip
            torch.set_num_threads(int(saved))
    if device.type == "cpu":
        extra["cpu_threads"] = torch.get_num_threads()

    model = raw if fsdp else _compile(raw, train.compile, device)
    if ctx.active and not fsdp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = Prefetcher(train_loader, train.prefetch)
    if rank_state is not None:  # last, so that nothing above draws from the restored generators
        set_rng_state(rank_state["rng"])

    flops_fn = getattr(raw, "flops_per_token", None)
    peak = peak_flops(device)
    names = [n for n, _ in _STATS[kind]]
    # mean over micro-batches (dividing each), then over ranks (one all-reduce of the sums)
    micro_div = torch.tensor([train.grad_accum if mean else 1 for _, mean in _STATS[kind]], dtype=torch.float64,
                             device=device)  # fmt: skip
    rank_div = torch.tensor([ctx.world if mean else 1 for _, mean in _STATS[kind]], dtype=torch.float64, device=device)
    window, guard = _Window(kind, names, device), _Guard(device)
    recent = torch.zeros(train.log_every, dtype=torch.float64, device=device)  # the last log_every step losses
    total_tokens = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    t0 = time.perf_counter()
    model.train()
    try:
        # No host sync inside a step: losses, counts, the grad norm and the NaN guard stay on the device
        # and are read only at log lines, checkpoints and the end.
        for step in range(start, train.steps + 1):
            stats = torch.zeros(len(names), dtype=torch.float64, device=device)
            seq_len, step_tokens = 0, 0
            for micro in range(train.grad_accum):
                batch, n_tokens = _device_batch(next(loader), kind, device)
                step_tokens += n_tokens
                seq_len = batch["input_ids"].shape[1]
                sync = micro == train.grad_accum - 1
                if fsdp:  # FSDP2 accumulates unsharded gradients until the last micro-batch reduce-scatters them
                    raw.set_requires_gradient_sync(sync)  # type: ignore[operator]
                no_sync = ctx.active and not fsdp and not sync
                with (model.no_sync() if no_sync else contextlib.nullcontext()), autocast(device):
                    out = model(**batch)
                    loss = out["loss"] / train.grad_accum if train.grad_accum > 1 else out["loss"]
                loss.backward()
                stats[:-1] += torch.stack([out[n].detach().double() for n in names[:-1]]) / micro_div[:-1]
            stats[-1] += step_tokens
            grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), train.grad_clip)
            if fsdp:  # a replicated DTensor (the norm over every rank's shards): its local value is the norm
                grad_norm = grad_norm.to_local()  # type: ignore[attr-defined]
            all_reduce_sum(stats, ctx)  # one collective: every rank sees the same numbers (and fails together)
            stats /= rank_div
            guard.observe(step, stats[0], grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            total_tokens += stats[-1]
            window.add(stats, grad_norm)
            recent[seen % train.log_every] = stats[0]
            seen += 1
            log_now = step % train.log_every == 0 or step == train.steps
            checkpoint_now = bool(train.checkpoint_every) and step % train.checkpoint_every == 0 and step < train.steps
            if log_now or checkpoint_now:
                guard.check()
            if log_now:
                metrics = window.metrics(optimizer.param_groups[0]["lr"], loader.wait_s)
                if flops_fn is not None and peak:
                    metrics["mfu"] = flops_fn(seq_len) * metrics["tokens_per_s"] / (peak * ctx.world)
                tracker.log_metrics(metrics, step=step)
                window.reset(loader.wait_s)
            if checkpoint_now:
                _periodic_checkpoint(out_dir, raw, optimizer, scheduler, step, loader, extra, train, val_loader,
                                     device, kind, ctx, tracker, fsdp)  # fmt: skip
            progress("pretrain", step, train.steps)
        guard.check()
    finally:
        loader.close()
    elapsed = time.perf_counter() - t0

    n_recent = min(seen, train.log_every)
    tokens_done = float(total_tokens)
    metrics: dict[str, float] = {
        "train_loss": float(recent[:n_recent].mean()) if n_recent else math.nan,
        "tokens": tokens_done,
        "tokens_per_s": tokens_done / max(elapsed, 1e-9),
        "steps_per_s": (train.steps - start + 1) / max(elapsed, 1e-9),
        "steps": float(train.steps),
    }
    if val_loader is not None and (ctx.is_main or fsdp):
        val = _evaluate(raw, val_loader, train.eval_batches, device, kind, fsdp)
        metrics.update({f"val_{k}": v for k, v in val.items()})
    tracker.log_metrics(metrics, step=train.steps)

    states = gather_objects({"loader": loader.state_dict(), "rng": rng_state()}, ctx)
    model_state, optim_state = full_state_dicts(raw, optimizer) if fsdp else (None, None)
    checkpoint, model_dir = out_dir / "checkpoint.pt", out_dir / "model"
    if ctx.is_main:
        save_checkpoint(checkpoint, raw, optimizer, scheduler, train.steps, states[0]["loader"],
                        extra | {"metrics": metrics}, ranks=states if ctx.active else None,
                        model_state=model_state, optimizer_state=optim_state)  # fmt: skip
        save_model_dir(raw, config, model_dir, state=model_state)
    barrier(ctx)
    # under FSDP the module holds only this rank's shards: the full model is the folder rank 0 wrote
    return PretrainResult(metrics=metrics, checkpoint=checkpoint, model_dir=model_dir, model=None if fsdp else raw)


def _evaluate(raw: nn.Module, val_loader: PretrainLoader, batches: int, device: torch.device, kind: str,
              fsdp: bool) -> dict[str, float]:  # fmt: skip
    """Held-out metrics; under FSDP every rank runs the same batches (each block's forward all-gathers it), and
    the root, left unsharded by a forward without backward, is resharded so that the optimizer sees its shards."""
    val = evaluate_lm(raw, val_loader.epoch_batches(batches), device, kind)
    if fsdp:
        raw.reshard()  # type: ignore[operator]
    return val


def _periodic_checkpoint(
    out_dir: Path, raw: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, step: int, loader: Prefetcher,
    extra: dict[str, Any], train: TrainSpec, val_loader: PretrainLoader | None, device: torch.device, kind: str,
    ctx: DistContext, tracker: Tracker, fsdp: bool = False,
) -> None:  # fmt: skip
    """`checkpoints/step-N.pt` (every rank's loader + RNG state inside), pruned to the last K, and `best.pt`.

    Evaluation runs in eval mode (no dropout draws) on its own loader, so it leaves the training RNG
    and data position untouched: a resumed run stays bit-identical. Under FSDP every rank takes part in
    gathering the full state and in evaluating; rank 0 alone writes.
    """
    states = gather_objects({"loader": loader.state_dict(), "rng": rng_state()}, ctx)
    model_state, optim_state = full_state_dicts(raw, optimizer) if fsdp else (None, None)
    val_loss = math.nan
    if val_loader is not None and (ctx.is_main or fsdp):
        val_loss = _evaluate(raw, val_loader, train.eval_batches, device, kind, fsdp)["loss"]
    if ctx.is_main:
        directory = out_dir / CHECKPOINTS
        if val_loader is not None:
            tracker.log_metrics({"checkpoint_val_loss": val_loss}, step=step)
        path = save_checkpoint(step_path(directory, step), raw, optimizer, scheduler, step, states[0]["loader"],
                               extra | {"val_loss": val_loss}, ranks=states if ctx.active else None,
                               model_state=model_state, optimizer_state=optim_state)  # fmt: skip
        best = directory / "best.pt"
        best_loss = load_checkpoint(best)["extra"].get("val_loss", math.nan) if best.exists() else math.inf
        if math.isfinite(val_loss) and not val_loss >= best_loss:
            mark_best(path, best)
        prune_checkpoints(directory, train.keep_checkpoints)
    barrier(ctx)


def pretrain_shards(
    build: Callable[[], nn.Module],
    config: dict[str, Any],
    kind: Literal["mlm", "clm"],
    train: TrainSpec,
    train_shards: list[Path],
    val_shards: list[Path],
    out_dir: Path,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    resume_from: Path | None = None,
    masker: Masker | None = None,
    extra: dict[str, Any] | None = None,
    dist: DistContext | None = None,
) -> PretrainResult:
    """`pretrain` on example shards: this rank's training shards streamed, the held-out ones in memory."""
    ctx = dist or DistContext(device=resolve_device(train.device))
    loader = StreamingLoader(train_shards, micro_batch_size(train, ctx.world), kind, seed=train.seed,
                             buffer_rows=train.shuffle_buffer, masker=masker, rank=ctx.rank, world=ctx.world)  # fmt: skip
    val = None
    if val_shards:
        val = PretrainLoader(val_shards, micro_batch_size(train, 1), shuffle=False, drop_last=False, masker=masker, kind=kind)
    return pretrain(build, train, loader, val, out_dir, kind=kind, config=config, tracker=tracker, progress=progress,
                    resume_from=resume_from, extra=extra, dist=ctx)  # fmt: skip


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
    extra: dict[str, Any] | None = None,
    dist: DistContext | None = None,
) -> PretrainResult:
    """A BERT encoder on MLM(+NSP/SOP) shards; `checkpoint_every` overrides `train.checkpoint_every`."""
    if checkpoint_every is not None:
        train = train.model_copy(update={"checkpoint_every": checkpoint_every})
    return pretrain_shards(lambda: BertForPreTraining(cfg), cfg.to_dict(), "mlm", train, train_shards, val_shards,
                           out_dir, tracker, progress, resume_from, masker, extra, dist)  # fmt: skip


def pretrain_gpt(
    cfg: GPTConfig,
    train: TrainSpec,
    train_shards: list[Path],
    val_shards: list[Path],
    out_dir: Path,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    resume_from: Path | None = None,
    extra: dict[str, Any] | None = None,
    dist: DistContext | None = None,
) -> PretrainResult:
    """A GPT decoder on CLM shards (fixed-length packed sequences, optional doc_index)."""
    return pretrain_shards(lambda: GPTLMHeadModel(cfg), cfg.to_dict(), "clm", train, train_shards, val_shards,
                           out_dir, tracker, progress, resume_from, None, extra, dist)  # fmt: skip


def resume_point(out_dir: Path) -> Path | None:
    """The newest periodic checkpoint of an interrupted run in `out_dir`, or None."""
    return latest_checkpoint(Path(out_dir) / CHECKPOINTS)


def clear_checkpoints(out_dir: Path) -> int:
    """Remove an earlier attempt's checkpoints (a fresh run must not keep them); returns how many."""
    found = list_checkpoints(Path(out_dir) / CHECKPOINTS)
    shutil.rmtree(Path(out_dir) / CHECKPOINTS, ignore_errors=True)
    return len(found)
