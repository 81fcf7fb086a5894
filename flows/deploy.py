"""`plm deploy`: one Prefect deployment of the `pipeline` flow per pipeline spec.

Deployments of one flow differ only in parameters (spec path + overrides) and schedule, like the
entries of deploy/prefect.yaml. The flow is addressed by module path (`flows.pipeline.pipeline`), so
any worker with `plm` installed runs it: no image to build, no code storage to pull.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.workers.process import ProcessWorker

from flows.pipeline import pipeline
from flows.serve import CPU_POOL, GPU_POOL, gpu_count
from plm.config import PipelineSpec


@dataclass(frozen=True)
class Deployed:
    """What `plm deploy` registered."""

    id: UUID
    name: str
    flow_name: str
    work_pool: str
    cron: str | None
    parameters: dict[str, Any]
    tags: list[str]

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


def ensure_pools(gpus: int | None = None) -> dict[str, int | None]:
    """Create the process work pools if missing: `plm-cpu` (no limit) and `plm-gpu` (limit = GPUs).

    A GPU pool's concurrency limit is the number of GPUs it has, so two training runs never share one
    GPU; it is kept at least 1 so a pool declared on a CPU-only host still accepts (and queues) runs.
    """
    gpus = gpu_count() if gpus is None else gpus
    wanted: dict[str, int | None] = {CPU_POOL: None, GPU_POOL: max(gpus, 1)}
    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        for name, limit in wanted.items():
            try:
                pool = client.read_work_pool(name)
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template,
                                                       concurrency_limit=limit))  # fmt: skip
                continue
            if pool.concurrency_limit != limit:
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))
    return wanted


def pool_for(spec: PipelineSpec) -> str:
    """GPU pool when the spec asks for CUDA, else the CPU pool (`auto` runs where CPU workers are)."""
    return GPU_POOL if spec.train.device == "cuda" else CPU_POOL


def deploy_spec(spec: PipelineSpec, spec_path: Path, overrides: list[str], cron: str | None = None) -> Deployed:
    """Register (or update) deployment `pipeline/<spec.name>`; the schedule is `cron` or `schedule.cron`."""
    ensure_pools()
    cron = cron or spec.schedule.cron
    pool = pool_for(spec)
    parameters = {"spec_path": str(spec_path.resolve()), "overrides": list(overrides)}
    tags = ["plm", f"pipeline:{spec.name}", f"arch:{spec.model.arch}", f"pool:{pool}"]
    # `to_deployment().apply()` rather than `flow.deploy()`: deploy's worker probe sends a filter that
    # Prefect 3.8's own server rejects (422 on workers/filter with limit=None), and there is nothing to build.
    deployment = pipeline.to_deployment(
        name=spec.name,
        work_pool_name=pool,
        schedules=[Cron(cron, timezone=spec.schedule.timezone)] if cron else [],
        # Two runs of one pipeline would race on the same home; the second waits (ENQUEUE).
        concurrency_limit=1,
        # Relative corpus paths mean what they mean for `plm run` from the directory it was deployed from.
        job_variables={"working_dir": str(Path.cwd())},
        parameters=parameters,
        tags=tags,
        description=f"Pipeline spec {spec_path.name} ({spec.name}); overrides: {' '.join(overrides) or 'none'}",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    dep_id = deployment.apply()
    return Deployed(dep_id, spec.name, pipeline.name, pool, cron, parameters, tags)
