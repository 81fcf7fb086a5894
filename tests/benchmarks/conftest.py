"""What several benchmarks start from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

from plm import stages
from plm.config import PipelineSpec, load_spec


class PretrainedFastText(NamedTuple):
    spec: PipelineSpec
    vectors_dir: Path
    tokenizer: Path


@pytest.fixture
def fasttext_lee(tmp_path) -> PretrainedFastText:
    """`pipelines/fasttext_lee.yaml` trained up to pretrain in a fresh home, tracking off (`PLM_BENCH_QUICK=1`:
    one epoch): its spec, the fastText folder and the tokenizer file."""
    quick = ["model.epochs=1"] if os.environ.get("PLM_BENCH_QUICK") else []
    spec = load_spec("pipelines/fasttext_lee.yaml", [f"home={tmp_path}", *quick])
    with stages.Pipeline(spec, tracking=False) as p:
        stages.run_until(p, "pretrain")
    pre, tok = p.results["pretrain"], p.results["tokenizer"]
    return PretrainedFastText(spec, pre.path / pre.output.model_dir, next(tok.path.glob("tokenizer.json")))
