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
    first = register_version(s, uri, "t-qa", {"plm.fingerprint": "a"}, "pretrained.test_f1", 0.50)
    worse = register_version(s, uri, "t-qa", {"plm.fingerprint": "b"}, "pretrained.test_f1", 0.30)
    assert first["promoted"] and not worse["promoted"]
    assert worse["champion_before"] == first["version"] and worse["champion_value_before"] == 0.50
    assert worse["value"] == 0.30  # both numbers and the decision are recorded
    assert int(s.client.get_model_version_by_alias("t-qa", CHAMPION).version) == first["version"]
    assert int(s.client.get_model_version_by_alias("t-qa", "candidate").version) == worse["version"]
    tag = s.client.get_model_version("t-qa", str(worse["version"])).tags["plm.promotion"]
    assert "'promoted': False" in tag
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
