"""Tracking at the edge: the MLflow implementation of the `Tracker` protocol, pyfunc models, registry.

This is the only module that imports mlflow, lazily, so importing it costs nothing until used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plm.tracker import NullTracker, Progress, Tracker, no_progress

__all__ = ["MlflowTracker", "NullTracker", "Progress", "Tracker", "TrackingSession", "no_progress"]


# ---------------------------------------------------------------------------------------------
# MLflow: one parent run per pipeline run, one nested run per stage, models in the registry.
# ---------------------------------------------------------------------------------------------

CANDIDATE, CHAMPION = "candidate", "champion"
EXPERIMENT_KIND = "mlflow.experimentKind"
"""Experiment tag the MLflow UI reads to choose its view (`custom_model_development`: runs, metrics, models)."""


@contextmanager
def _fluent(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for one block, then restore the caller's environment.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ; left in place, a
    later pipeline with another home in the same process would log into this one's store.
    """
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for one block, then restore what was there."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def resolve_tracking_uri(uri: str | None, home: Path) -> str:
    """Spec value > $MLFLOW_TRACKING_URI > SQLite store under the home directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite store (`mlflow.db.lock`) for one block; nothing for other stores."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from plm.artifacts import waiting_lock

    with waiting_lock(Path(uri.removeprefix("sqlite:///") + ".lock")):
        yield


RELOCATE = [("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
            ("model_versions", "storage_location"), ("model_versions", "source")]  # fmt: skip
"""(table, column) of every artifact location a SQLite MLflow store holds."""


def relocate_store(uri: str) -> list[str]:
    """Point a moved or copied home's SQLite store at its own artifacts; returns the old roots it rewrote.

    MLflow stores absolute artifact URIs (`file://<home>/mlartifacts/...`): a moved home could not load
    its models ("No such artifact"), and a copied one kept writing into the original. A plm store is
    `<home>/mlflow.db` with artifacts under `<home>/mlartifacts`; every plm experiment whose root is
    another path has it, and every run, logged model and model version under it, rewritten to this
    home's (parameterised statements in sql/mlflow/). Other stores are left alone.
    """
    if not uri.startswith("sqlite:///"):
        return []
    db = Path(uri.removeprefix("sqlite:///"))
    if db.name != "mlflow.db" or not db.is_file():
        return []
    import sqlite3

    from plm.sql import load

    new = (db.parent.resolve() / "mlartifacts").as_uri()
    con = sqlite3.connect(db, timeout=60)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return []
        olds = [r[0] for r in con.execute(load("mlflow/foreign_artifact_roots"), {"root": new})]
        with con:
            for old in olds:
                old_path, new_path = old.removeprefix("file://"), new.removeprefix("file://")
                for table, column in RELOCATE:
                    if table in tables:
                        for o, n in ((old, new), (old_path, new_path)):
                            con.execute(load(f"mlflow/relocate_{table}_{column}"), {"old": o, "new": n})
        return olds
    finally:
        con.close()


class MlflowTracker:
    """A Tracker writing to one MLflow run through the client API (no global active run)."""

    def __init__(self, client: Any, run_id: str, uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.uri = uri

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        """Log columns `data` as an MLflow table artifact (shown as a table in the UI, `mlflow.load_table`)."""
        self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_input(self, path: Path, name: str, digest: str, context: str) -> None:
        """Record an upstream artifact as a dataset input: its path, name and content digest."""
        import warnings

        import mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = MetaDataset(source=resolve_dataset_source(str(path)), name=name, digest=digest)
        with _fluent(self.uri), mlflow.start_run(run_id=self.run_id):
            mlflow.log_input(dataset, context=context)

    def log_curves(self, keys: list[str], title: str, file_name: str) -> None:
        """Plot the recorded history of `keys` (one panel each) and log it as a PNG."""
        histories = {k: self.client.get_metric_history(self.run_id, k) for k in keys}
        histories = {k: sorted(h, key=lambda m: m.step) for k, h in histories.items() if h}
        if not histories:
            return
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.2), squeeze=False)
        for ax, (key, hist) in zip(axes[0], histories.items(), strict=True):
            ax.plot([m.step for m in hist], [m.value for m in hist], marker="." if len(hist) < 30 else None)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        self._log_figure(fig, file_name)

    def log_histogram(self, values: list[int], title: str, file_name: str) -> None:
        """A 40-bin histogram of `values` (document or example lengths) as a PNG under `plots/`."""
        if not values:
            return
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.hist(values, bins=40)
        ax.set_title(title)
        ax.set_ylabel("examples")
        self._log_figure(fig, file_name)

    def log_bars(self, counts: dict[str, int], title: str, ylabel: str, file_name: str) -> None:
        """A bar chart of `counts` (e.g. documents per language) as a PNG under `plots/`."""
        if not counts:
            return
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(list(counts), list(counts.values()))
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        self._log_figure(fig, file_name)

    def _log_figure(self, fig: Any, file_name: str) -> None:
        import tempfile

        import matplotlib.pyplot as plt

        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / file_name
            fig.savefig(out, dpi=100)
            self.log_artifact(out, "plots")
        plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class TrackingSession:
    """The MLflow side of one pipeline run: a parent run and a nested run per stage."""

    def __init__(self, uri: str, experiment: str, home: Path, run_name: str, tags: dict[str, str]) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        # One process at a time creates a fresh SQLite store's schema (two would both run its migrations:
        # an alembic traceback) and the experiment (the second would find it instead of failing).
        with _store_lock(uri):
            relocate_store(uri)  # a moved or copied home writes into its own artifacts, not the original's
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                location = (home / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                self.experiment_id = exp.experiment_id
            if exp is None or EXPERIMENT_KIND not in exp.tags:  # the UI opens it as model training, not GenAI traces
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND, "custom_model_development")
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.parent = MlflowTracker(self.client, run.info.run_id, uri)

    @property
    def run_id(self) -> str:
        return self.parent.run_id

    def start_stage(self, stage: str, tags: dict[str, str], parent: str | None = None) -> MlflowTracker:
        """A nested run under the pipeline run (or under `parent`, e.g. one run per transfer setting)."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        run = self.client.create_run(
            self.experiment_id, run_name=stage,
            tags={MLFLOW_PARENT_RUN_ID: parent or self.run_id, "plm.stage": stage, **tags},
        )  # fmt: skip
        return MlflowTracker(self.client, run.info.run_id, self.uri)

    def end_stage(self, tracker: MlflowTracker, ok: bool, killed: bool = False) -> None:
        self.client.set_terminated(tracker.run_id, "FINISHED" if ok else "KILLED" if killed else "FAILED")

    def end(self, ok: bool, killed: bool = False) -> None:
        """FINISHED, FAILED, or KILLED (interrupted: Ctrl-C)."""
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "KILLED" if killed else "FAILED")

    def run_url(self, run_id: str) -> str:
        if self.uri.startswith("http"):
            return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}"
        return f"runs:/{run_id}"


