"""Stage contract against a real MLflow store: reuse by fingerprint, failure leaves nothing behind."""

import pytest
from pathlib import Path
from mlflow import MlflowClient

from plm import stages
from plm.artifacts import fingerprint, lookup
from plm.config import load_spec

pytest.importorskip("gensim")


def _spec(home, *extra):
    return load_spec(None, [f"home={home}", "corpus.paths=[sample:lee]", "corpus.text_unit=line",
                            "tokenizer.vocab_size=1000", "objectives.seq_len=64", "objectives.dupe_factor=1", *extra])


def test_reuse_and_fingerprint_chain(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = _spec(tmp_path)
    with stages.Pipeline(spec) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        ex = stages.examples.run(p, ing, tok)
    assert not any(r.reused for r in (ing, tok, ex))
    assert ex.inputs == {"ingest": ing.fingerprint, "tokenizer": tok.fingerprint}
    assert ex.counts["train_examples"] > 100 and (ex.path / "mlm" / "train" / "part-000-00000.parquet").is_file()

    with stages.Pipeline(spec) as p2:
        again = [stages.ingest.run(p2)]
        again.append(stages.tokenizer.run(p2, again[0]))
    assert all(r.reused for r in again) and again[1].fingerprint == tok.fingerprint

    changed = _spec(tmp_path, "tokenizer.vocab_size=900")
    with stages.Pipeline(changed) as p3:
        ing3 = stages.ingest.run(p3)
        tok3 = stages.tokenizer.run(p3, ing3)
    assert ing3.reused and not tok3.reused and tok3.fingerprint != tok.fingerprint

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    reused_runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id],
                                     "tags.`plm.reused` = 'true'")
    assert {r.data.tags["plm.stage"] for r in reused_runs} == {"ingest", "tokenizer"}
    assert all(r.data.tags["plm.source_run_id"] != "None" for r in reused_runs)
    # lineage as MLflow dataset inputs: the examples run names its tokenizer input by fingerprint
    ex_run = client.get_run(ex.run_id)
    assert f"tokenizer-{tok.fingerprint}" in {d.dataset.name for d in ex_run.inputs.dataset_inputs}
    # MLflow's fluent API must not leak this home's store into the process environment
    assert "MLFLOW_TRACKING_URI" not in __import__("os").environ


def test_failed_gate_leaves_no_output_and_marks_runs_failed(tmp_path):
    spec = _spec(tmp_path, "objectives.max_predictions=1")  # caps k at 1: the realised mask rate falls far below 15 %
    with pytest.raises(ValueError, match="outside tolerance"), stages.Pipeline(spec) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        stages.examples.run(p, ing, tok)
    fp = fingerprint("examples", stages.STAGE_VERSIONS["examples"], spec.objectives.model_dump(mode="json"),
                            {"ingest": ing.fingerprint, "tokenizer": tok.fingerprint})
    assert lookup(tmp_path, "examples", fp) is None
    assert not [p for p in (tmp_path / "artifacts" / "examples").iterdir() if not p.name.endswith(".lock")]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(p.run_id)
    assert parent.info.status == "FAILED" and "outside tolerance" in parent.data.tags["plm.error"]
    child = client.search_runs([parent.info.experiment_id], "tags.`plm.stage` = 'examples'")[0]
    assert child.info.status == "FAILED"


def test_library_use_without_tracking(tmp_path):
    with stages.Pipeline(_spec(tmp_path), tracking=False) as p:
        ing = stages.ingest.run(p)
    assert p.run_id is None and ing.run_id is None and ing.counts["documents"] > 100
    assert not (tmp_path / "mlflow.db").exists()


def test_clm_and_skipgram_examples_from_the_spec(tmp_path):
    import pyarrow.parquet as pq

    spec = _spec(tmp_path, "objectives.kinds=[clm, skipgram]", "tokenizer.family=gpt", "tokenizer.kind=bytelevel_bpe",
                 "objectives.skipgram.min_count=3")
    with stages.Pipeline(spec, tracking=False) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        ex = stages.examples.run(p, ing, tok)
    clm = pq.read_table(sorted((ex.path / "clm" / "train").glob("part-*.parquet"))[0])
    assert {len(r) for r in clm.column("input_ids").to_pylist()} == {64}
    sg = pq.read_table(sorted((ex.path / "skipgram" / "train").glob("part-*.parquet"))[0])
    assert sg.schema.names[:3] == ["center", "context", "negatives"]
    assert (ex.path / "skipgram" / "train" / "vocab.parquet").is_file()
    assert ex.counts["skipgram.train_pairs"] > 10_000 and ex.counts["clm.train_sequences"] > 100
    assert "skipgram.train.negatives_tv_buckets" in ex.metrics


