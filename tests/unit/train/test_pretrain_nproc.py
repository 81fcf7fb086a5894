"""`plm pretrain --nproc 2`: the pretrain stage launches `torch.distributed.run` itself (gloo on CPU).

The two ranks' weights equal one process fed the same global batches (rank 0's half of each batch, then rank
1's: DDP averages the two halves' mean gradients), allclose because only float summation order differs;
rank 0's metric history reaches the stage's MLflow run, and the model is exported (registering it is the
same code as one process: tests/unit/train/test_gpt_pipeline.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file
from typer.testing import CliRunner

from plm.cli import app
from plm.config import load_spec
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.checkpoint import load_checkpoint
from plm.train.engine import pretrain
from plm.train.loader import PretrainLoader

OVERRIDES = ["corpus.paths=[sample:lee]", "corpus.text_unit=line", "tokenizer.kind=bytelevel_bpe",
             "tokenizer.family=gpt", "tokenizer.vocab_size=400", "objectives.kinds=[clm]", "objectives.seq_len=32",
             "objectives.docs_per_shard=100", "model.arch=gpt", "model.size=debug", "model.max_position=32",
             "model.dropout=0", "model.attention_dropout=0", "train.steps=6", "train.batch_size=8",
             "train.warmup_steps=1", "train.log_every=2", "train.eval_batches=1", "train.device=cpu", "name=ddp",
             "tracking.register_models=false"]  # fmt: skip



def test_pretrain_nproc_2_matches_one_process(tmp_path, monkeypatch, both_ranks):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec_file = tmp_path / "ddp.yaml"
    spec_file.write_text("name: ddp\n")
    args = ["pretrain", str(spec_file), "--nproc", "2", "--json", "--set", f"home={tmp_path}"]
    for o in OVERRIDES:
        args += ["--set", o]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    out = Path(payload["path"])
    assert (out / "hf" / "config.json").is_file() and not (out / ".ranks").exists()  # exported; rank files gone
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["extra"]["world"] == 2 and [s["loader"]["rank"] for s in ck["ranks"]] == [0, 1]

    spec = load_spec(spec_file, [f"home={tmp_path}", *OVERRIDES])
    examples = Path(json.loads((out / "manifest.json").read_text())["inputs"]["examples"])
    shards = sorted((tmp_path / "artifacts" / "examples" / str(examples) / "clm" / "train").glob("part-*.parquet"))
    val = sorted((tmp_path / "artifacts" / "examples" / str(examples) / "clm" / "validation").glob("part-*.parquet"))
    assert len(shards) >= 2  # each rank reads its own shards
    cfg = GPTConfig.from_dict(json.loads((out / "model" / "config.json").read_text()))
    single = pretrain(lambda: GPTLMHeadModel(cfg), spec.train, both_ranks(shards, spec.train),
                      PretrainLoader(val, spec.train.batch_size, shuffle=False, drop_last=False, kind="clm"),
                      tmp_path / "single", kind="clm", config=cfg.to_dict())  # fmt: skip
    ddp, ref = load_file(str(out / "model" / "model.safetensors")), load_file(str(single.model_dir / "model.safetensors"))
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
    assert payload["metrics"]["tokens"] == single.metrics["tokens"]
    assert payload["metrics"]["train_loss"] == pytest.approx(single.metrics["train_loss"], abs=1e-4)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(client.get_metric_history(payload["run_id"], "loss")) == 3  # rank 0's history, replayed
    assert client.get_run(payload["run_id"]).data.params["world_size"] == "2"


def test_nproc_is_fingerprinted_only_when_set():
    from plm.config import output_slice

    one, two = load_spec(None, OVERRIDES), load_spec(None, [*OVERRIDES, "train.nproc=2"])
    assert "nproc" not in output_slice(one.train) and output_slice(two.train)["nproc"] == 2
    with pytest.raises(Exception, match="train.nproc"):
        load_spec(None, [*OVERRIDES, "train.nproc=3"])  # 8 sequences do not split over 3 ranks
