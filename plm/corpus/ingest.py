"""Ingest: source files -> normalised, filtered, deduplicated documents in the lake + catalog rows.

One source at a time: read records, normalise, filter (SQL), deduplicate (SQL), split sentences,
write `lake/documents/<source16>-<optsfp>.parquet` atomically, then commit the source's catalog
rows in one transaction. A source already processed with the same options is skipped, so
re-running an ingest is cheap and a crash loses at most the source in flight.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plm import sql
from plm.artifacts import canonical_json, fingerprint, sha256_file
from plm.config import CorpusSpec
from plm.corpus.normalize import detect_lang, normalize_text
from plm.corpus.readers import detect_encoding, detect_format, read_records
from plm.corpus.sentences import split_sentences
from plm.samples import is_sample, resolve_sample
from plm.tracker import Progress, no_progress

INGEST_VERSION = 1
"""Bump when processing changes in a way that must re-process every source."""
LOCK_TIMEOUT_S = 60.0
CATALOG = "catalog.duckdb"
LAKE_DOCUMENTS = Path("lake") / "documents"

# Fields of CorpusSpec that change what a source turns into (not which sources, nor the failure threshold).
PROCESSING_FIELDS = (
    "text_unit", "jsonl_text_field", "normalization", "min_chars", "max_chars", "validation_fraction", "test_fraction",
)
COUNT_KEYS = (
    "rows_read", "rows_kept", "rows_duplicate", "rows_filtered", "rows_quarantined", "documents", "sentences", "chars",
)
DOCUMENT_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("source_sha256", pa.string()),
    ("position", pa.int64()),
    ("title", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("split", pa.string()),
    ("n_chars", pa.int32()),
    ("sentences", pa.list_(pa.string())),
])
_DDL = (
    "staging/ddl_sources", "staging/ddl_quarantine", "staging/ddl_doc_hashes",
    "staging/ddl_snapshots", "staging/ddl_snapshot_files",
)


@dataclass(frozen=True)
class Source:
    """One resolved input file."""

    path: Path
    sha256: str
    bytes: int
    format: str


@dataclass
class IngestResult:
    """What one ingest produced: the snapshot's lake files, its totals and per-source catalog rows."""

    snapshot_id: str
    files: list[Path]
    counts: dict[str, int]
    reasons: dict[str, int]
    sources: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------- sources


def _expand(entry: str) -> list[Path]:
    if is_sample(entry):
        return resolve_sample(entry)
    path = Path(entry).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if glob.has_magic(entry):
        return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    return []


def resolve_sources(paths: list[str]) -> list[Source]:
    """Files behind `paths` (files, directories, globs, `sample:NAME`), sorted by path, unique by content."""
    found: dict[Path, None] = {}
    for entry in paths:
        matched = _expand(entry)
        if not matched:
            raise FileNotFoundError(f"corpus.paths: '{entry}' matches no file")
        found.update((p.resolve(), None) for p in matched)
    sources: list[Source] = []
    seen: set[str] = set()
    for path in sorted(found):
        digest = sha256_file(path)
        if digest in seen:
            continue
        seen.add(digest)
        sources.append(Source(path, digest, path.stat().st_size, detect_format(path)))
    return sources


def options_fingerprint(cfg: CorpusSpec) -> str:
    """16 hex chars over the processing options (and INGEST_VERSION): changing them re-processes sources."""
    return fingerprint("ingest", INGEST_VERSION, cfg.model_dump(include=set(PROCESSING_FIELDS)), {})


