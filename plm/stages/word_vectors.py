"""word_vectors: a BERT pipeline's companion word2vec vectors (`spec.word_vectors`), trained beside `model`
on the same skip-gram examples (the `features` / `embeddings` strategies of fine-tuning use them)."""

from __future__ import annotations

from plm.families import FAMILIES
from plm.stages.pretrain import train
from plm.stages.runtime import Pipeline, Stage, StageResult
from plm.train.pretrain import PretrainOutput as Output

NAME, VERSION = "word_vectors", 2  # 2: config.json records word_unit


def run(p: Pipeline, tokenizer: StageResult, examples: StageResult) -> StageResult | None:
    """The vectors, or None when the spec asks for none."""
    if p.spec.word_vectors is None:
        return None
    return train(p, STAGE, FAMILIES["word2vec"], p.spec.word_vectors, tokenizer, examples)


STAGE = Stage(NAME, VERSION, needs=("tokenizer", "examples"), output=Output, run=run,
              label=lambda p: p.spec.word_vectors.label() if p.spec.word_vectors else "none",
              applies=lambda spec: spec.word_vectors is not None)  # fmt: skip
