"""The pipeline's stages, one module per arrow, and the one DAG the CLI and the Prefect flows both walk.

    ingest -> tokenizer -> examples -> pretrain [-> word_vectors] -> finetune [-> transfer] -> register

Each module declares its `STAGE` (name, version, what it needs, its typed output model, `run`). A new
stage is its module plus one line in `DAG`; `run_until(pipeline, target)` runs whatever the target needs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from plm.stages import (examples, finetune, ingest, pretrain, register, tokenizer, transfer,  # noqa: F401
                        word_vectors)  # fmt: skip
from plm.stages.runtime import Done, Pipeline, Stage, StageResult, flatten  # noqa: F401

DAG: tuple[Stage, ...] = (
    ingest.STAGE, tokenizer.STAGE, examples.STAGE, pretrain.STAGE, word_vectors.STAGE, finetune.STAGE,
    transfer.STAGE, register.STAGE,
)  # fmt: skip
"""Every stage, each after those it needs or uses."""
BY_NAME = {s.name: s for s in DAG}
STAGE_VERSIONS = {s.name: s.version for s in DAG}


def plan(p: Pipeline, target: str, skip: Collection[str] = ()) -> list[Stage]:
    """The stages `target` needs (always), the ones it uses that apply to the spec and are not in `skip`, and
    their own needs, in DAG order, ending with `target`."""
    if target not in BY_NAME:
        raise ValueError(f"unknown stage {target!r}; stages: {', '.join(BY_NAME)}")
    wanted = {target}
    for stage in reversed(DAG):
        if stage.name in wanted:
            wanted.update(stage.needs)
            wanted.update(u for u in stage.uses if u not in skip and BY_NAME[u].applies(p.spec))
    return [s for s in DAG if s.name in wanted]


def run_stage(p: Pipeline, name: str) -> StageResult | None:
    """Run (or reuse) one stage on the results its upstream stages left in `p.results`."""
    stage = BY_NAME[name]
    missing = [n for n in stage.needs if n not in p.results]
    if missing:
        raise RuntimeError(f"{name}: upstream stage(s) {missing} have not run in this pipeline")
    upstream = {n: p.results[n] for n in stage.needs} | {u: p.results.get(u) for u in stage.uses}
    return stage.run(p, **upstream)


def run_until(
    p: Pipeline,
    target: str = "register",
    skip: Collection[str] = (),
    submit: Callable[[Stage], StageResult | None] | None = None,
) -> list[StageResult]:
    """Run every stage of `plan(p, target, skip)` in order; `submit(stage)` runs one (default: in this process,
    `run_stage`; the Prefect flows pass one that wraps it in a task). Returns the results of the run."""
    for stage in plan(p, target, skip):
        if submit is None:
            run_stage(p, stage.name)
        else:
            submit(stage)
    return list(p.results.values())


def run_all(p: Pipeline) -> list[StageResult]:
    """The whole chain (`plm run --no-prefect`; the `pipeline` flow walks the same plan as tasks)."""
    return run_until(p, "register")


PRETRAIN_ONLY = ("word_vectors", "finetune", "transfer")
"""`plm pretrain`'s skip list: the pretrained model alone is trained and registered."""
