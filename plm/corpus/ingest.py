"""Ingest: source files -> normalised, filtered, deduplicated documents in the lake + catalog rows.

Each source goes through a map step and a commit step. The map step (`map_source`) needs no catalog, so it runs
on any worker (this process, or a Dask cluster: `runner`): the source is streamed in batches
(`corpus.batch_records` records or `corpus.batch_bytes` bytes of text): read -> normalise -> filters
(`sql/quality/flt_*.sql`: length, symbols, repeated lines, language) -> exact dedup within the source
(`dedup_exact.sql`, against an in-memory DuckDB of the ids kept so far) -> sentences and split, and MinHash
signatures when `corpus.near_dup` is on. Each batch's kept documents become one zstd Parquet part of a staging
directory, with the quarantined units and a manifest (counts, reasons, sha256 of every file) written last; the
directory is renamed into place, so a finished map output is found by name and reused. A file larger than
`corpus.range_bytes` (uncompressed txt by line or paragraph, or JSONL) is mapped in byte ranges cut where a unit
starts (`plm.corpus.ranges`), one map job per range, so one large file spreads over the workers too.

The commit step runs in the stage's process, in source (path) order, and alone writes `catalog.duckdb` (DuckDB
has one writer): near-dup (MinHash LSH, `NearDupIndex`) over the staged signatures against every document kept
before, in this ingest or earlier ones; the parts without the near-duplicates renamed into the lake; the
source's catalog rows in one transaction. For a file mapped in ranges, the commit takes the ranges in file order,
drops a later range's copies of documents an earlier range kept (`duplicate`, as dedup within the source does when
the file is read whole) and counts positions from the file's start: its documents, counts and catalog rows are those
of reading it whole, only its lake parts are cut per range as well as per batch. Because near-dup and every catalog
write happen in that order, what is written never depends on where the map steps ran or how many workers there were.

What a source turns into depends on its bytes and the options alone (and, with near-dup, on what the lake
kept before it), so it is processed once and reused by every snapshot that contains it. Exact duplicates
across the sources of a snapshot are dropped when the snapshot is assembled (`dedup_snapshot.sql`: the copy in
the source whose content hash sorts first is kept), never against unrelated corpora the home ingested before;
a source that loses documents there gets a derived lake file without them
(`<source16>-<optsfp>-x<key>.parquet`, content-addressed, reused). Memory is bounded by the batch size, whatever
the file size.

Crash guarantee (SIGKILL of the stage or of a worker at any point; one ingest at a time under the catalog lock):
- a source becomes visible all at once: its parts are renamed to
  `lake/documents/<source16>-<optsfp>-<part>.parquet`, then one transaction writes its `quarantine`,
  `doc_hashes` and `sources` rows. Killed before that commit, the source leaves only leftovers no reader looks
  at (staging directories, renamed parts without a `sources` row); the next run deletes them and redoes the
  source, reusing its map output when that finished whole (every file present with its sha256);
- a map attempt killed midway leaves only its own `<name>.tmp-<pid>-*` directory; Dask reruns the task on
  another worker and the stage removes the leftover;
- the `documents`/`sentences` views show the files of the latest *snapshot*, and the `snapshots` row
  is written only after every source has committed, so readers see the corpus as before the run or
  fully after it. Sources committed by a killed run are kept as progress and not redone.
A source already processed with the same options is skipped before any map step, so re-running an ingest is cheap.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plm import sql
from plm.artifacts import canonical_json, fingerprint, sha256_file
from plm.config import CorpusSpec, run_only_fields
from plm.corpus.dedup import MinHashParams, NearDupIndex, minhash_signatures
from plm.corpus.normalize import detect_lang_many, detect_langs, normalize_many
from plm.corpus.ranges import count_records, plan_ranges
from plm.corpus.readers import Limits, RawRecord, check_allowed, detect_encoding, detect_format, read_records
from plm.corpus.ngram import ngram_repetition_reasons, select_words, split_words
from plm.corpus.quality import COMPILED
from plm.corpus.sentences import split_sentences_many
from plm.corpus.wordstats import word_stats_reasons
from plm.samples import is_sample, resolve_sample
from plm.tracker import Progress, no_progress

INGEST_VERSION = 6
# 6: an invalid JSONL line's quarantined raw bytes end with its newline, and a too-large CRLF line's lose the CR,
#    whichever 256 KiB block the reader met it in (they depended on a neighbouring bad line; a file read in byte
#    ranges meets other blocks than read whole)
# 5: a later exact copy (within a source) of a document dropped as a near-duplicate is a `duplicate`, whatever the
#    batch boundaries (it was `near_duplicate` when the copy fell in a later batch: counts depended on batch_records)
# 4: JSONL lines read undecoded (UTF-16/32, or beside a bad line in a block) are parsed as JSON
"""Bump when processing changes in a way that must re-process every source."""
CATALOG = "catalog.duckdb"
LAKE_DOCUMENTS = Path("lake") / "documents"
STAGING = ".staging"
"""Directory under lake/documents/ for parts of a source not yet committed (never matched by the views)."""
DUCKDB_MEMORY_LIMIT = "512MB"
"""DuckDB's own cap during ingest (it spills beyond it), so a large lake never pushes the process over budget."""

# Fields of CorpusSpec that do not change what a source turns into (which sources, batching, locking, the
# failure threshold); every other field does, so a new reader or filter option re-processes by default.
NON_PROCESSING_FIELDS = run_only_fields(CorpusSpec)
"""corpus.* fields that do not change the documents written (marked RUN_ONLY in plm.config)."""
COUNT_KEYS = (
    "rows_read", "rows_kept", "rows_duplicate", "rows_filtered", "rows_quarantined", "documents", "sentences", "chars",
)
FILTERS = (
    ("quality/flt_length", ("min_chars", "max_chars")),
    ("quality/flt_symbols", ("max_symbol_ratio",)),
    ("quality/flt_word_stats", ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
                                "max_symbol_word_ratio", "min_alpha_word_fraction")),
    ("quality/flt_repeated_lines", ("max_repeated_line_fraction",)),
    ("quality/flt_repeated_paragraphs", ("max_repeated_paragraph_fraction",)),
    ("quality/flt_ngram_repetition", ("ngram_min_words", "rules")),
)
"""Text filters run in this order on each batch; `quality/flt_language` runs after language detection."""
FILTER_REASONS = frozenset({
    "too_short", "too_long", "too_many_symbols", "repeated_lines", "wrong_language", "too_few_words", "too_many_words",
    "mean_word_length", "symbol_words", "alpha_words", "repeated_paragraphs", "top_ngram", "duplicate_ngrams",
})
DUPLICATE_REASONS = frozenset({"duplicate", "near_duplicate", "duplicate_file"})
"""Every other reason is a quarantine reason from the readers (`undecodable:...`, `invalid_json`, ...)."""
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
    ("source_id", pa.string()),   # the record's own id (`corpus.id_field`), NULL when not configured
    ("metadata", pa.string()),    # JSON object of `corpus.metadata_fields`, NULL when none
])
_DDL = (
    "staging/ddl_sources", "staging/alt_sources_lake_files", "staging/ddl_quarantine", "staging/ddl_doc_hashes",
    "staging/ddl_snapshots", "staging/ddl_snapshot_files", "staging/ddl_pending_quarantine",
    "staging/ddl_pending_doc_hashes", "staging/ddl_derived_files",
)