def test_mlm_needs_the_bert_family(tmp_path):
    spec = _spec(tmp_path, "tokenizer.family=gpt", "tokenizer.kind=bytelevel_bpe")
    with pytest.raises(ValueError, match="tokenizer.family=bert"), stages.Pipeline(spec, tracking=False) as p:
        ing = stages.ingest.run(p)
        stages.examples.run(p, ing, stages.tokenizer.run(p, ing))


def test_transfer_report_through_the_cli(tmp_path):
    import json

    import pandas as pd
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from plm.cli import app

    args = ["transfer", "pipelines/enko_polarity.yaml", "--json"]
    for o in (f"home={tmp_path}", "corpus.paths=[sample:lee]", "corpus.text_unit=line", "tokenizer.vocab_size=1000",
              "objectives.seq_len=64", "objectives.dupe_factor=1", "model.size=debug", "train.steps=20",
              "train.warmup_steps=2", "train.batch_size=16", "finetune.epochs=1", "finetune.seq_len=32",
              "finetune.transfer_strategies=[full, frozen]", "finetune.transfer_fractions=[0.5, 1.0]"):
        args += ["--set", o]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    report = pd.read_csv(payload["report_path"])
    assert list(report.columns[:7]) == ["strategy", "init", "labels", "seed", "metric", "value", "test_examples"]
    assert set(report.init) == {"pretrained", "scratch", "baseline"}
    assert set(report[report.init == "baseline"].strategy) == {"tfidf_lr", "tfidf_lr_cv"}
    # (2 strategies x {pretrained, scratch} + 2 baselines) x 2 budgets x {accuracy, macro_f1}
    assert len(report) == (2 * 2 + 2) * 2 * 2 and set(report.seed) == {1234}
    n_train = int(payload["counts"]["train_examples"])
    assert set(report.labels) == {max(1, round(0.5 * n_train)), n_train}
    assert (report.test_examples == payload["counts"]["test_examples"]).all()
    scratch = report[(report.init == "scratch") & (report.metric == "accuracy")].pivot_table(
        index="labels", columns="strategy", values="value")
    assert (scratch["full"] == scratch["frozen"]).all()  # one BERT scratch run per budget and seed, shared
    summary = pd.read_csv(Path(payload["path"]) / "summary.csv")
    assert {"mean", "low", "high", "seeds"} <= set(summary.columns) and summary.low.isna().all()  # one seed: no interval
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(payload["run_id"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.csv", "summary.csv", "plots"}

def test_one_dag_plans_every_entry_point():
    from plm.config import RUN_ONLY, TrainSpec, output_slice

    def plan(target, *extra, skip=()):
        return [s.name for s in stages.plan(stages.Pipeline(load_spec(None, list(extra)), tracking=False), target, skip)]

    assert plan("register") == ["ingest", "tokenizer", "examples", "pretrain", "finetune", "register"]
    assert plan("register", "finetune.report=true", "word_vectors={}", "objectives.kinds=[mlm, nsp, skipgram]") == [
        "ingest", "tokenizer", "examples", "pretrain", "word_vectors", "finetune", "transfer", "register"]
    gpt = ["model.arch=gpt", "tokenizer.family=gpt", "objectives.kinds=[clm]"]
    assert plan("register", *gpt) == ["ingest", "tokenizer", "examples", "pretrain", "finetune", "register"]
    gpt_wv = ["model.arch=gpt", "tokenizer.family=gpt", "objectives.kinds=[clm, skipgram]", "word_vectors={}"]
    assert plan("transfer", *gpt_wv) == ["ingest", "tokenizer", "examples", "pretrain", "word_vectors", "transfer"]
    with pytest.raises(ValueError, match="companion word vectors go with model.arch=bert or gpt"):
        load_spec(None, ["model.arch=glove", "objectives.kinds=[cooccurrence, skipgram]", "word_vectors={}"])
    glove = ["model.arch=glove", "objectives.kinds=[cooccurrence]"]
    assert plan("finetune", *glove) == ["ingest", "tokenizer", "examples", "pretrain", "finetune"]
    assert plan("register", "finetune.report=true", skip=stages.PRETRAIN_ONLY)[-2:] == ["pretrain", "register"]
    assert plan("transfer") == ["ingest", "tokenizer", "examples", "pretrain", "transfer"]  # asked for: runs
    with pytest.raises(ValueError, match="unknown stage 'eval'"):
        plan("eval")
    marked = {n for n, f in TrainSpec.model_fields.items() if f.json_schema_extra == RUN_ONLY}
    assert marked == {"resume", "prefetch", "keep_checkpoints", "checkpoint_every", "log_every"}
    assert not marked & set(output_slice(TrainSpec())) and "lr" in output_slice(TrainSpec())
