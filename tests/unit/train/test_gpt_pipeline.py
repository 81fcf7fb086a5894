"""The gpt path from the spec: ingest -> byte-level BPE -> CLM shards -> debug GPT -> HF export -> GPT-1
fine-tune -> registry,
through `plm.stages` and through `plm pretrain SPEC --json`, tracking on a tmp SQLite MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from plm import stages
from plm.config import load_spec
from plm.train.export import load_hf_export, load_model_dir
from plm.train.predict import DecoderPipeline

pytest.importorskip("gensim")

OVERRIDES = ["corpus.paths=[sample:lee]", "corpus.text_unit=line", "tokenizer.kind=bytelevel_bpe",
             "tokenizer.family=gpt", "tokenizer.vocab_size=600", "objectives.kinds=[clm]", "objectives.seq_len=32",
             "model.arch=gpt", "model.size=debug", "model.max_position=32", "train.steps=6", "train.batch_size=8",
             "train.warmup_steps=1", "train.log_every=2", "train.checkpoint_every=3", "train.eval_batches=2",
             "train.schedule=cosine", "name=gpt-tiny"]  # fmt: skip


def test_gpt_pipeline_from_spec(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = load_spec(None, [f"home={tmp_path}", *OVERRIDES, "finetune.train_labels=48", "finetune.epochs=1",
                            "finetune.seq_len=24", "finetune.compare_scratch=false", "finetune.test_fraction=0.05"])  # fmt: skip
    with stages.Pipeline(spec) as p:
        results = stages.run_all(p)
    assert [r.stage for r in results] == ["ingest", "tokenizer", "examples", "pretrain", "finetune", "register"]
    ft = p.results["finetune"]  # GPT-1 head on the decoder, registered under its own gate metric, served as a pyfunc
    assert ft.output.kind == "gpt_classifier" and ft.output.metric == "pretrained.test_accuracy"
    models = p.results["register"].output.models
    assert models["gpt-tiny-sentiment"].metric == "pretrained.test_accuracy"
    from plm.tracking import predict_texts

    rows = predict_texts(f"sqlite:///{tmp_path / 'mlflow.db'}", "models:/gpt-tiny-sentiment@champion", ["a fine film"])
    assert rows[0]["label"] in {"neg", "pos"} and 0.5 <= rows[0]["score"] <= 1
    pre = p.results["pretrain"]
    assert pre.output.arch == "gpt-debug" and pre.output.kind == "decoder" and pre.output.export_dir == "hf"
    for key in ("val_loss", "val_perplexity", "val_accuracy", "train_loss", "tokens_per_s"):
        assert key in pre.metrics, key
    assert (pre.path / "checkpoint.pt").is_file() and (pre.path / "checkpoints" / "best.pt").is_file()

    model, cfg = load_model_dir(pre.path / "model")
    assert type(model).__name__ == "GPTLMHeadModel" and cfg.vocab_size >= 256
    exported, _ = load_hf_export(pre.path / "hf")
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    torch.testing.assert_close(exported.eval()(x)["logits"], model.eval()(x)["logits"])

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(pre.run_id)
    assert {"perplexity", "accuracy", "lr", "grad_norm", "tokens_per_s", "data_wait_fraction"} <= run.data.metrics.keys()
    assert len(client.get_metric_history(pre.run_id, "loss")) == 3
    mv = client.get_model_version_by_alias("gpt-tiny-decoder", "candidate")
    assert mv.tags["plm.fingerprint"] == pre.fingerprint and mv.tags["plm.metric"] == "val_perplexity"

    pipe = DecoderPipeline.load(pre.path / "model", pre.path / "model" / "tokenizer.json")
    frame = pipe.predict_frame(pd.DataFrame({"text": ["The government said", "a"]}))
    assert list(frame.columns) == ["perplexity", "continuation"] and frame["perplexity"].iloc[0] > 1
    assert isinstance(frame["continuation"].iloc[0], str)


def test_gpt_refuses_specs_without_clm_or_gpt_tokenizer(tmp_path):
    spec = load_spec(None, [f"home={tmp_path}", *OVERRIDES, "tokenizer.family=bert", "tokenizer.kind=wordpiece"])
    with pytest.raises(ValueError, match="tokenizer.family=gpt"), stages.Pipeline(spec, tracking=False) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        stages.pretrain.run(p, tok, stages.examples.run(p, ing, tok))
    spec = load_spec(None, [f"home={tmp_path}", *OVERRIDES, "objectives.kinds=[mlm, nsp]", "tokenizer.family=bert",
                            "tokenizer.kind=wordpiece"])  # fmt: skip
    with pytest.raises(ValueError, match="objectives.kinds must include clm"), stages.Pipeline(spec, tracking=False) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        stages.pretrain.run(p, tok, stages.examples.run(p, ing, tok))


def test_cli_pretrain_json(tmp_path):
    env = {**os.environ, "PLM_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    cmd = [sys.executable, "-c", "from flows.cli import main; main()", "pretrain", "pipelines/gpt_small.yaml", *sets, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    assert payload["model_uri"] == "models:/gpt-tiny-decoder/1"
    assert payload["checkpoint_path"].endswith("checkpoint.pt") and os.path.isfile(payload["checkpoint_path"])
    assert os.path.isfile(os.path.join(payload["export_path"], "config.json")) and payload["run_id"]

    # --resume of a finished run: reused by fingerprint (train.resume is not part of it)
    proc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout.strip().splitlines()[-1])
    assert again["reused"] and again["fingerprint"] == payload["fingerprint"] and again["model_uri"] == payload["model_uri"]
