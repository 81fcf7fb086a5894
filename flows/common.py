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
        lines += ["", *(f"- `{m['uri']}`" for m in models.extra.get("models", {}).values())]
    create_markdown_artifact(key=artifact_key("summary", p.spec.name), markdown="\n".join(lines))
