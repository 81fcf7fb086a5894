"""Plain text: whole file, blank-line paragraphs or lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plm.config import CorpusSpec
from plm.corpus.readers.lines import Source
from plm.corpus.readers.records import QUARANTINE_RAW_BYTES, RawRecord
from plm.corpus.readers.units import blank, strip_newline

def read_text(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """Plain text cut into `corpus.text_unit` units: whole file, blank-line paragraphs or lines.

    Blank units are not records. Units are cut before decoding (on bytes for ASCII-compatible
    codecs, where a newline byte never occurs inside a multi-byte sequence), so one bad byte
    quarantines only its own unit.
    """
    src = Source(path, cfg)
    try:
        if cfg.text_unit == "file":
            data, too_large = src.read_all()
            if too_large or not blank(data):
                yield src.record(0, data, too_large)
            return
        position = 0
        if cfg.text_unit == "line":
            for text, unit, too_large in src.text_lines():
                yield RawRecord(position, None, text) if text is not None else src.record(position, unit, too_large)
                position += 1
            return
        parts: list[Any] = []
        size, over, head = 0, False, None
        for line, too_large in src.lines():
            if not too_large and blank(line):
                if parts or over:
                    yield _paragraph(src, position, parts, over, head)
                    position += 1
                parts, size, over, head = [], 0, False, None
                continue
            size += len(line)
            if too_large or size > src.cap:
                if not over:
                    over = True
                    joined = line[:0].join(parts) + line
                    head = joined[:QUARANTINE_RAW_BYTES]
                parts = []
            else:
                parts.append(line)
        if parts or over:
            yield _paragraph(src, position, parts, over, head)
    finally:
        src.close()


def _paragraph(src: Source, position: int, parts: list[Any], over: bool, head: Any) -> RawRecord:
    if over:
        return src.record(position, head, True)
    return src.record(position, strip_newline(parts[0][:0].join(parts)))
