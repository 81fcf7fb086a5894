"""The quickstart chain through a real Prefect flow run and a real MLflow store, reduced to run fast."""

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("gensim")
pytest.importorskip("konlpy")

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "pipelines" / "enko_polarity.yaml")
FAST = [
    "corpus.paths=[sample:lee, sample:ko-constitution]",
    "corpus.text_unit=line",
    "tokenizer.vocab_size=2000",
    "objectives.seq_len=64",
    "objectives.dupe_factor=1",
    "model.size=debug",
    "train.steps=30",
    "train.warmup_steps=3",
    "train.batch_size=16",
    "finetune.epochs=2",
    "finetune.seq_len=32",
]


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def first_run(home, prefect_api):
    from flows.pipeline import pipeline

    state = pipeline(spec_path=SPEC, overrides=FAST, return_state=True)
    assert state.is_completed(), state
    return state.result()


def _client(home):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def test_every_stage_ran_and_wrote_a_manifest(first_run, home):
    stages = {s["stage"]: s for s in first_run["stages"]}
    assert list(stages) == ["ingest", "tokenizer", "examples", "pretrain", "finetune", "register"]
    for name in ("ingest", "tokenizer", "examples", "pretrain", "finetune"):
        s = stages[name]
        assert not s["reused"]
        manifest = json.loads((Path(s["path"]) / "manifest.json").read_text())
        assert manifest["fingerprint"] == s["fingerprint"] and Path(s["path"]).parent.name == name
    assert stages["tokenizer"]["inputs"] == {"ingest": stages["ingest"]["fingerprint"]}
    assert stages["examples"]["metrics"]["mask_rate"] == pytest.approx(0.15, abs=0.02)
    assert 0 <= stages["finetune"]["metrics"]["pretrained.test_accuracy"] <= 1
    assert "scratch.test_accuracy" in stages["finetune"]["metrics"]


def test_catalog_and_accounting(first_run, home):
    import duckdb

    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT rows_read, rows_kept, rows_duplicate, rows_filtered, rows_quarantined FROM sources"
    ).fetchall()
    con.close()
    assert len(rows) == 2
    for read, kept, dup, filt, quar in rows:
        assert read == kept + dup + filt + quar and kept > 0


def test_mlflow_parent_and_nested_runs(first_run, home):
    client = _client(home)
    parent = client.get_run(first_run["run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{first_run['run_id']}'"
    )
    assert {c.data.tags["plm.stage"] for c in children} == {"ingest", "tokenizer", "examples", "pretrain", "finetune", "register"}
    pretrain = next(c for c in children if c.data.tags["plm.stage"] == "pretrain")
    assert "loss" in pretrain.data.metrics and "train.steps" in pretrain.data.params
    history = client.get_metric_history(pretrain.info.run_id, "loss")
    assert len(history) >= 3
    artifacts = [a.path for a in client.list_artifacts(pretrain.info.run_id, "plots")]
    assert artifacts == ["plots/pretrain_curves.png"]


def test_registry_lineage_and_pyfunc(first_run, home):
    import mlflow

    stages = {s["stage"]: s for s in first_run["stages"]}
    client = _client(home)
    champion = client.get_model_version_by_alias("enko-polarity-sentiment", "champion")
    tags = champion.tags
    assert tags["plm.fingerprint.pretrain"] == stages["pretrain"]["fingerprint"]
    assert tags["plm.fingerprint.examples"] == stages["examples"]["fingerprint"]
    assert tags["plm.snapshot_id"] == stages["ingest"]["snapshot_id"]
    assert client.get_model_version_by_alias("enko-polarity-encoder", "candidate")

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/enko-polarity-sentiment@champion")
    out = model.predict(pd.DataFrame({"text": ["a moving , funny film .", "boring and tedious ."]}))
    assert list(out.columns) == ["label", "score"] and set(out["label"]) <= {"neg", "pos"}
    encoder = mlflow.pyfunc.load_model("models:/enko-polarity-encoder@champion")
    emb = encoder.predict(pd.DataFrame({"text": ["대한민국은 민주공화국이다."]}))
    assert len(emb["embedding"][0]) == 64


def test_second_run_reuses_everything(first_run, home):
    from flows.pipeline import pipeline

    client = _client(home)
    before = len(client.search_model_versions("name='enko-polarity-sentiment'"))
    again = pipeline(spec_path=SPEC, overrides=FAST)
    assert all(s["reused"] for s in again["stages"]), [(s["stage"], s["reused"]) for s in again["stages"]]
    assert [s["fingerprint"] for s in again["stages"]] == [s["fingerprint"] for s in first_run["stages"]]
    assert len(client.search_model_versions("name='enko-polarity-sentiment'")) == before


def test_cli_models_predict_and_stage_json(first_run, home):
    from typer.testing import CliRunner

    from plm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["models", "enko-polarity-sentiment", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    snapshot = {s["stage"]: s for s in first_run["stages"]}["ingest"]["snapshot_id"]
    assert rows[0]["tags"]["plm.snapshot_id"] == snapshot

    res = runner.invoke(app, ["predict", "models:/enko-polarity-sentiment@champion", "boring and tedious .", "--json"])
    assert res.exit_code == 0, res.output
    cli_label = json.loads(res.stdout.strip().splitlines()[-1])[0]["label"]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/enko-polarity-sentiment@champion")
    assert cli_label == model.predict(pd.DataFrame({"text": ["boring and tedious ."]}))["label"][0]

    args = ["tokenizer", SPEC, "--json", *[a for o in FAST for a in ("--set", o)]]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["stage"] == "tokenizer" and payload["reused"] and Path(payload["path"]).is_dir()
    assert {"fingerprint", "run_id"} <= payload.keys()


def test_cli_bad_override_is_one_line_error():
    from typer.testing import CliRunner

    from plm.cli import app

    res = CliRunner().invoke(app, ["ingest", SPEC, "--set", "train.stepz=3"])
    assert res.exit_code == 2
    assert "unknown key 'train.stepz'" in res.output
