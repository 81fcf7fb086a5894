"""NaN guard: a non-finite loss or gradient fails the run; nothing is written after the bad step.

Engine level: periodic checkpoints before the failure may exist, none at or after it, and no final
checkpoint or model folder. Stage level: the resumable stage directory is removed, the stage run is
FAILED and no model version is registered.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from mlflow import MlflowClient

from plm import stages
from plm.config import TrainSpec, load_spec
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.checkpoint import list_checkpoints
from plm.train.engine import pretrain, pretrain_gpt
from plm.train.loader import StreamingLoader

CFG = GPTConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64,
                dropout=0.0)  # fmt: skip
SPEC = TrainSpec(steps=12, batch_size=8, lr=3e-3, warmup_steps=1, device="cpu", seed=3, checkpoint_every=1, prefetch=0)


def _failing_step(exc: pytest.ExceptionInfo) -> int:
    return int(re.search(r"at step (\d+)", str(exc.value)).group(1))


def test_huge_lr_fails_and_writes_nothing_after(clm_shards, tmp_path):
    train, val = clm_shards
    with pytest.raises(FloatingPointError, match=r"non-finite .* at step \d+") as exc:
        pretrain_gpt(CFG, SPEC.model_copy(update={"lr": 1e30}), train, val, tmp_path)
    step = _failing_step(exc)
    assert all(s < step for s, _ in list_checkpoints(tmp_path / "checkpoints"))
    assert not (tmp_path / "model").exists() and not (tmp_path / "checkpoint.pt").exists()


def test_poisoned_batch_fails_at_its_step(clm_shards, tmp_path):
    """Token 0 never occurs in the toy shards; its embedding row is inf, so only the batches of an extra shard
    made of token 0 produce a non-finite loss: the run trains normally until the first of them."""
    train, _ = clm_shards
    poisoned = tmp_path / "poisoned.parquet"
    pq.write_table(pa.table({"input_ids": pa.array([[0] * 32] * 8, pa.list_(pa.int32()))}), poisoned)

    def build() -> GPTLMHeadModel:
        model = GPTLMHeadModel(CFG)
        # untie the LM head first: a tied inf row would make every logit of every batch non-finite
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        with torch.no_grad():
            model.transformer.wte.weight[0] = float("inf")
        return model

    loader = StreamingLoader([*train, poisoned], 8, "clm", seed=SPEC.seed, buffer_rows=8, shuffle=False)
    with pytest.raises(FloatingPointError) as exc:
        pretrain(build, SPEC.model_copy(update={"steps": 40}), loader, None, tmp_path / "out", kind="clm",
                 config=CFG.to_dict())  # fmt: skip
    step = _failing_step(exc)
    assert step == 4 * 48 // 8 + 1  # unshuffled: the four 48-row shards first, then the poisoned one
    assert [s for s, _ in list_checkpoints(tmp_path / "out" / "checkpoints")] == [step - 2, step - 1]  # keep 2
    assert not (tmp_path / "out" / "model").exists() and not (tmp_path / "out" / "checkpoint.pt").exists()


@pytest.mark.filterwarnings("ignore")
def test_stage_failure_leaves_no_output_and_registers_nothing(tmp_path, monkeypatch):
    pytest.importorskip("gensim")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = load_spec(None, [f"home={tmp_path}", "name=nan-guard", "corpus.paths=[sample:lee]", "corpus.text_unit=line",
                            "tokenizer.kind=bytelevel_bpe", "tokenizer.family=gpt", "tokenizer.vocab_size=600",
                            "objectives.kinds=[clm]", "objectives.seq_len=32", "model.arch=gpt", "model.size=debug",
                            "train.steps=8", "train.batch_size=8", "train.warmup_steps=1", "train.lr=1e30",
                            "train.checkpoint_every=1"])  # fmt: skip
    with pytest.raises(FloatingPointError), stages.Pipeline(spec) as p:
        stages.run_all(p)
    pretrain_dir = tmp_path / "artifacts" / "pretrain"
    assert not [d for d in pretrain_dir.iterdir() if not d.name.endswith(".lock")], list(pretrain_dir.iterdir())
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.search_model_versions("name='nan-guard-decoder'") == []
    exp = client.get_experiment_by_name("nan-guard")
    runs = client.search_runs([exp.experiment_id], "tags.`plm.stage` = 'pretrain'")
    assert [r.info.status for r in runs] == ["FAILED"]
