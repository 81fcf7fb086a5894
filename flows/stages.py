"""One Prefect task for every stage of plm.stages, and what each stage publishes as Prefect artifacts.

The flows walk the DAG with `plm.stages.run_until`, passing `submitter(p)`: each stage becomes one task
run named `<stage>[<label>]`. A stage without an entry below gets the defaults (no retries, the common
table artifact), so a new stage needs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import artifact_key, publish, retry_on_io
from plm.stages import Pipeline, Stage, StageResult, run_stage


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


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(p: Pipeline, name: str) -> StageResult | None:
    """Run (or reuse) one stage and publish what it did."""
    result = run_stage(p, name)
    publisher = PUBLISHERS.get(name, publish)
    if result is not None and publisher is not None:
        publisher(p, result)
    return result


def submitter(p: Pipeline) -> Callable[[Stage], StageResult | None]:
    """`run_until`'s `submit`: each stage as one task run `<stage>[<label>]`."""

    def submit(stage: Stage) -> StageResult | None:
        options = {"name": stage.name, "task_run_name": f"{stage.name}[{stage.label(p)}]",
                   **TASK_OPTIONS.get(stage.name, {})}  # fmt: skip
        return stage_task.with_options(**options)(p, stage.name)

    return submit
