"""Byte ranges of a large text file, cut where a unit starts, so that ingest maps one file on several workers.

A file is cut when it is larger than `corpus.range_bytes`, uncompressed (a compressed stream cannot be entered
mid-way), `txt` read by line or paragraph or `jsonl`, and its codec cuts units on newline bytes (every
ASCII-compatible codec: a newline byte never occurs inside a multi-byte sequence; UTF-16/32 files are read
whole). CSV (quoted newlines), JSON arrays, MediaWiki dumps, Parquet and `text_unit: file` are read whole.

Cut `i` is the first unit boundary at or after byte `i * range_bytes`: for lines, the byte after a newline; for
paragraphs, the byte after a blank line (a newline, then only spaces, tabs, CR, VT or FF up to the next newline:
what the paragraph reader treats as blank), so no unit ever spans two ranges and each range, read on its own,
gives exactly the records the whole file gives there (a file with few boundaries gets fewer, larger ranges).
The cuts depend on the file's bytes and `range_bytes` alone, never on the workers.
"""

from __future__ import annotations

import re
from pathlib import Path

from plm.config import CorpusSpec
from plm.corpus.readers import RANGED_FORMATS, compression, is_binary, sniff_encoding
from plm.corpus.readers.streams import SNIFF_BYTES, Limits, head_bytes
from plm.corpus.readers.units import byte_safe

_CHUNK = 1 << 20
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")
"""A newline, then a blank line through its newline: the match ends where the next paragraph may start."""
_SPACE = re.compile(rb"[ \t\r\x0b\x0c]*")


def splittable(path: Path, fmt: str, cfg: CorpusSpec) -> bool:
    """Whether `path` (of format `fmt`) can be read range by range under `cfg` (see the module docstring)."""
    if fmt not in RANGED_FORMATS or (fmt == "txt" and cfg.text_unit == "file") or compression(path) is not None:
        return False
    prefix, whole = head_bytes(path, Limits.of(cfg), SNIFF_BYTES)
    encoding = cfg.encoding if cfg.encoding != "auto" else sniff_encoding(prefix, whole)
    return byte_safe(encoding) and not is_binary(prefix)


def plan_ranges(path: Path, fmt: str, cfg: CorpusSpec, size: int) -> list[tuple[int, int]] | None:
    """The (start, end) byte ranges ingest maps `path` in, in file order, covering it exactly; None when the file is
    read whole (not larger than `corpus.range_bytes`, or not `splittable`)."""
    step = cfg.range_bytes
    if size <= step or not splittable(path, fmt, cfg):
        return None
    paragraphs = fmt == "txt" and cfg.text_unit == "paragraph"
    cuts = [0]
    with open(path, "rb") as f:
        target = step
        while target < size:
            cut = _boundary(f, target, paragraphs)
            if cut is None or cut >= size:
                break
            cuts.append(cut)
            target = max(cut, target) + step
    if len(cuts) == 1:
        return None
    return list(zip(cuts, [*cuts[1:], size]))


def _boundary(f, at: int, paragraphs: bool) -> int | None:
    """The first unit boundary at or after byte `at` (> 0), None when the file has none."""
    f.seek(at - 1)
    base, carry = at - 1, b""  # carry: a newline and the blank bytes after it, ending the last chunk
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return None
        data = carry + chunk if carry else chunk
        start = base - len(carry)
        if not paragraphs:
            i = data.find(b"\n")
            if i >= 0:
                return start + i + 1
        else:
            m = _BLANK_LINE.search(data)
            if m:
                return start + m.end()
            last = data.rfind(b"\n")
            carry = data[last:] if last >= 0 and _SPACE.fullmatch(data, last + 1) else b""
        base += len(chunk)