@dataclass(frozen=True)
class Source:
    """One resolved input file."""

    path: Path
    sha256: str
    bytes: int
    format: str
    duplicate_of: Path | None = None
    """The first path (in path order) with the same bytes: this file is a copy, counted but not processed."""
    sample: bool = False
    """A named sample (`sample:NAME`) shipped by an installed package: allowed whatever `corpus.allowed_roots` says."""
    byte_range: tuple[int, int] | None = None
    """(start, end): this map job reads only those bytes of the file (`plm.corpus.ranges`); None: the whole file."""
    range_index: int = 0
    """The range's place in the file (0 for a file mapped whole)."""
    records_before: int = 0
    """Records of the file before the range (`count_records`): the map job numbers its records from there."""


@dataclass
class IngestResult:
    """What one ingest produced: the snapshot's lake files, its totals and per-source catalog rows."""

    snapshot_id: str
    files: list[Path]
    counts: dict[str, int]
    reasons: dict[str, int]
    sources: list[dict[str, Any]] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    """Paths of the sources this run actually processed (the others were already in the catalog)."""


# ---------------------------------------------------------------- sources


SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "CVS", "_darcs"})
"""Directory names never walked into (besides hidden ones: `.git`, `.venv`, `.plm`, ...)."""
HOME_MARKERS = (CATALOG, "catalog.lock", "mlflow.db")
"""Files that mark a directory as a plm home (its catalog, lock or MLflow store): never a corpus."""


def _is_home(path: Path) -> bool:
    home = Path(os.environ.get("PLM_HOME", ".plm")).expanduser().resolve()
    return path.resolve() == home or any((path / marker).exists() for marker in HOME_MARKERS)


def _skipped_dir(path: Path) -> bool:
    """A directory a walk of the corpus never enters: hidden, VCS, a virtual env, a cache, or a plm home."""
    name = path.name
    return name.startswith(".") or name in SKIPPED_DIRS or (path / "pyvenv.cfg").is_file() or _is_home(path)


def _walk(root: Path) -> list[Path]:
    """Files under `root`, hidden files and skipped directories (`_skipped_dir`) left out; none in a plm home."""
    if _is_home(root):
        return []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _skipped_dir(here / d))
        found.extend(here / f for f in filenames if not f.startswith(".") and (here / f).is_file())
    return sorted(found)


def _globbed(path: Path) -> list[Path]:
    """Files a glob matches, none inside a skipped directory below the glob's literal prefix."""
    parts = path.parts
    cut = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    out = []
    for match in sorted(glob.glob(str(path), recursive=True)):
        p = Path(match)
        below = p.parts[cut:-1]
        if p.is_file() and not any(_skipped_dir(Path(*p.parts[: cut + i + 1])) for i in range(len(below))):
            out.append(p)
    return out


def _expand(entry: str) -> list[Path]:
    if is_sample(entry):
        return resolve_sample(entry)
    path = Path(entry).expanduser()
    if path.is_file():
        return [path]  # named explicitly: taken as it is (and checked against the roots)
    if path.is_dir():
        return _walk(path)
    if glob.has_magic(entry):
        return _globbed(path)
    return []


def resolve_sources(paths: list[str], roots: Sequence[str | Path] = (), home: Path | None = None) -> list[Source]:
    """Files behind `paths` (files, directories, globs, `sample:NAME`), sorted by path.

    Every file but a named sample is resolved (symlinks followed) and checked against `roots`
    (`corpus.allowed_roots`; empty = `default_roots(home)`) before it is opened or hashed: PermissionError.
    A file with the same bytes as an earlier one is kept with `duplicate_of` set: ingest processes the
    content once and counts the copy's rows as `duplicate_file`, so no input vanishes from the accounting.
    """
    found: dict[Path, bool] = {}
    for entry in paths:
        matched = _expand(entry)
        if not matched:
            raise FileNotFoundError(f"corpus.paths: '{entry}' matches no file")
        sample = is_sample(entry)
        for p in matched:
            resolved = p.resolve() if sample else check_allowed(p, roots, home, key="corpus.paths")
            found[resolved] = found.get(resolved, True) and sample
    sources: list[Source] = []
    seen: dict[str, Path] = {}
    for path in sorted(found):
        digest = sha256_file(path)
        sources.append(Source(path, digest, path.stat().st_size, detect_format(path), seen.get(digest), found[path]))
        seen.setdefault(digest, path)
    return sources


def check_sources(sources: list[Source], roots: Sequence[str | Path] = (), home: Path | None = None) -> None:
    """PermissionError unless every source but a named sample still resolves inside `roots` (done on reuse too)."""
    for source in sources:
        if not source.sample:
            check_allowed(source.path, roots, home, key="corpus.paths")


def sources_fingerprint(sources: list[Source]) -> str:
    """The ingest stage's input: the content hashes with their formats, and how many copies each has."""
    copies = Counter(s.sha256 for s in sources if s.duplicate_of is not None)
    payload = {s.sha256: s.format for s in sources if s.duplicate_of is None}
    return fingerprint("sources", 1, {"copies": dict(sorted(copies.items()))} if copies else {}, payload)


def options_fingerprint(cfg: CorpusSpec) -> str:
    """16 hex chars over the processing options (and INGEST_VERSION): changing them re-processes sources."""
    return fingerprint("ingest", INGEST_VERSION, cfg.model_dump(mode="json", exclude=set(NON_PROCESSING_FIELDS)), {})


def snapshot_id(sources: list[Source], optsfp: str) -> str:
    """16 hex chars over the source hashes (copies included) and the options: the corpus version stages name."""
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


_HEX = np.full(256, 255, np.uint8)
_HEX[list(b"0123456789abcdef")] = np.arange(16, dtype=np.uint8)


def splits_of(doc_ids: pa.Array | pa.ChunkedArray, validation_fraction: float, test_fraction: float) -> list[str]:
    """`split_of` of each 16-hex-digit id, over the whole array at once."""
    ids = doc_ids.combine_chunks() if isinstance(doc_ids, pa.ChunkedArray) else doc_ids
    if not len(ids):
        return []
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset : ids.offset + len(ids) + 1]
    digits = _HEX[np.frombuffer(ids.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]]
    if (np.diff(offsets) != 16).any() or (digits == 255).any():
        return [split_of(i, validation_fraction, test_fraction) for i in ids.to_pylist()]
    value = np.zeros(len(ids), np.uint64)
    for column in digits.reshape(-1, 16).T.astype(np.uint64):
        value = (value << np.uint64(4)) | column
    u = (value % np.uint64(10000)).astype(np.float64) / 10000
    out = np.full(len(ids), "train", object)
    out[u < validation_fraction + test_fraction] = "test"
    out[u < validation_fraction] = "validation"
    return out.tolist()


