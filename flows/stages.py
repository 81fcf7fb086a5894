"""One Prefect task for every stage of plm.stages, and what each stage publishes as Prefect artifacts.

The flows walk the DAG with `plm.stages.run_until`, passing `submitter(...)`: each stage becomes one task
run named `<stage>[<label>]`. A stage without an entry below gets the defaults (no retries, the common
table artifact), so a new stage needs nothing here.

A task takes serializable inputs only (the spec path and overrides, the upstream outputs' directories,
the id of the MLflow run to record into), so it can run on any Dask worker that sees the home
(`runner.kind: dask`: prefect-dask's `DaskTaskRunner`, on a LocalCluster or the cluster at
`runner.address`). MLflow is written from the flow's process only, through `MlflowClient` with explicit
run ids: the flow creates the stage's nested run, the task records into a journal beside the home
(`plm.tracker.JournalTracker`), and the flow replays it into that run while the task runs and after.
The register stage writes the registry and reads it back, so it runs in the flow's process.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import ThrottledProgress, artifact_key, publish, retry_on_io
from plm.artifacts import load_ref
from plm.config import RunnerSpec, load_spec
from plm.stages import BY_NAME, Pipeline, Stage, StageResult, run_stage
from plm.tracker import replay_journal


def publish_reasons(p: Pipeline, result: StageResult) -> None:
    """A Prefect table artifact: every drop reason, the count it falls under and its rows (nothing lost)."""
    publish(p, result)
    table = result.output.reason_table or {"reason": [], "kind": [], "rows": []}
    rows = [dict(zip(table, values, strict=True)) for values in zip(*table.values(), strict=True)]
    counts = result.counts
    create_table_artifact(
        key=artifact_key("ingest-reasons", p.spec.name),
        table=rows or [{"reason": "none", "kind": "kept", "rows": int(counts.get("rows_kept", 0))}],
        description=(
            f"snapshot `{result.output.snapshot_id}`: read {counts.get('rows_read', 0):,.0f} = kept "
            f"{counts.get('rows_kept', 0):,.0f} + duplicate {counts.get('rows_duplicate', 0):,.0f} + filtered "
            f"{counts.get('rows_filtered', 0):,.0f} + quarantined {counts.get('rows_quarantined', 0):,.0f}"
        ),
    )


def publish_transfer(p: Pipeline, result: StageResult) -> None:
    """The transfer summary as a table, the learning curves inline, and the pretrained-minus-scratch gains."""
    import pandas as pd

    report = pd.read_csv(result.path / result.output.summary_path)
    link = p.session.run_url(result.run_id) if p.session and result.run_id else "tracking off"
    metric = result.output.metric
    create_table_artifact(
        key=artifact_key("transfer", p.spec.name),
        table=report.to_dict(orient="records"),
        description=(f"**transfer report** ({p.spec.finetune.task_type}, main metric `{metric}`, mean and 95 % "
                     f"interval over seeds per cell) `{result.fingerprint}`: {result.path / 'report.png'}; "
                     f"MLflow run: {link}"),
    )  # fmt: skip
    plot = result.path / "report.png"
    if plot.is_file():  # the learning curves inline, so the Prefect UI shows the picture itself
        import base64

        data = base64.b64encode(plot.read_bytes()).decode()
        create_markdown_artifact(
            key=artifact_key("transfer-plot", p.spec.name),
            markdown=f"**learning curves** (`{result.fingerprint}`)\n\n![learning curves](data:image/png;base64,{data})",
        )
    gains = {k: v for k, v in result.metrics.items() if k.startswith("gain.")}
    if gains:
        create_table_artifact(
            key=artifact_key("transfer-gain", p.spec.name),
            table=[{"setting": k.removeprefix("gain."), f"gain in {metric}": round(v, 4)} for k, v in sorted(gains.items())],
            description=f"pretrained minus scratch test {metric}, per strategy and labelled fraction",
        )


PUBLISHERS: dict[str, Callable[[Pipeline, StageResult], None] | None] = {
    "ingest": publish_reasons, "transfer": publish_transfer, "register": None,
}  # fmt: skip
"""Stage -> what it publishes (default: `flows.common.publish`, its counts and metrics; None: nothing)."""

# Reading files can flake on network filesystems (bad input is quarantined, never retried); registry writes
# go over the network to an MLflow server in server mode.
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "ingest": {"retries": 1, "retry_delay_seconds": 5, "retry_condition_fn": retry_on_io},
    "register": {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": retry_on_io},
}


_MEMO: dict[str, dict[tuple[str, ...], Any]] = {}
"""Per flow run, what its stages share in this process (a parsed labelled task): the in-process tasks of one
run share it; a Dask worker keeps the latest run's only (bounded: one run's objects at a time)."""
_LIVE: dict[str, Pipeline] = {}
"""The flow's own pipeline by run key, for the stages that run in the flow's process (the registry)."""


def _key(p: Pipeline) -> str:
    return p.run_id or f"untracked-{id(p)}"


def _memo(key: str) -> dict[tuple[str, ...], Any]:
    if key not in _MEMO:
        for other in [k for k in _MEMO if k not in _LIVE]:  # another run's, on a long-lived worker
            del _MEMO[other]
        _MEMO[key] = {}
    return _MEMO[key]


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(spec_path: str, overrides: list[str], name: str, upstream: dict[str, str], run_id: str | None,
               journal: str | None, key: str) -> dict[str, Any] | None:  # fmt: skip
    """Run (or reuse) one stage from serializable inputs; the result's directory, reuse and seconds (None: the
    stage does not apply). MLflow calls go to the journal, for the flow to replay."""
    spec = load_spec(spec_path, overrides)
    logger = get_run_logger()
    stage_run = (run_id, Path(journal)) if run_id and journal else None
    with Pipeline(spec, progress=ThrottledProgress(logger), log=logger.info, tracking=False, stage_run=stage_run,
                  memo=_memo(key)) as p:  # fmt: skip
        for upstream_name, path in upstream.items():
            p.results[upstream_name] = result_at(Path(path), reused=True)
        result = run_stage(p, name)
    return None if result is None else {"path": str(result.path), "reused": result.reused, "seconds": result.seconds}


@task(name="stage", cache_policy=NO_CACHE)
def flow_process_task(name: str, key: str) -> StageResult | None:
    """Run (or reuse) a stage that writes the registry, in the flow's process, on the flow's pipeline."""
    return run_stage(_LIVE[key], name)


def result_at(path: Path, reused: bool, seconds: float = 0.0) -> StageResult:
    """The finished stage output in `path`, from its manifest."""
    ref = load_ref(path)
    return StageResult.from_manifest(BY_NAME[ref.stage].output, ref.path, ref.manifest, reused, seconds)


@contextmanager
def live_replay(journal: Path, tracker: Any, every: float = 2.0) -> Iterator[None]:
    """Replay `journal` into `tracker` every `every` seconds while the block runs, and the rest after it."""
    stop = threading.Event()
    offset = [0]

    def loop() -> None:
        while not stop.wait(every):
            offset[0] = replay_journal(journal, tracker, offset[0])

    thread = threading.Thread(target=loop, name="plm-journal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        replay_journal(journal, tracker, offset[0])


@contextmanager
def task_runner(runner: RunnerSpec) -> Iterator[Any]:
    """prefect-dask's `DaskTaskRunner` for `runner.kind: dask` (the cluster at its address, or a LocalCluster of
    `runner.workers` single-threaded processes, closed afterwards); None for `local` (tasks in this process)."""
    if runner.kind != "dask":
        yield None
        return
    from prefect_dask import DaskTaskRunner

    from plm.objectives.shardrun import local_workers

    address = runner.resolved_address()
    kwargs: dict[str, Any] = {"address": address} if address else {
        "cluster_kwargs": {"n_workers": runner.workers, "threads_per_worker": 1, "processes": True,
                           "dashboard_address": None}}  # fmt: skip
    # Whole stages run on these workers, training included: distributed's nannies would start them with
    # OMP_NUM_THREADS=1 (and MKL/OpenBLAS alike), so torch would train on one thread, slower than `local`
    # and, on CPU, to other weights. Without those the workers take this machine's defaults, as `local` does;
    # glibc's malloc defaults are kept too (`local_workers`), and this process's environment is restored.
    with local_workers(threads=True), DaskTaskRunner(**kwargs) as dask_runner:
        yield dask_runner


def submitter(p: Pipeline, spec_path: str, overrides: list[str], runner: Any = None) -> Callable[[Stage], StageResult | None]:
    """`run_until`'s `submit`: each stage as one task run `<stage>[<label>]`, in this process (`runner` None) or
    submitted to `runner` (a Dask task runner); its MLflow run is written from here."""
    key = _key(p)
    _LIVE[key] = p

    def submit(stage: Stage) -> StageResult | None:
        options = {"name": stage.name, "task_run_name": f"{stage.name}[{stage.label(p)}]",
                   **TASK_OPTIONS.get(stage.name, {})}  # fmt: skip
        p.current = stage.name  # `plm run` names it when interrupted
        try:
            if stage.registry:  # on this pipeline: it has put its result in `p.results` itself
                result = flow_process_task.with_options(**options)(stage.name, key)
            else:
                out = _run_task(p, stage, options, spec_path, overrides, runner, key)
                result = None if out is None else result_at(Path(out["path"]), out["reused"], out["seconds"])
        finally:
            p.current = None
        if result is None:
            return None
        p.results[stage.name] = result
        publisher = PUBLISHERS.get(stage.name, publish)
        if publisher is not None:
            publisher(p, result)
        return result

    return submit


def _run_task(p: Pipeline, stage: Stage, options: dict[str, Any], spec_path: str, overrides: list[str],
              runner: Any, key: str) -> dict[str, Any] | None:  # fmt: skip
    """One stage as a task with serializable inputs; its nested MLflow run created, fed and ended here."""
    names = [n for n in (*stage.needs, *stage.uses) if n in p.results]
    upstream = {n: str(p.results[n].path) for n in names}
    tracker = p.session.start_stage(stage.name, {}) if p.session is not None else None
    journal = p.home / "journals" / f"{tracker.run_id}.jsonl" if tracker is not None else None
    # the home as this process resolved it: a worker elsewhere (or in another directory) writes to the same one
    params = {"spec_path": str(Path(spec_path).resolve()), "overrides": [*overrides, f"home={p.home}"],
              "name": stage.name, "upstream": upstream, "run_id": tracker.run_id if tracker else None,
              "journal": str(journal) if journal else None, "key": key}  # fmt: skip
    task_ = stage_task.with_options(**options)
    ok = killed = False
    try:
        with live_replay(journal, tracker) if tracker is not None and journal is not None else nullcontext():
            if runner is None:
                out = task_(**params)  # in this thread: Ctrl-C interrupts the stage itself
            else:
                future = runner.submit(task_, params)
                try:
                    out = future.result()
                except KeyboardInterrupt:
                    future.wrapped_future.cancel()
                    raise
        ok = True
        return out
    except KeyboardInterrupt:
        killed = True
        raise
    finally:
        if tracker is not None and p.session is not None:
            if ok and out is None:  # the stage did not apply: its empty run goes
                p.session.client.delete_run(tracker.run_id)
            else:
                p.session.end_stage(tracker, ok, killed=killed)
        if journal is not None:
            journal.unlink(missing_ok=True)
            shutil.rmtree(journal.with_suffix(".files"), ignore_errors=True)


@contextmanager
def flow_stages(p: Pipeline, spec_path: str, overrides: list[str]) -> Iterator[Callable[[Stage], StageResult | None]]:
    """The `submit` of a flow run: the spec's task runner, started for the run and closed after it."""
    with task_runner(p.spec.runner) as runner:
        try:
            yield submitter(p, spec_path, overrides, runner)
        finally:
            _LIVE.pop(_key(p), None)
            _MEMO.pop(_key(p), None)