# ---- pyfunc models ----------------------------------------------------------------------------


PREDICTORS: dict[str, str] = {
    "classifier": "plm.finetune.predict:ClassifierPipeline",
    "encoder": "plm.finetune.predict:EncoderPipeline",
    "decoder": "plm.train.predict:DecoderPipeline",
    "word2vec": "plm.train.word2vec:Word2VecPredictor",
    "fasttext": "plm.train.fasttext:FastTextPredictor",
    "glove": "plm.train.word2vec:Word2VecPredictor",
    "pair_classifier": "plm.finetune.predict:PairClassifierPipeline",
    "regressor": "plm.finetune.predict:RegressorPipeline",
    "qa": "plm.finetune.predict:QAPipeline",
    "embeddings_classifier": "plm.finetune.predict:EmbeddingsPipeline",
    "gpt_classifier": "plm.finetune.gpt:GPTClassifierPipeline",
}
"""Model kind -> predictor class (`module:Class`). A predictor has `load(model_dir, tokenizer_path)` and
`predict_frame(DataFrame) -> DataFrame`; the one pyfunc wrapper below serves every kind, so MLflow,
`mlflow models serve` and `plm predict` all run the same code."""


def load_predictor(kind: str, model_dir: Path, tokenizer_path: Path) -> Any:
    """The predictor registered for `kind`, loaded from a model folder and a tokenizer file."""
    import importlib

    if kind not in PREDICTORS:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(PREDICTORS)}")
    module, _, name = PREDICTORS[kind].partition(":")
    return getattr(importlib.import_module(module), name).load(Path(model_dir), Path(tokenizer_path))


