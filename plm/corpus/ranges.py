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

`count_records` counts a range's records on its bytes (numpy, no decoding), so each range's map job can number its
records from the file's start; the commit checks every count against the map outputs (a whitespace-only line longer
than `corpus.max_record_bytes` is a record the count misses) and renumbers a range whose count was off.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from plm.config import CorpusSpec
from plm.corpus.readers import RANGED_FORMATS, compression, is_binary, sniff_encoding
from plm.corpus.readers.records import BOM
from plm.corpus.readers.streams import SNIFF_BYTES, Limits, head_bytes
from plm.corpus.readers.units import ASCII_SPACE, byte_safe

_CHUNK = 1 << 20
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")
"""A newline, then a blank line through its newline: the match ends where the next paragraph may start."""
_SPACE = re.compile(rb"[ \t\r\x0b\x0c]*")
_NOT_SPACE = np.ones(256, bool)
_NOT_SPACE[list(ASCII_SPACE.encode())] = False
"""Bytes that make a line non-blank (what bytes.strip() keeps)."""
_COUNT_BLOCK = 4 << 20


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


def count_records(path: Path, fmt: str, cfg: CorpusSpec, byte_range: tuple[int, int]) -> int:
    """The records the reader gives for `byte_range` of a `splittable` file, counted on its bytes: lines holding a
    byte that is not an ASCII space (a leading BOM of the file dropped), or, for paragraphs, runs of such lines.
    Reads 4 MiB at a time."""
    start, end = byte_range
    paragraphs = fmt == "txt" and cfg.text_unit == "paragraph"
    count, line, previous = 0, False, False  # line: the unfinished line has a non-space byte; previous: the last line did
    with open(path, "rb") as f:
        f.seek(start)
        left, first = end - start, start == 0
        while left > 0:
            block = f.read(min(_COUNT_BLOCK, left))
            if not block:
                break
            left -= len(block)
            if first:
                block, first = block.removeprefix(BOM), False
            data = np.frombuffer(block, np.uint8)
            starts = np.concatenate(([0], np.flatnonzero(data == 10) + 1))  # each piece runs through its newline
            last_empty = starts[-1] == len(data)  # the block ends with a newline: nothing runs on
            filled = np.logical_or.reduceat(_NOT_SPACE[data], starts[:-1] if last_empty else starts)
            if last_empty:
                filled = np.append(filled, False)
            filled[0] |= line
            done, line = filled[:-1], bool(filled[-1])  # the last piece runs on into the next block
            if paragraphs:
                count += int(np.count_nonzero(done & ~np.concatenate(([previous], done[:-1]))))
                previous = bool(done[-1]) if len(done) else previous
            else:
                count += int(np.count_nonzero(done))
    if line:  # a last line without its newline
        count += 1 if not paragraphs or not previous else 0
    return count
