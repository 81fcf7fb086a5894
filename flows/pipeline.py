"""The `pipeline` flow: the DAG of plm.stages walked by `run_until`, one task per stage."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.common import ThrottledProgress, pipeline_run_name, publish_summary, report_failure
from flows.stages import flow_stages
from plm.config import load_spec
from plm.stages import Pipeline, run_until


@flow(name="pipeline", flow_run_name=pipeline_run_name, on_failure=[report_failure])
def pipeline(spec_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Raw text to a registered, fine-tuned model, driven by one pipeline spec."""
    spec = load_spec(spec_path, overrides or [])
    logger = get_run_logger()
    with Pipeline(spec, progress=ThrottledProgress(logger), log=logger.info) as p:
        with flow_stages(p, spec_path, overrides or []) as submit:
            run_until(p, "register", submit=submit)
        publish_summary(p)
    return {"run_id": p.run_id, "stages": [r.to_json() for r in p.results.values()]}
