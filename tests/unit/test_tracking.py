"""Registry promotion gate and run bookkeeping against a real MLflow SQLite store."""

import json

import mlflow.pyfunc
import pytest

from plm.tracking import CANDIDATE, CHAMPION, TrackingSession, describe_models, find_version, register_version


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return model_input


@pytest.fixture
def session(tmp_path):
    return TrackingSession(f"sqlite:///{tmp_path / 'mlflow.db'}", "gate", tmp_path, "run", {})


def _model_uri(session, tmp_path):
    import mlflow

    from plm.tracking import _fluent

    with _fluent(session.uri), mlflow.start_run(run_id=session.run_id):
        return mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[]).model_uri


def test_worse_model_is_not_promoted(session, tmp_path):
    uri = _model_uri(session, tmp_path)
    first = register_version(session, uri, "demo-task", {"plm.fingerprint": "a"}, "accuracy", 0.80)
    assert first["promoted"] and first["champion_before"] is None
    worse = register_version(session, uri, "demo-task", {"plm.fingerprint": "b"}, "accuracy", 0.70)
    assert not worse["promoted"] and worse["champion_value_before"] == pytest.approx(0.80)
    client = session.client
    assert str(client.get_model_version_by_alias("demo-task", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("demo-task", CANDIDATE).version) == "2"
    better = register_version(session, uri, "demo-task", {"plm.fingerprint": "c"}, "accuracy", 0.90)
    assert better["promoted"] and str(client.get_model_version_by_alias("demo-task", CHAMPION).version) == "3"
    assert str(find_version(client, "demo-task", "b").version) == "2"
    rows = describe_models(session.uri, "demo-task")
    assert [r["aliases"] for r in rows] == [[], [], [CANDIDATE, CHAMPION]]
    assert json.loads(rows[1]["tags"]["plm.promotion"])["promoted"] is False  # JSON, not a Python repr


def test_lower_is_better_metrics(session, tmp_path):
    uri = _model_uri(session, tmp_path)
    register_version(session, uri, "lm", {}, "perplexity", 30.0, higher_is_better=False)
    assert not register_version(session, uri, "lm", {}, "perplexity", 35.0, higher_is_better=False)["promoted"]
    assert register_version(session, uri, "lm", {}, "perplexity", 20.0, higher_is_better=False)["promoted"]


def test_a_nan_metric_is_never_promoted(session, tmp_path):
    uri = _model_uri(session, tmp_path)
    first = register_version(session, uri, "nan-task", {}, "val_mlm_accuracy", float("nan"))
    assert not first["promoted"]  # was promoted: no champion yet, so anything went
    client = session.client
    assert str(client.get_model_version_by_alias("nan-task", CANDIDATE).version) == "1"
    with pytest.raises(Exception, match="champion"):
        client.get_model_version_by_alias("nan-task", CHAMPION)
    assert register_version(session, uri, "nan-task", {}, "val_mlm_accuracy", 0.5)["promoted"]
    assert not register_version(session, uri, "nan-task", {}, "val_mlm_accuracy", float("nan"))["promoted"]
    assert str(client.get_model_version_by_alias("nan-task", CHAMPION).version) == "2"


def test_experiment_opens_in_the_model_training_view(session, tmp_path):
    from plm.tracking import EXPERIMENT_KIND

    assert session.client.get_experiment(session.experiment_id).tags[EXPERIMENT_KIND] == "custom_model_development"
    session.client.set_experiment_tag(session.experiment_id, EXPERIMENT_KIND, "finetuning")  # a user's choice stays
    again = TrackingSession(session.uri, "gate", tmp_path, "run2", {})
    assert again.client.get_experiment(again.experiment_id).tags[EXPERIMENT_KIND] == "finetuning"