def snapshot_id(sources: list[Source], optsfp: str) -> str:
    payload = canonical_json({"sources": sorted(s.sha256 for s in sources), "options": optsfp})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def split_of(doc_id: str, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split from the document hash."""
    u = int(doc_id, 16) % 10000 / 10000
    if u < validation_fraction:
        return "validation"
    if u < validation_fraction + test_fraction:
        return "test"
    return "train"


# ---------------------------------------------------------------- catalog


def connect_catalog(home: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The catalog, with relative lake paths (used by the views) resolved against `home`."""
    return duckdb.connect(str(Path(home) / CATALOG), read_only=read_only, config={"file_search_path": str(home)})


@contextmanager
def catalog_lock(home: Path, timeout: float | None = None) -> Iterator[None]:
    """Exclusive lock on `home/catalog.lock` (holder pid written inside); RuntimeError after `timeout` s."""
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    home.mkdir(parents=True, exist_ok=True)
    path = home / "catalog.lock"
    deadline = time.monotonic() + timeout
    with open(path, "a+") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    holder = f.read().strip() or "unknown"
                    raise RuntimeError(
                        f"catalog {path} is locked by pid {holder} (waited {timeout:.0f} s); another ingest is running"
                    ) from None
                time.sleep(0.1)
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for name in _DDL:
        sql.execute(con, name)


# ---------------------------------------------------------------- one source


def lake_file_name(source: Source, optsfp: str) -> str:
    return f"{source.sha256[:16]}-{optsfp}.parquet"


def _process(con: duckdb.DuckDBPyConnection, cfg: CorpusSpec, source: Source, optsfp: str) -> dict[str, Any]:
    """Read, normalise, filter, deduplicate one source; returns kept rows, quarantine rows and counts."""
    quarantine: list[dict[str, Any]] = []
    positions, titles, texts, doc_ids, n_chars = [], [], [], [], []
    rows_read = 0
    for rec in read_records(source.path, source.format, cfg.text_unit, cfg.jsonl_text_field):
        rows_read += 1
        if rec.reason is not None:
            raw = rec.raw if isinstance(rec.raw, bytes) else rec.raw.encode()
            quarantine.append({"position": rec.position, "reason": rec.reason, "raw": raw})
            continue
        text = normalize_text(rec.raw, cfg.normalization)  # type: ignore[arg-type]
        positions.append(rec.position)
        titles.append(rec.title)
        texts.append(text)
        doc_ids.append(hashlib.sha256(text.encode()).hexdigest()[:16])
        n_chars.append(len(text))
    docs = pa.table(
        {"position": pa.array(positions, pa.int64()), "title": pa.array(titles, pa.string()),
         "text": pa.array(texts, pa.string()), "doc_id": pa.array(doc_ids, pa.string()),
         "n_chars": pa.array(n_chars, pa.int32())}
    )
    reasons: Counter[str] = Counter(q["reason"] for q in quarantine)

    con.register("docs", docs)
    flt = sql.run(con, "quality/flt_length", min_chars=cfg.min_chars, max_chars=cfg.max_chars)
    reasons.update(r for r in flt.column("drop_reason").to_pylist() if r is not None)
    con.register("docs", flt.filter(pc.is_null(flt.column("drop_reason"))).drop_columns(["drop_reason"]))
    dedup = sql.run(con, "quality/dedup_exact", options=optsfp, source_sha256=source.sha256)
    con.unregister("docs")
    n_dup = pc.sum(pc.is_valid(dedup.column("drop_reason")).cast(pa.int64())).as_py() or 0
    if n_dup:
        reasons["duplicate"] += n_dup
    kept = dedup.filter(pc.is_null(dedup.column("drop_reason"))).drop_columns(["drop_reason"])

    langs, splits, sentences = [], [], []
    for text, doc_id in zip(kept.column("text").to_pylist(), kept.column("doc_id").to_pylist()):
        lang = detect_lang(text)
        langs.append(lang)
        splits.append(split_of(doc_id, cfg.validation_fraction, cfg.test_fraction))
        sentences.append(split_sentences(text, lang))
    n = kept.num_rows
    table = pa.table(
        {"doc_id": kept.column("doc_id"), "source_sha256": pa.array([source.sha256] * n, pa.string()),
         "position": kept.column("position"), "title": kept.column("title"), "text": kept.column("text"),
         "lang": pa.array(langs, pa.string()), "split": pa.array(splits, pa.string()),
         "n_chars": kept.column("n_chars"), "sentences": pa.array(sentences, pa.list_(pa.string()))},
        schema=DOCUMENT_SCHEMA,
    )
    counts = {
        "rows_read": rows_read,
        "rows_kept": n,
        "rows_duplicate": n_dup,
        "rows_filtered": sum(v for k, v in reasons.items() if k in ("too_short", "too_long")),
        "rows_quarantined": len(quarantine),
        "sentences": sum(len(s) for s in sentences),
        "chars": sum(kept.column("n_chars").to_pylist()),
    }
    checked = counts["rows_kept"] + counts["rows_duplicate"] + counts["rows_filtered"] + counts["rows_quarantined"]
    if counts["rows_read"] != checked:
        raise RuntimeError(
            f"{source.path}: accounting mismatch: rows_read={rows_read} but kept+duplicate+filtered+quarantined={checked}"
        )
    return {"table": table, "quarantine": quarantine, "counts": counts, "reasons": dict(reasons)}


def _write_parquet(table: pa.Table, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _commit_source(
    con: duckdb.DuckDBPyConnection, source: Source, optsfp: str, snap: str, result: dict[str, Any], lake_file: str | None
) -> None:
    """All catalog rows of one source in one transaction (its lake file is already in place)."""
    key = {"sha256": source.sha256, "options": optsfp}
    quarantine = pa.table(
        {"position": pa.array([q["position"] for q in result["quarantine"]], pa.int64()),
         "reason": pa.array([q["reason"] for q in result["quarantine"]], pa.string()),
         "raw": pa.array([q["raw"] for q in result["quarantine"]], pa.binary())}
    )
    con.register("quarantine_batch", quarantine)
    con.register("kept_batch", result["table"].select(["doc_id"]))
    con.begin()
    try:
        for name in ("staging/del_source", "staging/del_quarantine", "staging/del_doc_hashes"):
            sql.execute(con, name, **key)
        sql.execute(
            con, "staging/ins_source", **key, path=str(source.path), bytes=source.bytes, format=source.format,
            encoding=detect_encoding(source.path, source.format), status="ok", **result["counts"],
            reasons=json.dumps(result["reasons"], sort_keys=True), lake_file=lake_file, snapshot_id=snap,
        )
        sql.execute(con, "staging/ins_quarantine", **key)
        sql.execute(con, "staging/ins_doc_hashes", **key)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.unregister("quarantine_batch")
        con.unregister("kept_batch")


def _catalog_rows(con: duckdb.DuckDBPyConnection, sources: list[Source], optsfp: str) -> dict[str, dict[str, Any]]:
    rows = sql.run(con, "staging/sel_sources", options=optsfp, sha256s=[s.sha256 for s in sources]).to_pylist()
    return {row["sha256"]: row for row in rows}


# ---------------------------------------------------------------- the stage


def ingest_corpus(
    cfg: CorpusSpec, home: Path, sources: list[Source] | None = None, progress: Progress = no_progress
) -> IngestResult:
    """Ingest `sources` (default: resolve `cfg.paths`) into `home`'s lake and catalog; see the module docstring."""
    home = Path(home)
    sources = resolve_sources(cfg.paths) if sources is None else sorted(sources, key=lambda s: str(s.path))
    optsfp = options_fingerprint(cfg)
    snap = snapshot_id(sources, optsfp)
    lake = home / LAKE_DOCUMENTS
    with catalog_lock(home):
        con = connect_catalog(home)
        try:
            _ensure_schema(con)
            done = _catalog_rows(con, sources, optsfp)
            progress("ingest", 0, len(sources))
            for i, source in enumerate(sources):
                name = lake_file_name(source, optsfp)
                row = done.get(source.sha256)
                cached = row is not None and (row["lake_file"] is None or (lake / row["lake_file"]).is_file())
                if not cached:
                    result = _process(con, cfg, source, optsfp)
                    lake_file = name if result["table"].num_rows else None
                    if lake_file:
                        _write_parquet(result["table"], lake / lake_file)
                    _commit_source(con, source, optsfp, snap, result, lake_file)
                progress(f"ingest {source.path.name}", i + 1, len(sources))
            rows = _catalog_rows(con, sources, optsfp)
            ingest = _summarise(cfg, sources, rows, lake, snap)
            _record_snapshot(con, ingest, optsfp)
        finally:
            con.close()
    return ingest


def _summarise(
    cfg: CorpusSpec, sources: list[Source], rows: dict[str, dict[str, Any]], lake: Path, snap: str
) -> IngestResult:
    counts = dict.fromkeys(COUNT_KEYS, 0)
    reasons: Counter[str] = Counter()
    ordered = [rows[s.sha256] for s in sources]
    for row in ordered:
        for key in COUNT_KEYS:
            if key in row:
                counts[key] += row[key]
        reasons.update(json.loads(row["reasons"]))
    counts["documents"] = counts["rows_kept"]
    if counts["rows_kept"] == 0:
        raise ValueError(
            f"ingest kept no document out of {counts['rows_read']} rows read from {len(sources)} source(s); "
            f"reasons: {dict(reasons) or 'none (no input rows)'}"
        )
    if counts["rows_quarantined"] > cfg.max_quarantined_fraction * counts["rows_read"]:
        raise ValueError(
            f"{counts['rows_quarantined']} of {counts['rows_read']} rows quarantined "
            f"(> corpus.max_quarantined_fraction={cfg.max_quarantined_fraction}); see the catalog table `quarantine`"
        )
    files = sorted(lake / row["lake_file"] for row in ordered if row["lake_file"])
    return IngestResult(snap, files, counts, dict(sorted(reasons.items())), ordered)


def _record_snapshot(con: duckdb.DuckDBPyConnection, result: IngestResult, optsfp: str) -> None:
    batch = pa.table({"file": pa.array([f.name for f in result.files], pa.string())})
    con.register("snapshot_batch", batch)
    con.begin()
    try:
        sql.execute(con, "staging/del_snapshot", snapshot_id=result.snapshot_id)
        sql.execute(con, "staging/del_snapshot_files", snapshot_id=result.snapshot_id)
        sql.execute(con, "staging/ins_snapshot", snapshot_id=result.snapshot_id, options=optsfp,
                    counts=json.dumps(result.counts, sort_keys=True))
        sql.execute(con, "staging/ins_snapshot_files", snapshot_id=result.snapshot_id)
        sql.execute(con, "staging/view_documents")
        sql.execute(con, "staging/view_sentences")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.unregister("snapshot_batch")
