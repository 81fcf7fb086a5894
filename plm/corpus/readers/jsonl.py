"""JSON Lines (one record per line) and JSON arrays (streamed item by item)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from plm.config import CorpusSpec
from plm.corpus.readers.lines import Source
from plm.corpus.readers.records import BOM, RawRecord, pick_fields

def _json_record(position: int, obj: Any, raw: Callable[[], bytes], cfg: CorpusSpec) -> RawRecord:
    text = obj.get(cfg.jsonl_text_field) if type(obj) is dict else None
    if type(text) is not str:
        return RawRecord(position, None, raw(), "missing_field")
    if "\x00" in text:
        return RawRecord(position, None, raw(), "nul_bytes")
    if cfg.id_field is None and not cfg.metadata_fields:  # the common case, without _pick's work
        title = obj.get("title")
        return RawRecord(position, title if type(title) is str else None, text)
    title, source_id, metadata = pick_fields(obj, cfg)
    return RawRecord(position, title, text, None, source_id, metadata)


_DECODER = json.JSONDecoder()


def _loads(line: str) -> Any:
    """json.loads without its per-call wrapper work (raw_decode plus a trailing-space check)."""
    if line[:1] in (" ", "\t"):
        line = line.lstrip(" \t")
    obj, end = _DECODER.raw_decode(line)
    if end != len(line) and line[end:].strip():
        raise ValueError(f"extra data after the JSON value at column {end}")
    return obj


_INVALID = object()


def read_jsonl(path: Path, cfg: CorpusSpec, byte_range: tuple[int, int] | None = None) -> Iterator[RawRecord]:
    """One record per non-blank line; text in `corpus.jsonl_text_field`, optional `title`, id and metadata fields.
    `byte_range`: only those bytes, cut after a newline (`plm.corpus.ranges`); positions count from its first line."""
    src = Source(path, cfg, byte_range=byte_range)
    try:
        position = 0
        for text, unit, too_large in src.text_lines():
            # a unit handed over undecoded (UTF-16/32, or a block with a bad line in it) is JSON once it decodes
            if text is None and (too_large or src.decode(unit)[1] not in (None, "nul_bytes")):
                yield src.record(position, unit, too_large)  # too large or undecodable
            else:
                line = text if text is not None else unit if isinstance(unit, str) else unit.decode(src._codec, "replace")
                try:
                    obj = _loads(line)
                except ValueError:
                    obj = _INVALID
                if obj is _INVALID:  # a raw NUL byte is invalid JSON too; `line` is the unit's exact text here
                    yield RawRecord(position, None, src.raw(line + "\n"), "invalid_json")
                else:
                    yield _json_record(position, obj, lambda line=line: src.raw(line + "\n"), cfg)
            position += 1
    finally:
        src.close()


def read_json(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """A JSON array of records, streamed item by item with ijson (a single object is one record).

    A parse error ends the file with one `invalid_json` row (an array cannot be resynchronised).
    """
    import ijson

    src = Source(path, cfg, text_stream=False)
    position = 0
    try:
        stream: Any = src.binary
        if src._codec == "utf-8":
            if src.binary.peek(3)[:3] == BOM:
                src.binary.read(3)
        else:  # ijson parses UTF-8 bytes; other codecs are decoded strictly on the way
            stream = io.TextIOWrapper(src.binary, encoding=src.encoding, errors="strict")
        items = ijson.items(stream, "" if src.first_char == "{" else "item", use_float=True)
        for obj in items:
            yield _json_record(position, obj, lambda obj=obj: json.dumps(obj, ensure_ascii=False).encode(), cfg)
            position += 1
    except UnicodeDecodeError as exc:
        yield RawRecord(position, None, str(exc).encode(), src.reason)
    except ijson.JSONError as exc:
        yield RawRecord(position, None, str(exc).encode(), "invalid_json")
    finally:
        src.close()