MODEL_CODE = '''"""A plm model as an MLflow pyfunc, logged as code (MLflow models from code): no pickled object.

Loading runs this file, which builds the wrapper from the installed plm; the model kind comes from the
logged model_config, the weights and tokenizer from the logged artifacts (safetensors / JSON).
"""

from mlflow.models import set_model

from plm.tracking import pyfunc_model

set_model(pyfunc_model())
'''
"""The model code file every plm pyfunc is logged with; `plm predict` loads a model only if its copy is this."""

MODEL_CODE_FILE = "plm_model.py"


def pyfunc_model() -> Any:
    """The pyfunc wrapper of every plm model kind (the model code file calls this and `set_model`s it)."""
    import mlflow.pyfunc

    class PlmModel(mlflow.pyfunc.PythonModel):
        """Any plm model kind as a pyfunc: DataFrame in (`text`, or the kind's columns), DataFrame out."""

        def load_context(self, context):  # noqa: ANN001 - MLflow inspects these signatures
            kind = (context.model_config or {}).get("kind")
            self.pipe = load_predictor(kind, context.artifacts["model"], context.artifacts["tokenizer"])

        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return self.pipe.predict_frame(_frame(model_input))

    return PlmModel()


def _frame(model_input: Any) -> Any:
    """A DataFrame from what pyfunc callers pass: a DataFrame, a string, or a list of strings (-> `text`)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, str):
        return pd.DataFrame({"text": [model_input]})
    return pd.DataFrame({"text": [str(t) for t in model_input]})


def log_pyfunc_model(tracker: MlflowTracker, kind: str, model_dir: Path, tokenizer_path: Path, example: Any) -> str:
    """Log a plm model as an MLflow pyfunc (with signature and input example); returns its model URI.

    `example` is the input example: a DataFrame with the kind's input columns, or a list of texts.
    """
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    import tempfile

    artifacts = {"model": str(model_dir), "tokenizer": str(tokenizer_path)}
    example = _frame(example)
    output = load_predictor(kind, model_dir, tokenizer_path).predict_frame(example)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _fluent(tracker.uri), \
            mlflow.start_run(run_id=tracker.run_id):  # fmt: skip
        warnings.simplefilter("ignore")
        code = Path(tmp) / MODEL_CODE_FILE
        code.write_text(MODEL_CODE)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            model_config={"kind": kind},
            artifacts=artifacts,
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=[f"plm=={_plm_version()}"],
        )
    return info.model_uri


def _plm_version() -> str:
    from plm import __version__

    return __version__


# ---- registry -----------------------------------------------------------------------------------


def find_version(client: Any, name: str, fingerprint: str) -> Any | None:
    """The registered version of `name` built from `fingerprint`, if any (re-runs reuse it)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    for mv in versions:
        if mv.tags.get("plm.fingerprint") == fingerprint:
            return mv
    return None


