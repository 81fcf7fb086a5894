"""Exact resume: a CPU run SIGKILLed after a checkpoint and resumed ends bit-identical to an uninterrupted run.

The interrupted run is a real child process (this file run as a script) killed with SIGKILL as soon as
its first periodic checkpoint is on disk; it sleeps a little after each step (outside the maths) so the
kill lands mid-run on any machine. Dropout is on, so the RNG states must be restored too. The child
runs with this process's CPU thread count (its default may differ: OMP_NUM_THREADS, a cgroup); the
resume runs with another count, and the engine must adopt the checkpoint's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from plm.config import TrainSpec
from plm.models.bert import BertConfig
from plm.models.gpt import GPTConfig
from plm.train.checkpoint import list_checkpoints, load_checkpoint
from plm.train.engine import pretrain_bert, pretrain_gpt, resume_point

SPEC = TrainSpec(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, log_every=5, eval_batches=2, device="cpu",
                 seed=11, checkpoint_every=4, keep_checkpoints=2, prefetch=2, shuffle_buffer=40)  # fmt: skip
DIMS = dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64, dropout=0.1)
FINGERPRINTS = {"tokenizer": "t0", "examples": "e0"}


def run(arch: str, train: list[Path], val: list[Path], out: Path, resume: bool, step_sleep: float = 0.0,
        fingerprints: dict[str, str] = FINGERPRINTS):  # fmt: skip
    """The same training call for the child, the uninterrupted run and the resumed run."""
    progress = (lambda *a: time.sleep(step_sleep)) if step_sleep else (lambda *a: None)
    kw = dict(progress=progress, resume_from=resume_point(out) if resume else None, extra={"fingerprints": fingerprints})
    if arch == "bert":
        return pretrain_bert(BertConfig(**DIMS), SPEC, train, val, out, **kw)
    return pretrain_gpt(GPTConfig(**DIMS), SPEC, train, val, out, **kw)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.parametrize("arch", ["bert", "gpt"])
def test_sigkill_then_resume_is_bit_identical(arch, mlm_shards, clm_shards, tmp_path):
    train, val = mlm_shards if arch == "bert" else clm_shards
    full = run(arch, train, val, tmp_path / "full", resume=False)

    out = tmp_path / "run"
    threads = torch.get_num_threads()
    args = json.dumps({"arch": arch, "train": [str(p) for p in train], "val": [str(p) for p in val], "out": str(out),
                       "threads": threads})  # fmt: skip
    child = subprocess.Popen([sys.executable, __file__, args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while resume_point(out) is None:
        if child.poll() is not None:
            pytest.fail(f"child exited ({child.returncode}) before a checkpoint: {child.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("no checkpoint within 240 s")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "model").exists() and not (out / "checkpoint.pt").exists(), "the child finished before the kill"
    killed_at = load_checkpoint(resume_point(out))["step"]
    assert killed_at % SPEC.checkpoint_every == 0 and killed_at < SPEC.steps
    assert len(list_checkpoints(out / "checkpoints")) <= SPEC.keep_checkpoints

    other = 1 if threads > 1 else 2
    torch.set_num_threads(other)
    try:
        with pytest.warns(UserWarning, match=f"resuming with {threads} CPU threads"):
            resumed = run(arch, train, val, out, resume=True)
        assert torch.get_num_threads() == other  # restored after the run
    finally:
        torch.set_num_threads(threads)
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.metrics["val_loss"] == full.metrics["val_loss"]
    ck = load_checkpoint(resumed.checkpoint)
    assert ck["extra"]["fingerprints"] == FINGERPRINTS and ck["extra"]["kind"] == ("mlm" if arch == "bert" else "clm")
    assert {"model", "optimizer", "scheduler", "rng", "loader", "step"} <= ck.keys()
    assert {"torch", "numpy", "python"} <= ck["rng"].keys()
    assert (out / "checkpoints" / "best.pt").is_file()


def test_resume_refuses_other_data_or_spec(clm_shards, tmp_path):
    train, val = clm_shards
    spec = SPEC.model_copy(update={"steps": 6, "checkpoint_every": 2})
    pretrain_gpt(GPTConfig(**DIMS), spec, train, val, tmp_path, extra={"fingerprints": FINGERPRINTS})
    latest = resume_point(tmp_path)
    assert latest is not None
    with pytest.raises(ValueError, match="cannot resume.*different fingerprints"):
        pretrain_gpt(GPTConfig(**DIMS), spec, train, val, tmp_path / "x", resume_from=latest,
                     extra={"fingerprints": {**FINGERPRINTS, "examples": "other"}})  # fmt: skip
    with pytest.raises(ValueError, match="cannot resume.*different train"):
        pretrain_gpt(GPTConfig(**DIMS), spec.model_copy(update={"lr": 1e-3}), train, val, tmp_path / "x",
                     resume_from=latest, extra={"fingerprints": FINGERPRINTS})  # fmt: skip
    with pytest.raises(ValueError, match="cannot resume.*different config"):
        pretrain_gpt(GPTConfig(**{**DIMS, "num_layers": 1}), spec, train, val, tmp_path / "x",
                     resume_from=latest, extra={"fingerprints": FINGERPRINTS})  # fmt: skip


if __name__ == "__main__":  # the child process that gets killed
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a["threads"])
    run(a["arch"], [Path(p) for p in a["train"]], [Path(p) for p in a["val"]], Path(a["out"]), resume=False,
        step_sleep=0.3)  # fmt: skip
