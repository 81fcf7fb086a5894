"""The `transfer` flow: the transfer report (strategies x pretrained/scratch x labelled budgets x seeds)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.common import ThrottledProgress
from flows.stages import flow_stages
from plm.config import load_spec
from plm.stages import Pipeline, run_until


@flow(name="transfer", flow_run_name="transfer[{spec_path}]")
def transfer(spec_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """How much pretraining buys, and with how little labelled data."""
    spec = load_spec(spec_path, overrides or [])
    logger = get_run_logger()
    with Pipeline(spec, progress=ThrottledProgress(logger), log=logger.info, run_name="transfer") as p:
        with flow_stages(p, spec_path, overrides or []) as submit:
            run_until(p, "transfer", submit=submit)
    result = p.results["transfer"]
    return {"run_id": p.run_id, "report_path": str(result.path / result.output.report_path), **result.to_json()}
