"""Registry and pyfunc for the new model kinds: the promotion gate, signatures, pyfunc == predictor == `plm predict`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from plm.config import FinetuneSpec
from plm.finetune.engine import finetune_classifier
from plm.finetune.predict import TASK_FILE, PairClassifierPipeline, QAPipeline, example_for
from plm.finetune.qa import finetune_qa, read_squad
from plm.finetune.tasks import encode_pairs, read_labelled
from plm.tokenizer.train import load_tokenizer
from plm.tracking import CHAMPION, TrackingSession, log_pyfunc_model, predict_texts, register_version
from plm.train.engine import load_pretrained

from .conftest import PAIRS, SQUAD


@pytest.fixture(scope="module")
def qa_dir(tokenizer_path, bert_dir, tmp_path_factory):
    ft = FinetuneSpec(task_type="qa", format="squad", data=str(SQUAD), seq_len=64, doc_stride=48, max_query_len=12,
                      epochs=1, batch_size=8)  # fmt: skip
    ex = read_squad(ft).examples
    _, cfg = load_pretrained(bert_dir)
    res = finetune_qa(cfg, ft, load_tokenizer(tokenizer_path), ex[:6], ex[6:8], tmp_path_factory.mktemp("qa"), bert_dir)
    (res.model_dir / TASK_FILE).write_text(json.dumps({"task_type": "qa", "pair": False}))
    return res.model_dir


@pytest.fixture(scope="module")
def pair_dir(tokenizer_path, bert_dir, tmp_path_factory):
    ft = FinetuneSpec(task_type="pair_classification", format="csv", data=str(PAIRS), text_column="sentence1",
                      text_pair_column="sentence2", epochs=1, seq_len=48)  # fmt: skip
    data = read_labelled(ft)
    ids, types = encode_pairs(load_tokenizer(tokenizer_path), data.texts[:24], data.pairs[:24], 48)
    labels = [int(v == "same") for v in data.labels[:24]]
    _, cfg = load_pretrained(bert_dir)
    res = finetune_classifier(cfg, ft, ids, labels, ids[:4], labels[:4], {0: "different", 1: "same"},
                              tmp_path_factory.mktemp("pair"), bert_dir, train_types=types, test_types=types[:4])  # fmt: skip
    (res.model_dir / TASK_FILE).write_text(json.dumps({"task_type": "pair_classification", "pair": True, "seq_len": 48}))
    return res.model_dir


def session(tmp_path) -> TrackingSession:
    return TrackingSession(f"sqlite:///{tmp_path / 'mlflow.db'}", "t", tmp_path, "test", tags={})


def test_promotion_gate_keeps_a_worse_model_as_candidate(tmp_path, qa_dir, tokenizer_path):
    s = session(tmp_path)
    tracker = s.start_stage("register", {})
    uri = log_pyfunc_model(tracker, "qa", qa_dir, tokenizer_path, example_for("qa", qa_dir, []))
    metrics_run = s.start_stage("finetune", {})
    metrics_run.log_metrics({"pretrained.test_f1": 0.5})
    first = register_version(s, uri, "t-qa", {"plm.fingerprint": "a"}, "pretrained.test_f1", 0.50,
                             source_run_id=metrics_run.run_id)  # fmt: skip
    # The version's Source Run is the run with the metric, not the `register` run that logged the model.
    mv = s.client.get_model_version("t-qa", str(first["version"]))
    assert mv.run_id == metrics_run.run_id != tracker.run_id
    assert s.client.get_run(mv.run_id).data.metrics["pretrained.test_f1"] == 0.5
    worse = register_version(s, uri, "t-qa", {"plm.fingerprint": "b"}, "pretrained.test_f1", 0.30)
    assert first["promoted"] and not worse["promoted"]
    assert worse["champion_before"] == first["version"] and worse["champion_value_before"] == 0.50
    assert worse["value"] == 0.30  # both numbers and the decision are recorded
    assert int(s.client.get_model_version_by_alias("t-qa", CHAMPION).version) == first["version"]
    assert int(s.client.get_model_version_by_alias("t-qa", "candidate").version) == worse["version"]
    tag = s.client.get_model_version("t-qa", str(worse["version"])).tags["plm.promotion"]
    assert json.loads(tag) == {**worse, "champion_value_before": 0.5}  # JSON, not a Python repr
    assert json.loads(tag)["promoted"] is False
    better = register_version(s, uri, "t-qa", {"plm.fingerprint": "c"}, "pretrained.test_f1", 0.70)
    assert better["promoted"]
    assert int(s.client.get_model_version_by_alias("t-qa", CHAMPION).version) == better["version"]


def test_qa_and_pair_pyfunc_match_the_predictors_and_the_cli(tmp_path, qa_dir, pair_dir, tokenizer_path, monkeypatch):
    s = session(tmp_path)
    tracker = s.start_stage("register", {})
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cases = {
        "qa": (qa_dir, QAPipeline.load(qa_dir, tokenizer_path), pd.DataFrame({
            "question": ["Which town was the bushfire pushed towards?"],
            "context": [read_squad(FinetuneSpec(task_type="qa", format="squad", data=str(SQUAD))).examples[0].context],
        })),
        "pair_classifier": (pair_dir, PairClassifierPipeline.load(pair_dir, tokenizer_path),
                            pd.DataFrame({"text": ["a fire", "the race"], "text_pair": ["a blaze", "a yacht"]})),
    }  # fmt: skip
    for kind, (model_dir, pipe, frame) in cases.items():
        uri = log_pyfunc_model(tracker, kind, model_dir, tokenizer_path, example_for(kind, model_dir, []))
        register_version(s, uri, f"t-{kind}", {}, "m", 1.0)
        expected = pipe.predict_frame(frame).to_dict(orient="records")
        got = predict_texts(store, f"models:/t-{kind}@champion", frame)
        assert got == expected, kind
    # the signature names the kind's input columns
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    model = mlflow.pyfunc.load_model("models:/t-qa@champion")
    assert model.metadata.get_input_schema().input_names() == ["question", "context"]
    from plm.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["predict", "models:/t-pair_classifier@champion", "--pair", "a fire", "a blaze",
                                 "the race", "a yacht", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    expected = cases["pair_classifier"][1].predict_frame(cases["pair_classifier"][2]).to_dict(orient="records")
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    assert [r["score"] for r in rows] == pytest.approx([e["score"] for e in expected])


@pytest.fixture(scope="module")
def registry(tmp_path_factory, bert_dir, pair_dir, tokenizer_path):
    """A store with a one-text model (`t-enc`, encoder) and a pair classifier (`t-pair`), both @champion."""
    home = tmp_path_factory.mktemp("registry")
    s = session(home)
    tracker = s.start_stage("register", {})
    for name, kind, model_dir in (("t-enc", "encoder", bert_dir), ("t-pair", "pair_classifier", pair_dir)):
        uri = log_pyfunc_model(tracker, kind, model_dir, tokenizer_path, example_for(kind, model_dir, ["a film", "a plot"]))
        register_version(s, uri, name, {}, "m", 1.0)
    return home, s, tracker


def test_registered_models_are_code_not_pickles_and_load_without_unpickling(registry, monkeypatch):
    import pickle

    import cloudpickle

    from plm.tracking import MODEL_CODE, MODEL_CODE_FILE, PICKLE_SUFFIXES

    home, _, _ = registry
    files = [p for p in (home / "mlartifacts").rglob("*") if p.is_file()]
    assert [p.read_text() for p in files if p.name == MODEL_CODE_FILE] == [MODEL_CODE, MODEL_CODE]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES or p.name == "python_model.pkl"], files

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "loads", refuse)
    rows = predict_texts(f"sqlite:///{home / 'mlflow.db'}", "models:/t-enc@champion", ["a film"])
    assert len(rows) == 1 and len(rows[0]["embedding"]) == 32


def test_a_swapped_pickled_or_foreign_code_champion_is_refused(registry, tmp_path):
    import mlflow

    from plm.tracking import RegistryError

    home, s, tracker = registry
    store = f"sqlite:///{home / 'mlflow.db'}"

    class Evil(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return model_input

    code = tmp_path / "plm_model.py"
    code.write_text("import os\nfrom mlflow.models import set_model\nfrom plm.tracking import pyfunc_model\n"
                    "os.environ['PLM_PWNED'] = '1'\nset_model(pyfunc_model())\n")  # fmt: skip
    (tmp_path / "weights").write_text("x")
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run(run_id=tracker.run_id):
            pickled = mlflow.pyfunc.log_model(name="evil", python_model=Evil(), pip_requirements=[]).model_uri
            foreign = mlflow.pyfunc.log_model(name="foreign", python_model=str(code), model_config={"kind": "encoder"},
                                              pip_requirements=[], artifacts={"model": str(tmp_path / "weights"),
                                                         "tokenizer": str(tmp_path / "weights")}).model_uri
        versions = {name: mlflow.register_model(uri, name).version
                    for name, uri in (("t-evil", pickled), ("t-foreign", foreign))}  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)
    import os

    os.environ.pop("PLM_PWNED", None)  # logging may run the code once, here; loading for predict must not
    for name, reason in (("t-evil", "pickled pyfunc"), ("t-foreign", "not this plm's")):
        s.client.set_registered_model_alias(name, CHAMPION, versions[name])
        with pytest.raises(RegistryError, match=reason):
            predict_texts(store, f"models:/{name}@champion", ["a film"])
    assert "PLM_PWNED" not in os.environ


BAD_INPUT = [
    (["t-enc", "--qa", "who?", "a context"], "takes columns ['text']; the input has ['question', 'context'] (missing ['text']) (with --qa)"),
    (["t-enc", "--pair", "a film", "a plot"], "takes columns ['text']; the input has ['text', 'text_pair'] (unused ['text_pair']) (with --pair)"),
    (["t-pair", "a film"], "takes columns ['text', 'text_pair']; the input has ['text'] (missing ['text_pair'])"),
    (["t-enc", ""], "row 1: 'text' is empty"),
    (["t-enc", "--input", '{"sentence": "a film"}'], "(missing ['text'])"),
    (["t-enc", "--input", '{"text": 123}'], "row 1: 'text' must be a string, got int 123"),
    (["t-enc", "--input", '{"text": "ok"}\n{"text": null}'], "row 2: 'text' must be a string, got null"),
    (["t-enc", "--input", "\n\n"], "no input rows"),
    (["t-enc", "--input", '{"text": "a film"'], ":1: not JSON"),
    (["t-enc", "--input", '["a film"]'], ":1: a row must be a JSON object"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[str(i) for i in range(len(BAD_INPUT))])
def test_predict_bad_input_is_one_line_error(registry, tmp_path, monkeypatch, args, message):
    from plm.cli import app

    home, _, _ = registry
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    name, *rest = args
    if rest[0] == "--input":
        (tmp_path / "rows.jsonl").write_text(rest[1])
        rest = ["--input", str(tmp_path / "rows.jsonl")]
    result = CliRunner().invoke(app, ["predict", f"models:/{name}@champion", *rest])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.output


def test_a_moved_or_copied_home_predicts_and_writes_into_itself(registry, tmp_path):
    """Issue 14 item 12: MLflow's absolute artifact URIs are rewritten to the home the store is opened in."""
    import shutil

    home, _, _ = registry
    copy = tmp_path / "copied-home"
    shutil.copytree(home, copy)
    away = home.with_name(home.name + "-away")
    home.rename(away)  # the original is gone while the copy is used: a moved home; nothing may read it
    try:
        rows = predict_texts(f"sqlite:///{copy / 'mlflow.db'}", "models:/t-pair@champion",
                             pd.DataFrame({"text": ["a fire"], "text_pair": ["a blaze"]}))  # fmt: skip
        assert rows and rows[0]["label"] in ("same", "different")
        s = TrackingSession(f"sqlite:///{copy / 'mlflow.db'}", "t", copy, "after-copy", tags={})
        tracker = s.start_stage("probe", {})
        (tmp_path / "probe.txt").write_text("x")
        tracker.log_artifact(tmp_path / "probe.txt")
        assert (copy / "mlartifacts" / tracker.run_id / "artifacts" / "probe.txt").is_file()
        assert s.client.get_run(tracker.run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
    finally:
        away.rename(home)
    assert not (home / "mlartifacts" / tracker.run_id).exists()  # the original got nothing
    # The original, opened again where it is, still reads its own artifacts.
    assert predict_texts(f"sqlite:///{home / 'mlflow.db'}", "models:/t-enc@champion", ["a film"])
