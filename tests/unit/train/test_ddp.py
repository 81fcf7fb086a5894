"""DDP on CPU: `torchrun --standalone --nproc_per_node 2` with gloo, each rank reading its own shards.

Equivalence tested: with fixed-length CLM batches (every micro-batch has the same number of target
tokens) and dropout 0, two ranks of B/2 sequences each take the same optimizer steps as one process
whose batches are rank 0's B/2 rows followed by rank 1's B/2 rows: DDP averages the two ranks' mean
gradients, the single process takes the mean over both halves. Only float summation order differs,
so the final weights are allclose, not bit-identical. Rank 0 alone writes checkpoints and the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from plm.config import TrainSpec
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.checkpoint import load_checkpoint
from plm.train.engine import pretrain, pretrain_gpt
from plm.train.loader import PretrainLoader, StreamingLoader

SPEC = TrainSpec(steps=8, batch_size=8, lr=3e-3, warmup_steps=1, log_every=4, eval_batches=2, device="cpu", seed=5,
                 checkpoint_every=4, prefetch=2, shuffle_buffer=24)  # fmt: skip
CFG = GPTConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64,
                dropout=0.0)  # fmt: skip



def test_two_rank_ddp_matches_one_process(clm_shards, tmp_path, both_ranks):
    train, val = clm_shards
    args = json.dumps({"train": [str(p) for p in train], "val": [str(p) for p in val], "out": str(tmp_path / "ddp")})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not (tmp_path / "ddp-rank1").exists(), "a rank other than 0 wrote output"

    single = pretrain(lambda: GPTLMHeadModel(CFG), SPEC, both_ranks(train, SPEC),
                      PretrainLoader(val, SPEC.batch_size, shuffle=False, drop_last=False, kind="clm"),
                      tmp_path / "single", kind="clm", config=CFG.to_dict())  # fmt: skip
    ddp = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    ref = load_file(str(single.model_dir / "model.safetensors"))
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
    # every rank's loader and RNG state is in rank 0's checkpoints (exact resume of a DDP run)
    ck = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert [s["loader"]["rank"] for s in ck["ranks"]] == [0, 1] and ck["extra"]["world"] == 2
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert abs(metrics["train_loss"] - single.metrics["train_loss"]) < 1e-4
    assert metrics["tokens"] == single.metrics["tokens"]  # tokens summed over ranks


def test_shards_are_split_by_rank(clm_shards):
    train, _ = clm_shards
    seen = [set(StreamingLoader(train, 4, "clm", rank=r, world=2).paths) for r in range(2)]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(train)
    assert sorted(train)[0] in seen[0] and sorted(train)[1] in seen[1]


def _rank_main(a: dict) -> None:
    from plm.train.distributed import init_distributed, shutdown

    ctx = init_distributed("cpu")
    out = Path(a["out"]) if ctx.rank == 0 else Path(a["out"] + f"-rank{ctx.rank}")
    try:
        res = pretrain_gpt(CFG, SPEC, [Path(p) for p in a["train"]], [Path(p) for p in a["val"]], out, dist=ctx)
        if ctx.is_main:
            (out / "metrics.json").write_text(json.dumps(res.metrics))
    finally:
        shutdown(ctx)


if __name__ == "__main__":  # one torchrun rank
    _rank_main(json.loads(sys.argv[1]))


def test_grad_accum_matches_one_big_batch(clm_shards, tmp_path):
    """Two micro-batches of B/2 (consecutive rows of the same stream) = one batch of B, for fixed-length CLM."""
    from plm.train.engine import _compile

    train, _ = clm_shards
    spec = SPEC.model_copy(update={"steps": 5, "checkpoint_every": 0})
    one = pretrain_gpt(CFG, spec, train, [], tmp_path / "one")
    two = pretrain_gpt(CFG, spec.model_copy(update={"grad_accum": 2}), train, [], tmp_path / "two")
    a, b = load_file(str(one.model_dir / "model.safetensors")), load_file(str(two.model_dir / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert one.metrics["tokens"] == two.metrics["tokens"]
    model = torch.nn.Linear(2, 2)
    assert _compile(model, "auto", torch.device("cpu")) is model and _compile(model, "off", torch.device("cuda")) is model