def register_version(
    session: TrackingSession,
    model_uri: str,
    name: str,
    tags: dict[str, str],
    metric: str,
    value: float,
    higher_is_better: bool = True,
    source_run_id: str | None = None,
) -> dict[str, Any]:
    """Register, alias `candidate`, and promote to `champion` only if it beats the current champion.

    A gate metric that is not a finite number (NaN when there was no held-out data) never promotes.
    `source_run_id` is the version's Source Run: the stage run with the metrics (the model itself is
    logged in the `register` run); without it, MLflow's default (the run the model was logged in).
    """
    import warnings

    import mlflow
    from mlflow.exceptions import MlflowException

    client = session.client
    with warnings.catch_warnings(), _fluent(session.uri):
        warnings.simplefilter("ignore")
        version_tags = {**tags, "plm.metric": metric, "plm.metric_value": str(value)}
        if source_run_id:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name)
            model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
            mv = client.create_model_version(name, model_uri, run_id=source_run_id, tags=version_tags, model_id=model_id)
        else:
            mv = mlflow.register_model(model_uri, name, tags=version_tags)
    client.set_registered_model_alias(name, CANDIDATE, mv.version)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        current_value = float(current.tags.get("plm.metric_value", "nan"))
    except MlflowException:
        current, current_value = None, float("nan")
    if not math.isfinite(value):  # NaN/inf (e.g. no held-out data): no evidence, never the champion
        promote = False
    elif current is None or not math.isfinite(current_value):  # no champion yet (or one without a metric)
        promote = True
    else:
        promote = value > current_value if higher_is_better else value < current_value
    if promote:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    decision = {
        "name": name,
        "version": int(mv.version),
        "metric": metric,
        "value": value,
        "champion_before": None if current is None else int(current.version),
        "champion_value_before": None if current is None else current_value,
        "promoted": promote,
    }
    finite = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in decision.items()}
    client.set_model_version_tag(name, mv.version, "plm.promotion", json.dumps(finite, sort_keys=True))
    return decision


class RegistryError(LookupError):
    """A registry lookup that failed: unknown model, version or alias, or an unreachable store."""


class PredictInputError(ValueError):
    """Input rows a model cannot take: wrong or extra columns, no rows, a value that is not a non-empty string."""


def predict_texts(uri: str, model_uri: str, texts: list[str] | Any) -> list[dict[str, Any]]:
    """Load `model_uri` as a pyfunc from the store at `uri` and predict; one dict per input row.

    `texts` is a list of strings (column `text`) or a DataFrame with the model kind's input columns.
    The model is loaded only if it is a plm model logged as code whose code file is this plm's own
    `MODEL_CODE` and no pickle is in it (MLflow's pickle loading is switched off as well), so a model
    swapped into the registry cannot run code in whoever predicts with it. Input that the model's
    signature does not take is a `PredictInputError` before anything runs.
    """
    import tempfile

    import mlflow

    import warnings

    frame = _frame(texts)
    with _store_lock(uri):
        relocate_store(uri)  # a moved or copied home reads its own artifacts
    quiet = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    with _fluent(uri), _environ(quiet), warnings.catch_warnings(), \
            tempfile.TemporaryDirectory(prefix="plm-predict-") as tmp:  # fmt: skip
        warnings.simplefilter("ignore")
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except Exception as exc:  # MLflow raises several types for a missing model, version or alias
            raise RegistryError(f"cannot load {model_uri}: {exc}") from None
        check_model_dir(local, model_uri)
        try:
            model = mlflow.pyfunc.load_model(str(local))
        except Exception as exc:
            raise RegistryError(f"cannot load {model_uri}: {exc}") from None
        schema = model.metadata.get_input_schema()
        check_input(frame, schema.input_names() if schema is not None else ["text"], model_uri)
        return model.predict(frame).to_dict(orient="records")


PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib")


