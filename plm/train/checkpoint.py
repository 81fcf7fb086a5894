"""Self-describing training checkpoints: model, optimizer, scheduler, RNG states, data position, step, extras.

Everything is stored as tensors and plain Python containers so that `torch.load(weights_only=True)`
can read it back (no pickled classes). Writes are atomic: a temp file in the same directory is
renamed over the target, so a crash never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy-global and python RNG states, as weights_only-loadable values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` captured."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    loader_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    ranks: list[dict[str, Any]] | None = None,
    model_state: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint atomically. `extra` must hold plain values (str/int/float/list/dict/tensors),
    e.g. the spec slice and the upstream fingerprints, so that weights_only loading accepts it.
    `ranks`: under DDP, every rank's {"loader": state, "rng": rng_state()} (index = rank).
    `model_state` / `optimizer_state`: the full states in `state_dict()` form when `model` and `optimizer`
    hold only shards (FSDP: `plm.train.distributed.full_state_dicts`); default: their own `state_dict()`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict() if model_state is None else model_state,
        "optimizer": optimizer.state_dict() if optimizer_state is None else optimizer_state,
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "loader": dict(loader_state),
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    if ranks is not None:
        payload["ranks"] = list(ranks)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict (keys: model, optimizer, scheduler, step, loader, rng, extra); safe to load."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


def step_path(directory: Path, step: int) -> Path:
    """`<directory>/step-00000010.pt`: periodic checkpoints sort by name = by step."""
    return Path(directory) / f"step-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the periodic checkpoints in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := STEP_FILE.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest periodic checkpoint in `directory`, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` periodic checkpoints (`best.pt` is a separate file); returns the deleted."""
    found = list_checkpoints(directory)
    doomed = [p for _, p in found[: max(0, len(found) - keep)]]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def mark_best(checkpoint: Path, best: Path) -> Path:
    """Copy `checkpoint` to `best` atomically (a copy, so pruning the periodic one leaves it intact)."""
    fd, tmp = tempfile.mkstemp(prefix=best.name + ".", suffix=".tmp", dir=best.parent)
    os.close(fd)
    try:
        shutil.copyfile(checkpoint, tmp)
        os.replace(tmp, best)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return best
