"""tokenizer: lake sentences -> a trained `tokenizer.json`, evaluated on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from plm.artifacts import StageWriter
from plm.config import PipelineSpec, TokenizerSpec, output_slice
from plm.stages.runtime import Done, Pipeline, Stage, StageResult
from plm.tracker import Tracker

if TYPE_CHECKING:
    from plm.tokenizer.train import TrainStats

NAME, VERSION = "tokenizer", 4
# 4: `tokenizer.max_distinct_words` (default 1 M): a train split with more distinct words than that is now
#    trained on a document sample, so the same spec trains a different tokenizer on such a corpus.


class Output(BaseModel):
    file: str = "tokenizer.json"
    """The tokenizer, relative to the stage directory."""


def spec_slice(spec: PipelineSpec) -> dict[str, Any]:
    return output_slice(spec.tokenizer)


def path_of(result: StageResult) -> Path:
    """The `tokenizer.json` of a tokenizer result."""
    return result.path / (result.output.file if result.output is not None else "tokenizer.json")


def sample_note(cfg: TokenizerSpec, stats: TrainStats) -> str | None:
    """The log line of a training on a document sample: which budget the split exceeded, the fraction kept."""
    if stats.sampled_fraction >= 1:
        return None
    sizes = {"max_train_bytes": stats.split_bytes, "max_distinct_words": stats.split_distinct_words}
    over = " and ".join(f"tokenizer.{k}" for k, n in sizes.items() if n is not None and n > getattr(cfg, k))
    words = ("" if stats.split_distinct_words is None
             else f" ({stats.distinct_words:,} of {stats.split_distinct_words:,} distinct words)")  # fmt: skip
    return (f"tokenizer: train split over {over}, trained on a {stats.sampled_fraction:.2%} hash sample "
            f"of documents{words}")  # fmt: skip


def run(p: Pipeline, ingest: StageResult) -> StageResult:
    from plm.tokenizer.train import NOT_REPRODUCIBLE, evaluate_tokenizer, fit_tokenizer

    cfg = p.spec.tokenizer

    def work(w: StageWriter, tracker: Tracker) -> Done:
        files = ingest.output.files(p.home)
        tok, stats = fit_tokenizer(cfg, files, w.path / "tokenizer.json", progress=p.progress)
        if cfg.kind in NOT_REPRODUCIBLE:
            p.log(f"tokenizer: warning: {NOT_REPRODUCIBLE[cfg.kind]}")
        if note := sample_note(cfg, stats):
            p.log(note)
        metrics = {**evaluate_tokenizer(tok, files, "validation"), **stats.as_metrics()}
        tracker.log_artifact(w.path / "tokenizer.json")
        return Done({"vocab_size": float(tok.get_vocab_size())}, metrics, Output())

    return p.run(STAGE, spec_slice(p.spec), {"ingest": ingest.fingerprint}, work)


def compare(specs: dict[str, PipelineSpec], progress: Any = None) -> list[dict[str, Any]]:
    """Train (or reuse) each spec's tokenizer and evaluate all of them on the first spec's validation split."""
    from plm.stages import run_until
    from plm.tokenizer.train import compare_tokenizers
    from plm.tracker import no_progress

    paths: dict[str, Path] = {}
    files: list[Path] = []
    for name, spec in specs.items():
        with Pipeline(spec, progress=progress or no_progress, tracking=False) as p:
            run_until(p, NAME)
        paths[name] = path_of(p.results[NAME])
        files = files or p.results["ingest"].output.files(p.home)
    return compare_tokenizers(paths, files, "validation")


STAGE = Stage(NAME, VERSION, needs=("ingest",), output=Output, run=run, command=True,
              label=lambda p: f"{p.spec.tokenizer.kind}-{p.results['ingest'].output.snapshot_id}")  # fmt: skip
