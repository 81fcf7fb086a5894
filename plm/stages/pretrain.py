"""pretrain: example shards -> a pretrained model of `model.arch`, by its family's trainer (plm.families).

Transformers (bert, gpt) write `checkpoint.pt`, `checkpoints/`, `model/` and `hf/` into a resumable
directory (`train.resume`, `plm pretrain --resume`); the word-vector families write `model/` and the
peers' formats. The output model is `plm.train.pretrain.PretrainOutput`.
"""

from __future__ import annotations

from pathlib import Path

from plm.artifacts import StageWriter
from plm.config import PipelineSpec
from plm.families import Family, family_of
from plm.stages import ingest as ingest_stage
from plm.stages.runtime import Done, Pipeline, Stage, StageResult
from plm.stages.tokenizer import path_of
from plm.tracker import Tracker
from plm.train.pretrain import PretrainOutput as Output

NAME, VERSION = "pretrain", 4  # 4: config.json records word_unit (+ subword); Korean fastText logs wordform_*


def run(p: Pipeline, tokenizer: StageResult, examples: StageResult) -> StageResult:
    return train(p, STAGE, family_of(p.spec), p.spec.model, tokenizer, examples)


def train(p: Pipeline, stage: Stage, family: Family, cfg: object, tokenizer: StageResult,
          examples: StageResult) -> StageResult:  # fmt: skip
    """Train `family`'s model `cfg` (a slice of the spec) as `stage` (pretrain, or word_vectors)."""
    from plm.tokenizer.train import load_tokenizer
    from plm.train.pretrain import PretrainJob

    spec = p.spec
    family.check(spec)
    model_config = None
    if family.config is not None:
        model_config = family.config(spec, load_tokenizer(path_of(tokenizer)).get_vocab_size())
    inputs = {"tokenizer": tokenizer.fingerprint, "examples": examples.fingerprint}

    def work(w: StageWriter, tracker: Tracker) -> Done:
        job = PretrainJob(spec, cfg, family.kind, w.path, path_of(tokenizer), examples.path,
                          lambda: _lake_files(p, examples), tracker, p.progress, p.log, inputs, model_config)  # fmt: skip
        trained = family.train(job)
        tracker.log_curves(list(family.curves), f"{family.arch} pretraining", "pretrain_curves.png")
        return Done(trained.counts, trained.metrics, trained.output)

    return p.run(stage, family.spec_slice(spec, cfg), inputs, work, resumable=family.resumable)


def _lake_files(p: Pipeline, examples: StageResult) -> list[Path]:
    """The lake files the examples were generated from (for engines that draw their own pairs)."""
    ingested = p.upstream(ingest_stage.STAGE, examples.inputs["ingest"])
    if ingested is None:
        raise ValueError(f"pretrain: the ingest output {examples.inputs['ingest']} of these examples is gone; "
                         "re-run ingest or set model.regenerate=false")  # fmt: skip
    return ingested.output.files(p.home)


def label(p: Pipeline) -> str:
    return p.spec.model.label()


def target(spec: PipelineSpec) -> tuple[str, Family]:
    """(registered name `<pipeline>-<kind>`, family) of the pretrained model."""
    family = family_of(spec)
    return f"{spec.name}-{family.kind}", family


STAGE = Stage(NAME, VERSION, needs=("tokenizer", "examples"), output=Output, run=run, label=label)