def check_model_dir(path: Path, model_uri: str) -> None:
    """RegistryError unless `path` holds a plm pyfunc logged as code with this plm's code file and no pickle."""
    import yaml

    try:
        flavor = yaml.safe_load((path / "MLmodel").read_text())["flavors"]["python_function"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        raise RegistryError(f"{model_uri} is not an MLflow pyfunc model (no python_function flavor)") from None
    code = flavor.get("model_code_path")
    if not code:
        raise RegistryError(f"{model_uri} is a pickled pyfunc, not a plm model logged as code; refusing to "
                            "unpickle it (register it again with this plm)")  # fmt: skip
    copy = path / Path(str(code)).name
    if not copy.is_file() or copy.read_text(errors="replace") != MODEL_CODE:
        raise RegistryError(f"{model_uri}: its model code ({Path(str(code)).name}) is not this plm's; refusing to run it")
    pickles = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise RegistryError(f"{model_uri} contains pickled files ({', '.join(pickles[:3])}); refusing to load it")


def check_input(frame: Any, columns: list[str], model_uri: str) -> None:
    """PredictInputError unless `frame` has rows and exactly `columns`, each value a non-empty string."""
    given = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in given]
    extra = [c for c in given if c not in columns]
    if missing or extra:
        what = f"missing {missing}" if missing else f"unused {extra}"
        raise PredictInputError(f"{model_uri} takes columns {columns}; the input has {given} ({what})")
    if len(frame) == 0:
        raise PredictInputError("no input rows")
    for i, row in enumerate(frame[columns].itertuples(index=False), start=1):
        for col, value in zip(columns, row, strict=True):
            if not isinstance(value, str):
                shown = "null" if value is None or value != value else f"{type(value).__name__} {value!r}"
                raise PredictInputError(f"row {i}: '{col}' must be a string, got {shown}")
            if not value.strip():
                raise PredictInputError(f"row {i}: '{col}' is empty")


def describe_models(uri: str, name: str | None = None) -> list[dict[str, Any]]:
    """Registered models (or one), each version with aliases, metric and lineage tags."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    try:
        return _describe(client, name)
    except MlflowException as exc:
        raise RegistryError(exc.message) from None


def _describe(client: Any, name: str | None) -> list[dict[str, Any]]:
    names = [name] if name else [m.name for m in client.search_registered_models()]
    out = []
    for n in names:
        model = client.get_registered_model(n)
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in sorted(client.search_model_versions(f"name='{n}'"), key=lambda v: int(v.version)):
            out.append(
                {
                    "name": n,
                    "version": int(mv.version),
                    "aliases": sorted(aliases.get(str(mv.version), [])),
                    "run_id": mv.run_id,
                    "source": mv.source,
                    "tags": dict(mv.tags),
                }
            )
    return out


# ---- a registered model as the start of a fine-tune (`finetune.init`) --------------------------

REGISTERED_URI = r"^models:/([A-Za-z0-9][A-Za-z0-9_.-]*)(?:@([A-Za-z0-9_-]+)|/([0-9]+))$"
"""`models:/<name>@<alias>` or `models:/<name>/<version>`."""


def fetch_registered(uri: str, model_uri: str, dest: Path) -> dict[str, Any]:
    """Download the registered `model_uri` (alias or version) from the store at `uri` into `dest`.

    Returns `name`, `version`, `model_dir` (the plm model folder the version was logged from),
    `tokenizer_path`, `fingerprint` (its `plm.fingerprint` tag) and `tags`. One-line RegistryError for
    a malformed URI, an unknown model, alias or version, or a version without a plm model folder.
    """
    import re

    import yaml
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    match = re.match(REGISTERED_URI, model_uri)
    if match is None:
        raise RegistryError(f"finetune.init {model_uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, version = match.groups()
    client = MlflowClient(uri)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"finetune.init {model_uri}: {exc.message.splitlines()[0]}") from None
    dest = Path(dest)
    with _store_lock(uri):
        relocate_store(uri)  # a moved or copied home reads its own artifacts
    with _fluent(uri):  # models:/ resolves through the registry URI, which follows the fluent tracking URI
        local = Path(download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(dest)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
    arts = (mlmodel.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
    if "model" not in arts or "tokenizer" not in arts:
        raise RegistryError(f"finetune.init {model_uri}: version {mv.version} holds no plm model folder and tokenizer")
    return {"name": name, "version": int(mv.version), "model_dir": local / arts["model"]["path"],
            "tokenizer_path": local / arts["tokenizer"]["path"], "fingerprint": mv.tags.get("plm.fingerprint", ""),
            "tags": dict(mv.tags)}  # fmt: skip
