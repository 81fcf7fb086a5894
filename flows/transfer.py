"""The `transfer` flow: the transfer report (strategies x pretrained/scratch x labelled fractions)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import ThrottledProgress, artifact_key
from flows.examples import examples_task
from flows.ingest import ingest_task
from flows.pretrain import pretrain_task, word_vectors_task
from flows.tokenizer import tokenizer_task
from plm import stages
from plm.config import load_spec


@task(name="transfer", cache_policy=NO_CACHE)
def transfer_task(
    p: stages.Pipeline, tok: stages.StageResult, pre: stages.StageResult, wv: stages.StageResult | None = None
) -> stages.StageResult:
    result = stages.transfer(p, tok, pre, wv)
    report = pd.read_csv(result.path / result.extra.get("summary_path", result.extra["report_path"]))
    link = p.session.run_url(result.run_id) if p.session and result.run_id else "tracking off"
    metric = result.extra.get("metric", "accuracy")
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
    return result


@flow(name="transfer", flow_run_name="transfer[{spec_path}]")
def transfer(spec_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """How much pretraining buys, and with how little labelled data."""
    spec = load_spec(spec_path, overrides or [])
    logger = get_run_logger()
    with stages.Pipeline(spec, progress=ThrottledProgress(logger), log=logger.info, run_name="transfer") as p:
        ing = ingest_task(p)
        tok = tokenizer_task(p, ing)
        ex = examples_task(p, ing, tok)
        pre = pretrain_task(p, tok, ex)
        result = transfer_task(p, tok, pre, word_vectors_task(p, tok, ex))
    return {"run_id": p.run_id, "report_path": str(result.path / result.extra["report_path"]), **result.to_json()}
