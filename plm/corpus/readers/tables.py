"""Tables: CSV/TSV rows over the bounded line reader, Parquet rows in row-group batches."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from plm.config import CorpusSpec
from plm.corpus.readers.lines import Source, bounded_lines
from plm.corpus.readers.records import QUARANTINE_RAW_BYTES, RawRecord, Rejected, pick_fields
from plm.corpus.readers.streams import COMPRESSED_SUFFIXES
from plm.corpus.readers.units import MARK, MARKED, reencode

_TOO_LARGE_ROW = "\n"


class _CsvLines:
    """Text lines for csv.reader, each at most `cap` characters: a longer physical line is skipped
    and replaced by an empty line, with `skipped` set so the row can be quarantined `too_large`."""

    def __init__(self, src: Source, text: IO[str]) -> None:
        self.src, self.text = src, text
        self.limit = max(1, src.cap // 2) if not src.byte_safe else src.cap
        self.skipped: str | None = None

    def __iter__(self) -> Iterator[str]:
        for line, too_large in bounded_lines(self.text.readline, self.limit, "\n", "\ufeff"):
            if too_large:
                self.skipped = line
                yield _TOO_LARGE_ROW
            else:
                yield line


def read_csv(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """One record per CSV/TSV row (header required); text in column `corpus.jsonl_text_field`.

    The delimiter is `corpus.csv_delimiter`, else sniffed from the head (tab for `.tsv`). Rows
    with another column count than the header are `bad_columns`; quarantined rows keep their
    bytes as re-written by the csv module (the physical bytes of a multi-line row are not kept).
    """
    src = Source(path, cfg, text_stream=False)
    marked = MARKED[0]  # before anything is decoded (the wrapper decodes ahead of the rows)
    text = io.TextIOWrapper(src.binary, encoding=src.encoding, errors="plm-mark", newline="")
    try:
        delimiter = cfg.csv_delimiter or _sniff_delimiter(path, src.binary.peek(65536)[:65536], src.encoding)
        csv.field_size_limit(max(csv.field_size_limit(), cfg.max_record_bytes))
        lines = _CsvLines(src, text)
        reader = csv.reader(lines, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        if cfg.jsonl_text_field not in header:
            raise ValueError(f"{path}: no column '{cfg.jsonl_text_field}' (corpus.jsonl_text_field); columns: {header}")
        position = 0
        field, width = header.index(cfg.jsonl_text_field), len(header)
        title_at = header.index("title") if "title" in header else None
        plain = cfg.id_field is None and not cfg.metadata_fields

        def raw(row: list[str]) -> bytes:
            out = io.StringIO()
            csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(row)
            return reencode(out.getvalue(), src._codec)

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                reason = "too_large" if "field larger" in str(exc) else "invalid_csv"
                yield RawRecord(position, None, str(exc).encode(), reason)
                position += 1
                continue
            if lines.skipped is not None:
                yield RawRecord(position, None, reencode(lines.skipped, src._codec), "too_large")
                lines.skipped = None
            elif not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            elif len(row) != width:
                yield RawRecord(position, None, raw(row), "bad_columns")
            elif MARKED[0] != marked and any(MARK.search(v) for v in row):
                yield RawRecord(position, None, raw(row), src.reason)
            elif "\x00" in row[field]:
                yield RawRecord(position, None, raw(row), "nul_bytes")
            elif plain:
                yield RawRecord(position, row[title_at] if title_at is not None else None, row[field])
            else:
                title, source_id, metadata = pick_fields(dict(zip(header, row)), cfg)
                yield RawRecord(position, title, row[field], None, source_id, metadata)
            position += 1
    finally:
        text.close()


def _sniff_delimiter(path: Path, head: bytes, encoding: str) -> str:
    """The candidate (`,` tab `;` `|`) that occurs the same non-zero number of times on most head
    lines; the extension decides when none does (tab for `.tsv`, else comma)."""
    name = path.name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    lines = [line for line in head.decode(encoding, errors="ignore").splitlines()[:50] if line.strip()]
    if len(lines) > 1 and len(head) >= 65536:
        lines = lines[:-1]  # possibly cut
    best, best_score = None, 0.0
    for delimiter in (",", "\t", ";", "|"):
        counts = [line.count(delimiter) for line in lines]
        mode = max(set(counts), key=counts.count) if counts else 0
        score = counts.count(mode) / len(counts) if mode else 0.0
        if score > best_score:
            best, best_score = delimiter, score
    return best or ("\t" if name.endswith(".tsv") else ",")


def read_parquet(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """One record per Parquet row, read in row-group batches; text in column `corpus.jsonl_text_field`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    field = cfg.jsonl_text_field
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise Rejected("corrupt_archive", f"unreadable Parquet file: {exc}") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise ValueError(f"{path}: no column '{field}' (corpus.jsonl_text_field); columns: {names}")
    wanted = [field, "title", cfg.id_field or "", *cfg.metadata_fields]
    columns = list(dict.fromkeys(c for c in wanted if c and c in names))
    position = 0
    try:
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            for row in batch.to_pylist():
                text = row[field]
                if not isinstance(text, str):
                    yield RawRecord(position, None, json.dumps(row, ensure_ascii=False, default=str).encode(), "missing_field")
                elif len(text) * 4 > cfg.max_record_bytes and len(text.encode()) > cfg.max_record_bytes:
                    yield RawRecord(position, None, text.encode()[:QUARANTINE_RAW_BYTES], "too_large")
                elif "\x00" in text:
                    yield RawRecord(position, None, text.encode(), "nul_bytes")
                else:
                    title, source_id, metadata = pick_fields(row, cfg)
                    yield RawRecord(position, title, text, None, source_id, metadata)
                position += 1
    except (pa.ArrowException, OSError) as exc:
        raise Rejected("corrupt_archive", f"corrupt Parquet file: {exc}") from None
