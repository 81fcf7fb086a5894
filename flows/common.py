"""What every flow shares: the Prefect-side progress logger and the per-stage artifact."""

from __future__ import annotations

import time
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from plm.stages import Pipeline, StageResult


class ThrottledProgress:
    """A plm `Progress` callback that logs at most every `every` seconds per kind of work."""

    def __init__(self, logger: Any, every: float = 10.0) -> None:
        self.logger, self.every = logger, every
        self.last: dict[str, float] = {}

    def __call__(self, what: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last.get(what, 0.0) >= self.every or (total is not None and done >= total):
            self.last[what] = now
            self.logger.info(f"{what}: {done}" + (f"/{total}" if total else ""))


def pipeline_run_name() -> str:
    """Flow run name that says what runs: `<pipeline>[<arch>-<size>]` (e.g. `quickstart[bert-small]`)."""
    from prefect.runtime import flow_run

    from plm.config import SpecError, load_spec

    params = flow_run.parameters
    try:
        spec = load_spec(params["spec_path"], params.get("overrides") or [])
    except (SpecError, OSError, KeyError):
        return f"pipeline[{params.get('spec_path', '?')}]"  # the flow itself reports the bad spec
    return f"{spec.name}[{spec.model.label()}]"


# Bad input fails the same way every time: never retried. Transport errors can pass: retried.
_PERMANENT = (ValueError, KeyError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
              PermissionError)  # fmt: skip
_TRANSIENT_MLFLOW_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "ABORTED"}


def is_transient(exc: BaseException | None) -> bool:
    """True for errors worth a retry: OS/network errors and MLflow's server-side errors, not bad input."""
    if exc is None:
        return False
    if type(exc).__name__ == "MlflowException":
        return getattr(exc, "error_code", "") in _TRANSIENT_MLFLOW_CODES
    if isinstance(exc, _PERMANENT):
        return False
    return isinstance(exc, (OSError, TimeoutError, ConnectionError))


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a failed I/O task only when its error is transient."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # the result itself could not be read back: treat as that error
        exc = err
    return is_transient(exc if isinstance(exc, BaseException) else None)


def report_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow `on_failure` hook: a markdown artifact naming the failed stage(s) and the reason.

    The reason is the stage's own error message (e.g. ingest's "N of M rows quarantined ... see the
    catalog table `quarantine`"); outputs are atomic, so a failed stage has left nothing behind.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from prefect.client.schemas.sorting import TaskRunSort

    # limit/offset/sort spelled out: Prefect 3.8's sync client sends null for them and its server says 422.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                                     sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=0)  # fmt: skip
    failed = [t for t in runs if t.state is not None and t.state.is_failed()]
    lines = [f"# {flow_run.name} failed", "", "| stage | task run | attempts | reason |", "|---|---|---|---|"]
    lines += [
        f"| {t.name.split('[')[0]} | {t.name} | {t.run_count} | "
        f"{(t.state.message or '').replace('|', '/')[:500]} |"
        for t in failed
    ]
    if not failed:
        lines.append(f"| (flow) | {flow_run.name} | 1 | {(state.message or '').replace('|', '/')[:500]} |")
    from prefect.artifacts import MarkdownArtifact

    key = str(flow_run.name).split("[")[0].lower().replace("_", "-")
    # flow_run_id explicit: a hook runs after the flow body, so the run context is not to be relied on.
    MarkdownArtifact(key=f"{key}-failure", markdown="\n".join(lines), flow_run_id=flow_run.id,
                     description=f"{flow_run.name}: failed stage and reason").create()  # fmt: skip


def artifact_key(stage: str, pipeline: str) -> str:
    return f"{pipeline}-{stage}".lower().replace("_", "-")


def publish(p: Pipeline, result: StageResult) -> None:
    """A Prefect table artifact with the stage's counts and metrics and where its MLflow run is."""
    rows = [{"kind": "count", "name": k, "value": v} for k, v in result.counts.items()]
    rows += [{"kind": "metric", "name": k, "value": round(v, 6)} for k, v in result.metrics.items()]
    link = p.session.run_url(result.run_id) if p.session and result.run_id else "tracking off"
    create_table_artifact(
        key=artifact_key(result.stage, p.spec.name),
        table=rows or [{"kind": "status", "name": "reused" if result.reused else "ran", "value": 0}],
        description=(
            f"**{result.stage}** `{result.fingerprint}` {'reused' if result.reused else 'ran'} "
            f"in {result.seconds:.1f}s; MLflow run: {link}; output: `{result.path}`"
        ),
    )


def publish_summary(p: Pipeline) -> None:
    lines = ["| stage | fingerprint | status | seconds |", "|---|---|---|---|"]
    lines += [
        f"| {r.stage} | `{r.fingerprint}` | {'reused' if r.reused else 'ran'} | {r.seconds:.1f} |"
        for r in p.results.values()
    ]
    models = p.results.get("register")
    if models:
        lines += ["", *(f"- `{m.uri}`" for m in models.output.models.values())]
    create_markdown_artifact(key=artifact_key("summary", p.spec.name), markdown="\n".join(lines))
    publish_headline(p)


def publish_headline(p: Pipeline) -> None:
    """Per budget the registered champion's strategy vs its scratch twin and the TF-IDF baselines (intervals, gains)."""
    transfer = p.results.get("transfer")
    if transfer is None or p.session is None:
        return
    import pandas as pd

    from plm.cli import champion_of
    from plm.finetune.report import headline

    name = f"{p.spec.name}-{p.spec.finetune.task}"
    champion = champion_of(p.session.uri, name)
    if champion is None:
        return
    rows = headline(pd.read_csv(transfer.path / transfer.output.report_path), transfer.output.metric, champion)
    create_table_artifact(
        key=artifact_key("headline", p.spec.name),
        table=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        description=(f"**does pretraining pay?** `{name}@champion` = {champion['family']} {champion['strategy']}: "
                     "test metric per labelled budget, mean and 95 % interval over seeds; gains are paired over seeds"),
    )

