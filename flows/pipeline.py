"""The `pipeline` flow: one task per stage, each wrapping one plm.stages call."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.common import ThrottledProgress, pipeline_run_name, publish_summary, report_failure, retry_on_io
from flows.examples import examples_task
from flows.finetune import finetune_task, register_task
from flows.ingest import ingest_task
from flows.pretrain import pretrain_task, word_vectors_task
from flows.transfer import transfer_task
from flows.tokenizer import tokenizer_task
from plm.config import load_spec
from plm.stages import Pipeline


@flow(name="pipeline", flow_run_name=pipeline_run_name, on_failure=[report_failure])
def pipeline(spec_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Raw text to a registered, fine-tuned model, driven by one pipeline spec."""
    spec = load_spec(spec_path, overrides or [])
    logger = get_run_logger()
    name = spec.name
    with Pipeline(spec, progress=ThrottledProgress(logger), log=logger.info) as p:
        ing = ingest_task.with_options(task_run_name=f"ingest[{name}]", retry_condition_fn=retry_on_io)(p)
        snap = ing.extra["snapshot_id"]
        tok = tokenizer_task.with_options(task_run_name=f"tokenizer[{spec.tokenizer.kind}-{snap}]")(p, ing)
        ex = examples_task.with_options(task_run_name=f"examples[{'+'.join(spec.objectives.kinds)}-{snap}]")(p, ing, tok)
        pre = pretrain_task.with_options(task_run_name=f"pretrain[{spec.model.label()}]")(p, tok, ex)
        wv = None
        if spec.word_vectors is not None:
            wv = word_vectors_task.with_options(task_run_name=f"word_vectors[{spec.word_vectors.label()}]")(p, tok, ex)
        # bert: heads on the encoder; gpt: GPT-1 heads or zero-shot; word vectors: `embeddings` / `features`
        finetune_task.with_options(task_run_name=f"finetune[{spec.finetune.task}]")(p, tok, pre, wv)
        if spec.finetune.report:
            transfer_task.with_options(task_run_name=f"transfer[{spec.finetune.task}]")(p, tok, pre, wv)
        register_task.with_options(task_run_name=f"register[{name}]", retry_condition_fn=retry_on_io)(p)
        publish_summary(p)
    return {"run_id": p.run_id, "stages": [r.to_json() for r in p.results.values()]}
