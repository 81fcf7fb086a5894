"""FSDP2 on CPU (`train.parallel: fsdp`): `torchrun --standalone --nproc_per_node 2` with gloo.

Equivalence tested as in test_ddp.py: with dropout 0 and micro-batches whose halves hold the same number
of targets (fixed-length CLM rows; fixed-length MLM rows with exactly `MASKED` predictions each), two
FSDP ranks of B/2 sequences take the optimizer steps of one process fed rank 0's B/2 rows followed by
rank 1's (FSDP2 reduce-scatters the mean of the two ranks' mean gradients). Only float summation order
differs, so the weights are allclose (the same tolerance as DDP's test), not bit-identical. Also: a run
resumed under FSDP from its step-4 checkpoint is bit-identical to the uninterrupted one, and the
checkpoint's optimizer state has the one-process format (indices, the same state tensors).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from plm.config import TrainSpec, output_slice
from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.checkpoint import load_checkpoint
from plm.train.engine import pretrain, pretrain_bert, pretrain_gpt
from plm.train.loader import PretrainLoader

SPEC = TrainSpec(steps=8, batch_size=8, lr=3e-3, warmup_steps=1, log_every=4, eval_batches=2, device="cpu", seed=5,
                 checkpoint_every=4, prefetch=2, shuffle_buffer=24, nproc=2, parallel="fsdp")  # fmt: skip
ONE = SPEC.model_copy(update={"nproc": 1, "parallel": "ddp"})  # the one-process reference
GPT = GPTConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64,
                dropout=0.0)  # fmt: skip
BERT = BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64,
                  dropout=0.0)  # fmt: skip
MASKED = (1, 5, 12)  # predicted positions of every MLM row (never [CLS]/[SEP])


def write_fixed_mlm_shard(path: Path, rows: int, seed: int) -> Path:
    """19-token rows, [CLS] A(8) [SEP] B(8) [SEP], no padding, `MASKED` positions predicted: every half-batch
    has the same number of MLM targets, so the mean of two halves' mean losses is the whole batch's mean."""
    rng = np.random.default_rng(seed)
    ids, types, labels, nsp = [], [], [], []
    for _ in range(rows):
        motif, is_random = int(rng.integers(5, 64)), int(rng.random() < 0.5)
        other = int(rng.integers(5, 64)) if is_random else motif
        row = np.array([2] + [motif] * 8 + [3] + [other] * 8 + [3], dtype=np.int64)
        lab = np.full(len(row), -100)
        lab[list(MASKED)] = row[list(MASKED)]
        row[list(MASKED)] = 4
        ids.append(row.tolist())
        types.append([0] * 10 + [1] * 9)
        labels.append(lab.tolist())
        nsp.append(is_random)
    pq.write_table(pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32())),
                             "token_type_ids": pa.array(types, pa.list_(pa.int8())),
                             "labels": pa.array(labels, pa.list_(pa.int32())),
                             "nsp_label": pa.array(nsp, pa.int8())}), path, row_group_size=16)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def fixed_mlm_shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlm-fixed")
    return [write_fixed_mlm_shard(d / f"part-{i:05d}.parquet", 48, i) for i in range(4)], [
        write_fixed_mlm_shard(d / "val-00000.parquet", 32, 100)
    ]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model" / "model.safetensors"))


def test_fsdp_two_ranks_match_one_process(clm_shards, fixed_mlm_shards, tmp_path, both_ranks):
    shards = {"clm": clm_shards, "mlm": fixed_mlm_shards}
    args = json.dumps({k: [[str(p) for p in s] for s in v] for k, v in shards.items()} | {"out": str(tmp_path)})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not list(tmp_path.glob("*-rank1")), "a rank other than 0 wrote output"

    for kind, build, cfg in (("clm", GPTLMHeadModel, GPT), ("mlm", BertForPreTraining, BERT)):
        train, val = shards[kind]
        single = pretrain(lambda b=build, c=cfg: b(c), ONE, both_ranks(train, ONE, kind),
                          PretrainLoader(val, ONE.batch_size, shuffle=False, drop_last=False, kind=kind),
                          tmp_path / f"single-{kind}", kind=kind, config=cfg.to_dict())  # fmt: skip
        fsdp, ref = _weights(tmp_path / f"fsdp-{kind}"), _weights(tmp_path / f"single-{kind}")
        assert fsdp.keys() == ref.keys()  # tied decoder / lm head stored once, as without FSDP
        for k in ref:
            torch.testing.assert_close(fsdp[k], ref[k], rtol=1e-4, atol=1e-5, msg=f"{kind} {k}")
        metrics = json.loads((tmp_path / f"fsdp-{kind}" / "metrics.json").read_text())
        assert 0.45 < metrics["held"] < 0.55  # sharded: each of the 2 ranks holds about half of every parameter
        assert metrics["tokens"] == single.metrics["tokens"]
        assert metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], abs=1e-4)
        assert metrics["val_loss"] == pytest.approx(single.metrics["val_loss"], abs=1e-4)

        # the checkpoint holds full states in the one-process format: parameter indices, the same tensors
        ck, one = load_checkpoint(tmp_path / f"fsdp-{kind}" / "checkpoint.pt"), load_checkpoint(single.checkpoint)
        assert ck["extra"]["world"] == 2 and ck["model"].keys() == one["model"].keys()
        assert [g["params"] for g in ck["optimizer"]["param_groups"]] == [
            g["params"] for g in one["optimizer"]["param_groups"]
        ]
        for i, state in one["optimizer"]["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(ck["optimizer"]["state"][i][name], value, rtol=1e-3, atol=1e-6)

    # resumed under FSDP from step 4: bit-identical to the uninterrupted FSDP run
    resumed, whole = _weights(tmp_path / "fsdp-clm-resumed"), _weights(tmp_path / "fsdp-clm")
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_parallel_is_fingerprinted_only_when_set_and_fsdp_needs_several_processes():
    with pytest.raises(ValueError, match="train.parallel=fsdp"):
        TrainSpec(parallel="fsdp")
    assert "parallel" not in output_slice(ONE) and output_slice(SPEC)["parallel"] == "fsdp"


def _rank_main(a: dict) -> None:
    import plm.train.engine as engine
    from plm.train.distributed import init_distributed, shard_model, shutdown

    held: list[float] = []  # per sharded run: the fraction of the parameters this rank holds

    def shard_and_count(model, blocks, device, compile_blocks=False):
        shard_model(model, blocks, device, compile_blocks)
        held.append(sum(p.to_local().numel() for p in model.parameters()) / sum(p.numel() for p in model.parameters()))

    engine.shard_model = shard_and_count
    ctx = init_distributed("cpu")
    suffix = "" if ctx.is_main else f"-rank{ctx.rank}"
    root = Path(a["out"])
    try:
        for kind, fn, cfg in (("clm", pretrain_gpt, GPT), ("mlm", pretrain_bert, BERT)):
            train, val = ([Path(p) for p in s] for s in a[kind])
            out = root / f"fsdp-{kind}{suffix}"
            res = fn(cfg, SPEC, train, val, out, dist=ctx)
            if ctx.is_main:
                assert res.model is None  # under FSDP the full model is the folder rank 0 wrote
                (out / "metrics.json").write_text(json.dumps(res.metrics | {"held": held[-1]}))
        train, val = ([Path(p) for p in s] for s in a["clm"])
        step4 = root / "fsdp-clm" / "checkpoints" / "step-00000004.pt"  # rank 0 wrote it; every rank reads it
        pretrain_gpt(GPT, SPEC, train, val, root / f"fsdp-clm-resumed{suffix}", resume_from=step4, dist=ctx)
    finally:
        shutdown(ctx)


if __name__ == "__main__":  # one torchrun rank
    _rank_main(json.loads(sys.argv[1]))


def test_cli_parallel_sets_the_spec(tmp_path):
    """`plm pretrain --parallel fsdp` reaches train.parallel (without --nproc the spec refuses it, in one line,
    before any stage runs); the end-to-end `--nproc 2` launch is the DDP path of test_pretrain_nproc.py."""
    from typer.testing import CliRunner

    from plm.cli import app

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\n")
    res = CliRunner().invoke(app, ["pretrain", str(spec), "--parallel", "fsdp", "--set", f"home={tmp_path}"])
    assert res.exit_code != 0 and "train.parallel=fsdp" in res.output and not (tmp_path / "artifacts").exists()
    bad = CliRunner().invoke(app, ["pretrain", str(spec), "--parallel", "zero"])
    assert bad.exit_code == 2 and "--parallel" in bad.output