def doc_ids(texts: pa.Array) -> list[str]:
    """The document id of each text: the first 16 hex digits of the sha256 of its UTF-8 (hashed in place)."""
    offsets = np.frombuffer(texts.buffers()[1], np.int32)[texts.offset : texts.offset + len(texts) + 1].tolist()
    data = memoryview(texts.buffers()[2] or b"")
    sha = hashlib.sha256
    return [sha(data[a:b]).hexdigest()[:16] for a, b in zip(offsets[:-1], offsets[1:])]


# ---------------------------------------------------------------- catalog


def connect_catalog(home: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The catalog of `home`, its `documents` view reading `home`'s own lake even when the home was moved or copied.

    The persistent view holds the absolute lake path of the last ingest (so plain `duckdb.connect(catalog)` works
    from any directory); this connection shadows it with a TEMP view over `home` (read-only connections too).
    """
    con = duckdb.connect(str(Path(home) / CATALOG), read_only=read_only)
    if sql.run(con, "staging/sel_has_documents_view").column("n")[0].as_py():
        _create_documents_view(con, Path(home), temporary=True)
    return con


def _create_documents_view(con: duckdb.DuckDBPyConnection, home: Path, temporary: bool = False) -> None:
    lake_glob = str(Path(home).resolve() / LAKE_DOCUMENTS / "*.parquet")
    ddl = sql.run(con, "staging/gen_view_documents", lake_glob=lake_glob, temporary=temporary).column("ddl")[0].as_py()
    con.execute(ddl)


def _holder(text: str) -> str:
    # The lock file holds "pid N on HOST since ISO"; an older writer may have left only the pid.
    text = text.strip()
    if not text:
        return "an unknown process"
    return text if text.startswith("pid ") else f"pid {text}"


@contextmanager
def catalog_lock(home: Path, timeout: float = 60.0) -> Iterator[None]:
    """Exclusive lock on `home/catalog.lock`; RuntimeError naming the holder (pid, host, start) after `timeout` s.

    `flock` is released by the kernel when its holder dies, so a killed ingest never leaves a stale lock.
    """
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
                    raise RuntimeError(
                        f"catalog {path} is locked by {_holder(f.read())} (waited {timeout:g} s); "
                        "another ingest is running (corpus.lock_timeout_s sets the wait)"
                    ) from None
                time.sleep(0.1)
        try:
            f.seek(0)
            f.truncate()
            started = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}")
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


# ---------------------------------------------------------------- reading in batches


def _batches(records: Iterable[RawRecord], max_records: int, max_bytes: int) -> Iterator[list[RawRecord]]:
    """Consecutive lists of records, each at most `max_records` long and about `max_bytes` of raw text."""
    batch: list[RawRecord] = []
    size = 0
    for rec in records:
        batch.append(rec)
        size += len(rec.raw)
        if len(batch) >= max_records or size >= max_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------- one batch


@dataclass
class _Batch:
    table: pa.Table
    quarantine: pa.Table
    counts: Counter[str]
    reasons: Counter[str]
    signatures: np.ndarray | None = None
    """MinHash signatures of `table`'s documents (row order) when near-dup is on; the commit step decides."""
    shingles: np.ndarray | None = None
    """Shingles per document of `table` (0: no words, never a near-duplicate)."""


def _drop(
    con: duckdb.DuckDBPyConnection, docs: pa.Table, name: str, reasons: Counter[str], narrow: list[str] | None = None,
    **params: Any,
) -> tuple[pa.Table, int]:
    """Run one `flt_`/`dedup_` statement over `docs`; count its reasons; return the kept rows and how many went.

    `narrow`: the only columns the statement reads (with `position`, unique in a source): just those go through
    DuckDB, and its decisions (in position order, as the statement returns them) apply to `docs`, sorted so."""
    if narrow is not None:
        docs = _by_position(docs)
    con.register("docs", docs if narrow is None else docs.select(narrow))
    try:
        out = sql.run(con, name, **params)
    finally:
        con.unregister("docs")
    dropped = out.column("drop_reason")
    reasons.update(r for r in pc.drop_null(dropped).to_pylist())
    kept = docs if narrow is not None else out.drop_columns(["drop_reason"])
    return kept.filter(pc.is_null(dropped)), out.num_rows - dropped.null_count


def _by_position(docs: pa.Table) -> pa.Table:
    """`docs` in position order (what every `flt_`/`dedup_` statement returns): readers yield records in that order."""
    position = docs.column("position").to_numpy()
    if position.size > 1 and not (np.diff(position) > 0).all():
        docs = docs.take(pc.sort_indices(docs, [("position", "ascending")]))
    return docs


def _drop_where(docs: pa.Table, reasons: Counter[str], dropped: list[str | None]) -> tuple[pa.Table, int]:
    """`_drop` for a filter computed in Python over the batch (the same decisions as its SQL statement, which
    stays the specification: tests/unit/corpus/test_ngram.py compares them); much faster than the SQL."""
    hits = Counter(dropped)
    n = len(dropped) - hits.pop(None, 0)
    reasons.update(hits)
    return (docs.filter(pc.is_null(pa.array(dropped, pa.string()))) if n else docs), n


def _filter_param(cfg: CorpusSpec, key: str) -> Any:
    if key == "rules":  # the n-gram rules as one list of {kind, n, max_fraction}
        return [{"kind": "top", "n": n, "max_fraction": f} for n, f in sorted(cfg.max_top_ngram_fraction.items())] + [
            {"kind": "dup", "n": n, "max_fraction": f} for n, f in sorted(cfg.max_duplicate_ngram_fraction.items())]
    return getattr(cfg, key)


def _process_batch(
    con: duckdb.DuckDBPyConnection, cfg: CorpusSpec, source: Source, optsfp: str, records: list[RawRecord],
    minhash: MinHashParams | None,
) -> _Batch:
    """Normalise, filter, deduplicate within the source and sentence-split one batch of records; with `minhash`, the
    kept documents' signatures too (near-dup is decided by the commit step, against everything committed before)."""
    reasons: Counter[str] = Counter()
    counts: Counter[str] = Counter(rows_read=len(records))
    bad = [r for r in records if r.reason is not None]
    good = [r for r in records if r.reason is None]
    reasons.update(r.reason for r in bad)
    counts["rows_quarantined"] = len(bad)
    quarantine = pa.table({
        "position": pa.array([r.position for r in bad], pa.int64()),
        "reason": pa.array([r.reason for r in bad], pa.string()),
        "raw": pa.array([r.raw if isinstance(r.raw, bytes) else r.raw.encode() for r in bad], pa.binary()),
    })
    text = pa.array(normalize_many([r.raw for r in good], cfg.normalization), pa.string())  # type: ignore[arg-type]
    docs = pa.table({
        "position": pa.array([r.position for r in good], pa.int64()),
        "source_id": pa.array([r.source_id for r in good], pa.string()),
        "metadata": pa.array([None if r.metadata is None else json.dumps(r.metadata, ensure_ascii=False, default=str)
                              for r in good], pa.string()),
        "title": pa.array([r.title for r in good], pa.string()),
        "text": text,
        "doc_id": pa.array(doc_ids(text), pa.string()),
        "n_chars": pc.utf8_length(text).cast(pa.int32()),
    })
    del text
    words: tuple[pa.Array, np.ndarray] | None = None  # split once for the word rules and the n-gram rules
    rows = np.arange(docs.num_rows)  # the rows of `words` that `docs` still holds
    for name, keys in FILTERS:
        if name == "quality/flt_ngram_repetition" and not (cfg.max_top_ngram_fraction or cfg.max_duplicate_ngram_fraction):
            continue
        if name == "quality/flt_ngram_repetition":  # the SQL's decisions, compiled (plm/corpus/ngram.py)
            dropped = ngram_repetition_reasons(docs.column("text"), cfg.ngram_min_words, _filter_param(cfg, "rules"),
                                               words=None if words is None else select_words(*words, rows))
        elif name == "quality/flt_word_stats":  # the SQL's decisions over flat Arrow words (plm/corpus/wordstats.py)
            _, *split = split_words(docs.column("text"))
            words, rows = (split[0], split[1]), np.arange(docs.num_rows)
            dropped = word_stats_reasons(docs.column("text"), **{k: _filter_param(cfg, k) for k in keys}, words=words)
        elif name in COMPILED:  # the SQL's decisions over the Arrow batch (plm/corpus/quality.py)
            dropped = COMPILED[name](docs, **{k: _filter_param(cfg, k) for k in keys})
        else:
            docs, n = _drop(con, docs, name, reasons, **{k: _filter_param(cfg, k) for k in keys})
            counts["rows_filtered"] += n
            words = None  # (never for the shipped filters: all are compiled)
            continue
        rows = rows[np.fromiter((r is None for r in dropped), np.bool_, len(dropped))]
        docs, n = _drop_where(docs, reasons, dropped)
        counts["rows_filtered"] += n
    # Exact dedup before language detection: the model is the costliest step left, duplicates need no label.
    docs, n = _drop(con, docs, "quality/dedup_exact", reasons, narrow=["position", "doc_id"], options=optsfp,
                    source_sha256=source.sha256)
    counts["rows_duplicate"] += n
    model = cfg.detect_language or bool(cfg.languages)
    langs = detect_langs(docs.column("text").to_pylist()) if model else detect_lang_many(docs.column("text"))
    docs = docs.append_column("lang", pa.array(langs, pa.string()))
    del langs
    docs, n = _drop_where(docs, reasons, COMPILED["quality/flt_language"](docs, languages=list(cfg.languages)))
    counts["rows_filtered"] += n
    sigs = shingles = None
    if minhash is not None and docs.num_rows:
        sigs, shingles = minhash_signatures(docs.column("text"), minhash.num_perm, minhash.shingle)
    texts, langs = (docs.column(c).to_pylist() for c in ("text", "lang"))
    sentences = split_sentences_many(texts, langs, cfg.korean_sentences)
    del texts
    n = docs.num_rows
    table = pa.table({
        "doc_id": docs.column("doc_id"), "source_sha256": pa.array([source.sha256] * n, pa.string()),
        "position": docs.column("position"), "title": docs.column("title"), "text": docs.column("text"),
        "lang": docs.column("lang"),
        "split": pa.array(splits_of(docs.column("doc_id"), cfg.validation_fraction, cfg.test_fraction), pa.string()),
        "n_chars": docs.column("n_chars"), "sentences": pa.array(sentences, pa.list_(pa.string())),
        "source_id": docs.column("source_id"), "metadata": docs.column("metadata"),
    }, schema=DOCUMENT_SCHEMA)
    counts["rows_kept"] = n
    counts["sentences"] = sum(len(s) for s in sentences)
    counts["chars"] = pc.sum(docs.column("n_chars")).as_py() or 0
    return _Batch(table, quarantine, counts, +reasons, sigs, shingles)


# ---------------------------------------------------------------- one source


def lake_prefix(source: Source, optsfp: str) -> str:
    """Lake file names of `source` under `optsfp` start with this; parts append `-<part>.parquet`."""
    return f"{source.sha256[:16]}-{optsfp}"


def _check_accounting(source: Source, counts: Counter[str]) -> None:
    checked = counts["rows_kept"] + counts["rows_duplicate"] + counts["rows_filtered"] + counts["rows_quarantined"]
    if counts["rows_read"] != checked:
        raise RuntimeError(
            f"{source.path}: accounting mismatch: rows_read={counts['rows_read']} but "
            f"kept+duplicate+filtered+quarantined={checked}; nothing of this source was committed"
        )


MAP_MANIFEST = "manifest.json"
"""Written last into a source's map output, which is then renamed into place: the directory is its completion marker."""
QUARANTINE_FILE = "quarantine.parquet"
QUARANTINE_SCHEMA = pa.schema([("position", pa.int64()), ("reason", pa.string()), ("raw", pa.binary())])


def _staged_dir(lake: Path, source: Source, optsfp: str) -> Path:
    """Where the map step of `source` leaves its output (`lake/documents/.staging/<source16>-<optsfp>`, `-r<NNNNN>`
    appended for a byte range)."""
    name = lake_prefix(source, optsfp)
    return lake / STAGING / (name if source.byte_range is None else f"{name}-r{source.range_index:05d}")


def map_jobs(source: Source, cfg: CorpusSpec) -> list[Source]:
    """The map jobs of `source`: itself, or one copy per byte range when it is cut (`plm.corpus.ranges`)."""
    ranges = plan_ranges(source.path, source.format, cfg, source.bytes)
    if ranges is None:
        return [source]
    return [replace(source, byte_range=r, range_index=i) for i, r in enumerate(ranges)]


def _count_job(job: Source, work: dict[str, Any]) -> int:
    return count_records(job.path, job.format, work["cfg"], job.byte_range)  # type: ignore[arg-type]


def _numbered(jobs: list[Source], cfg: CorpusSpec, mapper: Mapper | None) -> list[Source]:
    """`jobs` with each byte range's `records_before`, its file's earlier ranges counted (`count_records`) through
    `mapper` (on the cluster) or here, so that every range's map job numbers its records from the file's start."""
    counted = [j for k, j in enumerate(jobs) if j.byte_range is not None and k + 1 < len(jobs)
               and jobs[k + 1].path == j.path]  # fmt: skip
    if not counted:
        return jobs
    work = {"cfg": cfg}
    counts = dict(zip([(j.path, j.range_index) for j in counted],
                      mapper(_count_job, counted, work) if mapper is not None else (_count_job(j, work) for j in counted)))
    out, before = [], 0
    for job in jobs:
        before = 0 if job.range_index == 0 else before
        out.append(replace(job, records_before=before) if job.byte_range is not None else job)
        before += counts.get((job.path, job.range_index), 0)
    return out


def _remember_kept(con: duckdb.DuckDBPyConnection, batch: _Batch, key: dict[str, str]) -> None:
    """The batch's kept ids into the map's in-memory `pending_doc_hashes`: later batches of the source dedup against them."""
    con.register("kept_batch", batch.table.select(["doc_id"]))
    try:
        sql.execute(con, "staging/ins_pending_doc_hashes", **key)
    finally:
        con.unregister("kept_batch")


def _clear_pending(con: duckdb.DuckDBPyConnection) -> None:
    # rows an ingest of INGEST_VERSION <= 4 killed mid-source left in the catalog (the map step keeps them in memory now)
    for name in ("staging/clr_pending_quarantine", "staging/clr_pending_doc_hashes"):
        sql.execute(con, name)


def _read_staged(staged: Path, source: Source, optsfp: str) -> dict[str, Any] | None:
    """The manifest of a finished map output of `source`, None unless it is complete and every file has its sha256."""
    try:
        manifest = json.loads((staged / MAP_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if (manifest.get("sha256"), manifest.get("options"), manifest.get("version")) != (source.sha256, optsfp, INGEST_VERSION):
        return None
    if manifest.get("byte_range") != (None if source.byte_range is None else list(source.byte_range)):
        return None
    if manifest.get("records_before", 0) != source.records_before:
        return None
    for name, digest in manifest["files"].items():
        if not (staged / name).is_file() or sha256_file(staged / name) != digest:
            return None
    return manifest


def map_source(source: Source, work: dict[str, Any]) -> dict[str, Any]:
    """The map step of one source: everything ingest does to it that needs no catalog, on any worker.

    Reads it (or its `byte_range`) in batches, normalises, filters, drops exact duplicates within the source (an in-memory DuckDB holds
    the ids kept so far) and splits sentences; with `corpus.near_dup` also computes the kept documents' MinHash
    signatures. Writes `part-NNNNN.parquet` (+ `sig-NNNNN.npz`) per batch that kept something and
    `quarantine.parquet` into a temporary directory, then `manifest.json` (counts, reasons, encoding, files with
    their sha256), and renames the directory to `_staged_dir`: a finished output is found by name and reused;
    a killed attempt leaves only its `<name>.tmp-<pid>-*` directory, which the stage removes. Returns the manifest.

    `work`: `cfg` (CorpusSpec), `optsfp`, `lake` (str), optionally `progress` (in-process only) and `threads`
    (DuckDB threads: 1 on a Dask worker, which runs one task per thread).
    """
    cfg: CorpusSpec = work["cfg"]
    optsfp: str = work["optsfp"]
    lake = Path(work["lake"])
    progress: Progress = work.get("progress") or no_progress
    final = _staged_dir(lake, source, optsfp)
    done = _read_staged(final, source, optsfp)
    if done is not None:
        return done
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    key = {"sha256": source.sha256, "options": optsfp}
    minhash = MinHashParams.from_spec(cfg) if cfg.near_dup else None
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    parts: list[dict[str, Any]] = []
    spill = tmp.with_name(f"{tmp.name}.spill")  # DuckDB spills beyond its memory limit: a huge source's kept ids
    con = duckdb.connect()
    try:
        con.execute("SET memory_limit = $limit", {"limit": DUCKDB_MEMORY_LIMIT})
        con.execute("SET temp_directory = $dir", {"dir": str(spill)})
        if work.get("threads"):
            con.execute(f"SET threads = {int(work['threads'])}")
        sql.execute(con, "staging/ddl_pending_doc_hashes")
        # a named sample lies in its package, which `corpus.allowed_roots` need not name
        rcfg = cfg.model_copy(update={"allowed_roots": [str(source.path)]}) if source.sample else cfg
        with pq.ParquetWriter(tmp / QUARANTINE_FILE, QUARANTINE_SCHEMA, compression="zstd") as quarantine:
            records_of = read_records(source.path, source.format, rcfg, source.byte_range)
            if source.records_before:  # positions from the file's start
                records_of = (r._replace(position=r.position + source.records_before) for r in records_of)
            for records in _batches(records_of, cfg.batch_records, cfg.batch_bytes):
                batch = _process_batch(con, cfg, source, optsfp, records, minhash)
                del records
                counts.update(batch.counts)
                reasons.update(batch.reasons)
                if batch.quarantine.num_rows:
                    quarantine.write_table(batch.quarantine)
                if batch.table.num_rows:
                    _remember_kept(con, batch, key)
                    part = {"file": f"part-{len(parts):05d}.parquet", "rows": batch.table.num_rows}
                    pq.write_table(batch.table, tmp / part["file"], compression="zstd")
                    if batch.signatures is not None:
                        part["signatures"] = f"sig-{len(parts):05d}.npz"
                        np.savez(tmp / part["signatures"], signatures=batch.signatures, shingles=batch.shingles)
                    parts.append(part)
                del batch
                progress(f"ingest {source.path.name} (rows)", counts["rows_read"], None)
        _check_accounting(source, counts)
        names = [QUARANTINE_FILE, *(p[k] for p in parts for k in ("file", "signatures") if k in p)]
        manifest = {
            **key, "version": INGEST_VERSION, "path": str(source.path), "counts": dict(counts),
            "byte_range": None if source.byte_range is None else list(source.byte_range),
            "records_before": source.records_before,
            "reasons": dict(sorted(reasons.items())), "parts": parts,
            "encoding": detect_encoding(source.path, source.format, cfg.encoding, Limits.of(cfg)),
            "files": {name: sha256_file(tmp / name) for name in names},
        }
        (tmp / MAP_MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
        for _ in range(3):
            try:
                os.rename(tmp, final)
                return manifest
            except OSError:
                other = _read_staged(final, source, optsfp)
                if other is not None:  # another attempt of this source (a rescheduled task) finished first: same bytes
                    shutil.rmtree(tmp, ignore_errors=True)
                    return other
                shutil.rmtree(final, ignore_errors=True)  # a damaged output (a commit killed while renaming its parts)
        raise RuntimeError(f"{source.path}: could not rename its map output {tmp} to {final}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


class _EarlierRanges:
    """The ids the map steps of a file's earlier byte ranges kept (before near-dup), in a temporary table of the
    committing connection: a later range's copy of one is a `duplicate`, as it is when the file is read whole."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        sql.execute(con, "staging/ddl_range_kept")

    def add(self, parts: list[Path]) -> None:
        if parts:
            sql.execute(self.con, "staging/ins_range_kept", files=[str(p) for p in parts])

    def kept(self, ids: list[str]) -> list[bool]:
        self.con.register("range_ids", pa.table({"doc_id": pa.array(ids, pa.string())}))
        try:
            hits = set(sql.run(self.con, "staging/sel_range_duplicates").column("doc_id").to_pylist())
        finally:
            self.con.unregister("range_ids")
        return [i in hits for i in ids]

    def close(self) -> None:
        sql.execute(self.con, "staging/drp_range_kept")


def _final_part(
    staged: Path, part: dict[str, Any], source: Source, near: NearDupIndex | None, earlier: _EarlierRanges | None,
    offset: int, counts: Counter[str], reasons: Counter[str],
) -> Path | None:
    """One staged part as it goes into the lake: without the documents an earlier byte range of its file kept
    (`duplicate`) and, with `near`, without the near-duplicates (checked in document order against the index), its
    positions moved by the `offset` records before its range; rewritten only when something changes, None when
    nothing is left. Counts and reasons updated."""
    path = staged / part["file"]
    ids: list[str] | None = None
    drop = dup = None
    if earlier is not None:
        ids = pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist()
        dup = earlier.kept(ids)
        n = sum(dup)
        if n:
            reasons["duplicate"] += n
            counts["rows_duplicate"] += n
            drop = dup
    if near is not None:
        with np.load(staged / part["signatures"]) as arrays:
            sigs, shingles = arrays["signatures"], arrays["shingles"]
        if ids is None:
            ids = pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist()
        left = [i for i in range(len(ids)) if not (dup and dup[i])]
        if len(left) < len(ids):
            sigs, shingles = sigs[left], shingles[left]
        dup_of = near.check_and_add_signatures([ids[i] for i in left], sigs, shingles, source_sha256=source.sha256)
        n = sum(d is not None for d in dup_of)
        if n:
            reasons["near_duplicate"] += n
            counts["rows_duplicate"] += n
            drop = list(drop or [False] * len(ids))
            for i, d in zip(left, dup_of):
                drop[i] = d is not None
    if drop is None and not offset:
        return path
    table = pq.read_table(path, schema=DOCUMENT_SCHEMA)
    if drop is not None:
        mask = pa.array(drop, pa.bool_())
        gone = table.filter(mask)
        counts["rows_kept"] -= gone.num_rows
        counts["sentences"] -= pc.sum(pc.list_value_length(gone.column("sentences"))).as_py() or 0
        counts["chars"] -= pc.sum(gone.column("n_chars")).as_py() or 0
        table = table.filter(pc.invert(mask))
        if not table.num_rows:
            return None
    if offset:
        at = table.schema.get_field_index("position")
        table = table.set_column(at, "position", pc.add(table.column("position"), pa.scalar(offset, pa.int64())))
    out = staged / f"kept-{part['file']}"
    pq.write_table(table, out, compression="zstd")
    return out


def _commit_source(
    con: duckdb.DuckDBPyConnection, source: Source, optsfp: str, snap: str, lake: Path, near: NearDupIndex | None,
    mapped: list[tuple[Source, dict[str, Any]]],
) -> None:
    """The commit step of one mapped source (in the stage's process, in source order): its map jobs' outputs in file
    order (`mapped`: the source itself, or each byte range, with its manifest), a later range's copies of documents an
    earlier range kept dropped as duplicates, near-dup against everything committed before, positions counted from
    the file's start, the parts renamed into the lake, then its catalog rows in one transaction."""
    prefix = lake_prefix(source, optsfp)
    staged = [_staged_dir(lake, job, optsfp) for job, _ in mapped]
    for (job, _), directory in zip(mapped, staged):
        if _read_staged(directory, job, optsfp) is None:
            raise RuntimeError(f"{source.path}: its map output in {directory} is missing or incomplete")
    for stale in lake.glob(f"{prefix}-*.parquet"):  # renamed by a run killed before its commit
        stale.unlink()
    key = {"sha256": source.sha256, "options": optsfp}
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for _, manifest in mapped:
        counts.update(manifest["counts"])
        reasons.update(manifest["reasons"])
    # records before each range (its map job numbered from its `records_before`, counted on bytes): a miscount is renumbered
    before = np.cumsum([0] + [m["counts"].get("rows_read", 0) for _, m in mapped])[:-1].tolist()
    offsets = [b - job.records_before for b, (job, _) in zip(before, mapped)]
    earlier = _EarlierRanges(con) if len(mapped) > 1 else None
    final: list[Path] = []
    try:
        parts: list[Path] = []
        for k, ((_, manifest), directory) in enumerate(zip(mapped, staged)):
            for part in manifest["parts"]:
                kept = _final_part(directory, part, source, near, earlier if k else None, offsets[k], counts, reasons)
                if kept is not None:
                    parts.append(kept)
            if earlier is not None and k < len(mapped) - 1:
                earlier.add([directory / p["file"] for p in manifest["parts"]])
        empty = len(mapped) > 1 and counts["rows_read"] == 0  # read whole, its reader would give one empty_file row
        if empty:
            counts.update(rows_read=1, rows_quarantined=1)
            reasons["empty_file"] += 1
        _check_accounting(source, counts)
        for i, part in enumerate(parts):
            final.append(lake / f"{prefix}-{i:05d}.parquet")
            os.replace(part, final[-1])
        con.begin()
        try:
            # a re-processed source's old rows go; its staged quarantine and kept ids become the committed ones
            for name in ("staging/del_source", "staging/del_quarantine", "staging/del_doc_hashes"):
                sql.execute(con, name, **key)
            for directory, offset in zip(staged, offsets):
                sql.execute(con, "staging/ins_quarantine_staged", **key, file=str(directory / QUARANTINE_FILE),
                            offset=offset)  # fmt: skip
            if empty:
                sql.execute(con, "staging/ins_quarantine_row", **key, position=0, reason="empty_file", raw=b"")
            if final:
                sql.execute(con, "staging/ins_doc_hashes_staged", **key, files=[str(f) for f in final])
            sql.execute(
                con, "staging/ins_source", **key, path=str(source.path), bytes=source.bytes, format=source.format,
                encoding=mapped[0][1]["encoding"], status="ok",
                **{k: counts[k] for k in ("rows_read", "rows_kept", "rows_duplicate", "rows_filtered",
                                          "rows_quarantined", "sentences", "chars")},
                reasons=json.dumps(dict(sorted((+reasons).items()))), lake_files=[f.name for f in final],
                snapshot_id=snap,
            )
            if near is not None:
                near.forget(source.sha256)
                near.commit()
            con.commit()
        except BaseException:
            con.rollback()
            raise
    except BaseException:
        if near is not None:
            near.rollback()
        for f in final:
            f.unlink(missing_ok=True)
        raise
    finally:
        if earlier is not None:
            earlier.close()
        for directory in staged:
            shutil.rmtree(directory, ignore_errors=True)


def _clean_staging(lake: Path, keep: set[str]) -> None:
    """Removes everything under the staging directory but the finished map outputs named in `keep` (their
    completeness is checked when they are used): killed attempts, half-written derived files, other sources' outputs."""
    staging = lake / STAGING
    if not staging.is_dir():
        return
    for entry in staging.iterdir():
        if entry.name in keep and entry.is_dir() and (entry / MAP_MANIFEST).is_file():
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _catalog_rows(con: duckdb.DuckDBPyConnection, sources: list[Source], optsfp: str) -> dict[str, dict[str, Any]]:
    rows = sql.run(con, "staging/sel_sources", options=optsfp, sha256s=[s.sha256 for s in sources]).to_pylist()
    return {row["sha256"]: row for row in rows}


def _open_near_dup(con: duckdb.DuckDBPyConnection, cfg: CorpusSpec, optsfp: str) -> NearDupIndex | None:
    return NearDupIndex.open(con, cfg, options=optsfp) if cfg.near_dup else None


def reason_kind(reason: str) -> str:
    """Which count a drop reason falls under: `filtered`, `duplicate` or `quarantined`."""
    if reason in FILTER_REASONS:
        return "filtered"
    return "duplicate" if reason in DUPLICATE_REASONS else "quarantined"


def reason_table(result: IngestResult) -> dict[str, list[Any]]:
    """Columns (reason, kind, rows) of every drop reason of `result`, largest first: the report users read."""
    rows = sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"reason": [r for r, _ in rows], "kind": [reason_kind(r) for r, _ in rows], "rows": [n for _, n in rows]}


# ---------------------------------------------------------------- the stage


Mapper = Callable[[Callable[[Source, dict[str, Any]], Any], Sequence[Source], dict[str, Any]], Iterator[Any]]
"""`mapper(map_source, sources, work)`: the manifests of `map_source(s, work)` for every source, in their order,
wherever it runs them (`plm.objectives.shardrun.run_shards` on a Dask cluster)."""


def ingest_corpus(
    cfg: CorpusSpec, home: Path, sources: list[Source] | None = None, progress: Progress = no_progress,
    mapper: Mapper | None = None,
) -> IngestResult:
    """Ingest `sources` (default: resolve `cfg.paths`) into `home`'s lake and catalog; see the module docstring.

    The map steps run through `mapper` (given by the stage for `runner.kind: dask`; each worker's DuckDB gets one
    thread), else in this process, one source after the other as the commit asks for them (with per-batch progress).

    Raises ValueError when nothing was kept or `corpus.max_quarantined_fraction` is exceeded, RuntimeError
    when another ingest holds the catalog past `corpus.lock_timeout_s` or a source's counts do not add up.
    """
    home = Path(home)
    if sources is None:
        sources = resolve_sources(cfg.paths, cfg.allowed_roots, home)
    else:
        check_sources(sources, cfg.allowed_roots, home)
        sources = sorted(sources, key=lambda s: str(s.path))
    optsfp = options_fingerprint(cfg)
    snap = snapshot_id(sources, optsfp)
    copies = [s for s in sources if s.duplicate_of is not None]
    sources = [s for s in sources if s.duplicate_of is None]
    lake = home / LAKE_DOCUMENTS
    with catalog_lock(home, cfg.lock_timeout_s):
        lake.mkdir(parents=True, exist_ok=True)
        con = connect_catalog(home)
        try:
            con.execute("SET memory_limit = $limit", {"limit": DUCKDB_MEMORY_LIMIT})
            _ensure_schema(con)
            _clear_pending(con)
            done = _catalog_rows(con, sources, optsfp)
            todo = [s for s in sources if not _cached(done.get(s.sha256), lake)]
            jobs: dict[Path, list[Source]] = {}  # a large file: one job per byte range
            for job in _numbered([j for s in todo for j in map_jobs(s, cfg)], cfg, mapper):
                jobs.setdefault(job.path, []).append(job)
            pending = list(todo)  # mapped, not committed yet

            def staged_names(of: list[Source]) -> set[str]:
                return {_staged_dir(lake, job, optsfp).name for s in of for job in jobs[s.path]}

            # finished map outputs of the sources to do are reused; everything else a killed run left goes
            _clean_staging(lake, staged_names(todo))
            near = _open_near_dup(con, cfg, optsfp)
            processed: list[str] = []
            progress("ingest", 0, len(sources))
            mapped = _map_sources(cfg, [j for s in todo for j in jobs[s.path]], optsfp, lake, progress, mapper)
            try:
                for i, source in enumerate(sources):
                    if pending and source is pending[0]:
                        pending.pop(0)
                        outputs = [(job, next(mapped)) for job in jobs[source.path]]
                        _commit_source(con, source, optsfp, snap, lake, near, outputs)
                        processed.append(str(source.path))
                    progress(f"ingest {source.path.name}", i + 1, len(sources))
            finally:
                mapped.close()  # a failed commit: the cluster's remaining map tasks are cancelled
                _clean_staging(lake, staged_names(pending))  # killed workers' attempts
            rows = _assemble_snapshot(con, cfg, _catalog_rows(con, sources, optsfp), lake, optsfp)
            result = _summarise(cfg, sources, rows, lake, snap, copies)
            result.processed = processed
            _record_snapshot(con, result, optsfp, home)
        finally:
            con.close()
    return result


def _cached(row: dict[str, Any] | None, lake: Path) -> bool:
    """Whether a source's catalog row (under these options) is there with all its lake files: nothing to redo."""
    return row is not None and all((lake / f).is_file() for f in (row["lake_files"] or []))


def _map_sources(
    cfg: CorpusSpec, todo: list[Source], optsfp: str, lake: Path, progress: Progress, mapper: Mapper | None
) -> Iterator[dict[str, Any]]:
    """The map step of every job of `todo` (sources, or byte ranges of one), manifests in `todo` order: through
    `mapper`, else one after the other in this process, lazily (each when the commit asks for it)."""
    work: dict[str, Any] = {"cfg": cfg, "optsfp": optsfp, "lake": str(lake)}
    if mapper is not None and todo:
        yield from mapper(map_source, list(todo), {**work, "threads": 1})
        return
    for source in todo:
        yield map_source(source, {**work, "progress": progress})


def _derived_name(row: dict[str, Any], optsfp: str, dropped: list[str], validation: list[str]) -> str:
    key = hashlib.sha256(canonical_json({"dropped": dropped, "validation": validation}).encode()).hexdigest()[:16]
    return f"{row['sha256'][:16]}-{optsfp}-x{key}.parquet"


def _write_derived(lake: Path, parts: list[str], dropped: list[str], validation: list[str], target: Path) -> dict[str, int]:
    """`parts` without the documents `dropped` and with `validation` in the validation split, as one zstd Parquet
    file renamed into place; what was dropped."""
    tmp = lake / STAGING / target.name
    tmp.parent.mkdir(parents=True, exist_ok=True)
    gone = pa.array(dropped, pa.string())
    moved = pa.array(validation, pa.string())
    stats = Counter[str]()
    with pq.ParquetWriter(tmp, DOCUMENT_SCHEMA, compression="zstd") as writer:
        for part in parts:
            table = pq.read_table(lake / part, schema=DOCUMENT_SCHEMA)
            mask = pc.is_in(table.column("doc_id"), value_set=gone)
            left = table.filter(mask)
            stats["dropped_docs"] += left.num_rows
            stats["dropped_sentences"] += pc.sum(pc.list_value_length(left.column("sentences"))).as_py() or 0
            stats["dropped_chars"] += pc.sum(left.column("n_chars")).as_py() or 0
            kept = table.filter(pc.invert(mask))
            if validation:
                split = pc.if_else(pc.is_in(kept.column("doc_id"), value_set=moved), "validation", kept.column("split"))
                kept = kept.set_column(kept.schema.get_field_index("split"), "split", split)
            if kept.num_rows:
                writer.write_table(kept)
    os.replace(tmp, target)
    return dict(stats)


def _validation_moves(
    con: duckdb.DuckDBPyConnection, cfg: CorpusSpec, rows: dict[str, dict[str, Any]], dropped: dict[str, list[str]],
    lake: Path,
) -> dict[str, list[str]]:
    """Per source, the ids of the train documents `quality/sel_validation_moves` moves to validation."""
    if cfg.validation_fraction <= 0 or cfg.min_validation_docs <= 0:
        return {}
    parts = [lake / f for row in rows.values() for f in (row["lake_files"] or [])]
    if not parts:
        return {}
    docs = pq.read_table(parts, columns=["source_sha256", "doc_id", "lang", "split"])
    gone = [f"{sha}:{d}" for sha, ids in dropped.items() for d in ids]
    if gone:
        keys = pc.binary_join_element_wise(docs.column("source_sha256"), docs.column("doc_id"), ":")
        docs = docs.filter(pc.invert(pc.is_in(keys, value_set=pa.array(gone, pa.string()))))
    con.register("snapshot_docs", docs)
    try:
        moves = sql.run(con, "quality/sel_validation_moves", min_docs=cfg.min_validation_docs).to_pylist()
    finally:
        con.unregister("snapshot_docs")
    out: dict[str, list[str]] = {}
    for m in moves:
        out.setdefault(m["source_sha256"], []).append(m["doc_id"])
    return {sha: sorted(ids) for sha, ids in out.items()}


def _assemble_snapshot(
    con: duckdb.DuckDBPyConnection, cfg: CorpusSpec, rows: dict[str, dict[str, Any]], lake: Path, optsfp: str
) -> dict[str, dict[str, Any]]:
    """The catalog rows of the snapshot's sources as this snapshot sees them: cross-source exact duplicates dropped, and a
    validation document for each language that has enough documents but none in validation.

    A source's `sources` row holds what it turned into on its own; here the documents another source of the
    snapshot also keeps (`quality/dedup_snapshot`) move from rows_kept to rows_duplicate (reason `duplicate`),
    the documents `quality/sel_validation_moves` picks get split `validation`, and a source touched by either
    gets one derived lake file instead of its parts (none when nothing is left).
    """
    dups = sql.run(con, "quality/dedup_snapshot", options=optsfp, sha256s=sorted(rows)).to_pylist()
    by_source: dict[str, list[str]] = {}
    for d in dups:
        by_source.setdefault(d["source_sha256"], []).append(d["doc_id"])
    moves = _validation_moves(con, cfg, rows, by_source, lake)
    out = dict(rows)
    for sha in sorted(set(by_source) | set(moves)):
        row = dict(rows[sha])
        dropped, validation = by_source.get(sha, []), moves.get(sha, [])
        n = len(dropped)
        if n == row["rows_kept"]:  # nothing of it is left: no file, and everything it kept went
            stats = {"dropped_docs": n, "dropped_sentences": row["sentences"], "dropped_chars": row["chars"]}
            files: list[str] = []
        else:
            name = _derived_name(row, optsfp, dropped, validation)
            known = sql.run(con, "staging/sel_derived_files", files=[name]).to_pylist()
            if known and (lake / name).is_file():
                stats = {k: known[0][k] for k in ("dropped_docs", "dropped_sentences", "dropped_chars")}
            else:
                stats = _write_derived(lake, list(row["lake_files"] or []), dropped, validation, lake / name)
                sql.execute(con, "staging/ins_derived_file", file=name, sha256=sha, options=optsfp, **stats)
            files = [name]
        if stats["dropped_docs"] != n:
            raise RuntimeError(f"{row['path']}: {n} snapshot duplicates but {stats['dropped_docs']} found in its lake files")
        reasons = Counter(json.loads(row["reasons"]))
        if n:
            reasons["duplicate"] += n
        row.update(
            rows_kept=row["rows_kept"] - n, rows_duplicate=row["rows_duplicate"] + n,
            sentences=row["sentences"] - stats["dropped_sentences"], chars=row["chars"] - stats["dropped_chars"],
            reasons=json.dumps(dict(sorted(reasons.items()))), lake_files=files,
        )
        out[sha] = row
    return out


def _copy_row(copy: Source, original: dict[str, Any]) -> dict[str, Any]:
    """The row of a byte-identical copy of another input: every row it has is a `duplicate_file`."""
    n = original["rows_read"]
    return {
        **original, "path": str(copy.path), "status": "duplicate_file", "duplicate_of": str(copy.duplicate_of),
        "rows_read": n, "rows_kept": 0, "rows_duplicate": n, "rows_filtered": 0, "rows_quarantined": 0,
        "sentences": 0, "chars": 0, "reasons": json.dumps({"duplicate_file": n} if n else {}), "lake_files": [],
    }


def _summarise(
    cfg: CorpusSpec, sources: list[Source], rows: dict[str, dict[str, Any]], lake: Path, snap: str,
    copies: list[Source] | None = None,
) -> IngestResult:
    counts = dict.fromkeys(COUNT_KEYS, 0)
    reasons: Counter[str] = Counter()
    ordered = [rows[s.sha256] for s in sources]
    ordered += [_copy_row(c, rows[c.sha256]) for c in copies or []]
    ordered.sort(key=lambda row: row["path"])
    for row in ordered:
        for key in COUNT_KEYS:
            if key in row:
                counts[key] += row[key]
        reasons.update(json.loads(row["reasons"]))
    counts["documents"] = counts["rows_kept"]
    if counts["rows_kept"] == 0:
        raise ValueError(
            f"ingest kept no document out of {counts['rows_read']} rows read from {len(ordered)} source(s); "
            f"reasons: {dict(reasons) or 'none (no input rows)'}"
        )
    if counts["rows_quarantined"] > cfg.max_quarantined_fraction * counts["rows_read"]:
        raise ValueError(
            f"{counts['rows_quarantined']} of {counts['rows_read']} rows quarantined "
            f"(> corpus.max_quarantined_fraction={cfg.max_quarantined_fraction}); see the catalog table `quarantine`"
        )
    files = sorted(lake / f for row in ordered for f in (row["lake_files"] or []))
    return IngestResult(snap, files, counts, dict(sorted(reasons.items())), ordered)


def _record_snapshot(con: duckdb.DuckDBPyConnection, result: IngestResult, optsfp: str, home: Path) -> None:
    batch = pa.table({"file": pa.array([f.name for f in result.files], pa.string())})
    con.register("snapshot_batch", batch)
    con.begin()
    try:
        sql.execute(con, "staging/del_snapshot", snapshot_id=result.snapshot_id)
        sql.execute(con, "staging/del_snapshot_files", snapshot_id=result.snapshot_id)
        sql.execute(con, "staging/ins_snapshot", snapshot_id=result.snapshot_id, options=optsfp,
                    counts=json.dumps(result.counts, sort_keys=True))
        sql.execute(con, "staging/ins_snapshot_files", snapshot_id=result.snapshot_id)
        _create_documents_view(con, home)  # the absolute path of this home: readable from any directory
        sql.execute(con, "staging/view_sentences")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.unregister("snapshot_batch")
