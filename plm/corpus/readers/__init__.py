"""Readers: one generator of raw records per source format, over guarded, decompressed bytes.

A reader never drops or repairs input. Each record is either a decoded document text or, when it
cannot be used, raw bytes with a stable quarantine reason, so that every input unit is accounted
for. Reasons (`QUARANTINE_REASONS`):

- `empty_file`: the source yields no record at all (0 bytes, whitespace only, header-only CSV,
  a dump without articles): one row, so the source still shows up with rows_read = 1.
- `binary`: the decoded prefix looks binary (NUL or control bytes): one row, the file is not read.
- `nul_bytes`: a unit (line, paragraph, file, row) contains NUL bytes.
- `undecodable:<encoding>`: a unit that is not valid in the source's encoding (decoding is strict).
- `too_large`: a unit over `corpus.max_record_bytes`; it is skipped in bounded chunks.
- `invalid_json`, `missing_field`: a JSON row that does not parse, or lacks a string text field.
- `bad_columns`: a CSV row whose column count differs from the header's; `invalid_csv`: a row the
  csv module rejects.
- `invalid_xml`: a MediaWiki dump that stops parsing (pages before it are kept).
- `corrupt_archive`: a truncated or corrupt compressed stream (or Parquet file); records before the
  damage are kept and one row records the error.
- `decompression_bomb`: decompressed/compressed ratio over `corpus.max_compression_ratio` once past
  `corpus.compression_ratio_min_bytes`, or more than `corpus.max_decompressed_bytes` in all.

Quarantined raw bytes are capped at `QUARANTINE_RAW_BYTES` (the first 64 KiB of the unit).
Every reader streams: memory is a few MiB of buffers plus the unit in hand, at most a few times
`corpus.max_record_bytes` (a 500 MB text file read by line peaks at ~3 MB over the interpreter).
Exceptions: one JSON-array item and one MediaWiki page are parsed whole before their size is known.

Modules, one responsibility each: `roots` (allowed roots), `streams` (opening, decompression, bomb
caps), `sniff` (format, codec, binary), `units` (strict decoding with marked bad bytes), `lines` (the
one bounded line reader, `Source`), `records` (record and reason types), and the per-format readers
`text`, `jsonl`, `tables` (CSV, Parquet), `wiki` (MediaWiki XML). Import from this package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from plm.config import CorpusSpec
from plm.corpus.readers.jsonl import read_json, read_jsonl
from plm.corpus.readers.records import QUARANTINE_RAW_BYTES, QUARANTINE_REASONS, RawRecord, Rejected
from plm.corpus.readers.roots import check_allowed, default_roots
from plm.corpus.readers.sniff import detect_encoding, detect_format, is_binary, sniff_encoding
from plm.corpus.readers.streams import Limits, compression, open_binary
from plm.corpus.readers.tables import read_csv, read_parquet
from plm.corpus.readers.text import read_text
from plm.corpus.readers.wiki import read_mediawiki, wiki_plaintext

__all__ = [
    "FORMATS", "QUARANTINE_RAW_BYTES", "RANGED_FORMATS", "QUARANTINE_REASONS", "Limits", "RawRecord", "Rejected", "check_allowed",
    "compression", "default_roots", "detect_encoding", "detect_format", "is_binary", "open_binary", "read_csv",
    "read_json", "read_jsonl", "read_mediawiki", "read_parquet", "read_records", "read_text", "sniff_encoding",
    "wiki_plaintext",
]

FORMATS = ("txt", "jsonl", "json", "mediawiki", "csv", "parquet")


_READERS: dict[str, Callable[[Path, CorpusSpec], Iterator[RawRecord]]] = {
    "txt": read_text, "jsonl": read_jsonl, "json": read_json, "mediawiki": read_mediawiki,
    "csv": read_csv, "parquet": read_parquet,
}


RANGED_FORMATS = ("txt", "jsonl")
"""Formats whose readers take a `byte_range` (units cut on newline bytes)."""


def read_records(
    path: Path, fmt: str, cfg: CorpusSpec | None = None, byte_range: tuple[int, int] | None = None
) -> Iterator[RawRecord]:
    """The single entry point: every record of `path` read as `fmt` under `cfg` (default spec).

    Checks `corpus.allowed_roots` first (PermissionError). Damage that ends a file early (corrupt
    archive, bomb, binary) becomes one final quarantine row; a file with no record at all yields one
    `empty_file` row; quarantined raw bytes are capped at QUARANTINE_RAW_BYTES.

    `byte_range` (start, end): the records of those bytes of an uncompressed `txt`/`jsonl` file, cut where a unit
    starts (`plm.corpus.ranges.plan_ranges`), positions counted from the range's first record; a range with no
    record yields nothing (whether the whole file is empty is for its caller to say).
    """
    cfg = cfg or CorpusSpec()
    if fmt not in _READERS:
        raise ValueError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if byte_range is not None and fmt not in RANGED_FORMATS:
        raise ValueError(f"{path}: {fmt} is read whole, not by byte range (ranged formats: {', '.join(RANGED_FORMATS)})")
    resolved = check_allowed(path, cfg.allowed_roots)
    if byte_range is not None:
        return _guarded(resolved, partial(_READERS[fmt], byte_range=byte_range), cfg, whole=False)  # type: ignore[call-arg]
    return _guarded(resolved, _READERS[fmt], cfg)


def _guarded(
    path: Path, reader: Callable[[Path, CorpusSpec], Iterator[RawRecord]], cfg: CorpusSpec, whole: bool = True
) -> Iterator[RawRecord]:
    position = 0
    any_record = False
    try:
        for rec in reader(path, cfg):
            any_record = True
            position = rec.position + 1
            if rec.reason is not None and isinstance(rec.raw, bytes) and len(rec.raw) > QUARANTINE_RAW_BYTES:
                rec = rec._replace(raw=rec.raw[:QUARANTINE_RAW_BYTES])
            yield rec
    except Rejected as exc:
        any_record = True
        yield RawRecord(position, None, exc.raw[:QUARANTINE_RAW_BYTES], exc.reason)
    if not any_record and whole:
        yield RawRecord(0, None, b"", "empty_file")
