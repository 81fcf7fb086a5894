"""Plain text: whole file, blank-line paragraphs or lines."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from plm.config import CorpusSpec
from plm.corpus.readers.lines import Source, bounded_lines
from plm.corpus.readers.records import BOM, QUARANTINE_RAW_BYTES, RawRecord
from plm.corpus.readers.streams import BUFFER
from plm.corpus.readers.units import blank, strip_newline

_BLOCK = 256 * 1024  # bytes read per call by the block paragraph reader
_BLANK_LINES = rb"(?:[ \t\r\x0b\x0c]*\n)+"
_BLANK_RUN = re.compile(rb"\n(" + _BLANK_LINES + rb")")
"""A newline, then (group 1) one or more blank lines (what bytes.strip() empties) through their newlines; the
leading newline (a literal) lets the regex engine skip to candidates fast."""
_LEADING_BLANKS = re.compile(_BLANK_LINES)
_BLANK_SPLIT = re.compile(rb"\n" + _BLANK_LINES)
"""`_BLANK_RUN` as a split pattern: what lies between two of its matches is one paragraph."""
_STATELESS = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252", "cp949", "euc_kr"})
"""Codecs (`codecs.lookup(...).name`) that decode a concatenation as the concatenation of the decoded parts (no
shift state, as ISO-2022 has), so paragraphs can be decoded joined."""


def read_text(path: Path, cfg: CorpusSpec, byte_range: tuple[int, int] | None = None) -> Iterator[RawRecord]:
    """Plain text cut into `corpus.text_unit` units: whole file, blank-line paragraphs or lines.

    Blank units are not records. Units are cut before decoding (on bytes for ASCII-compatible
    codecs, where a newline byte never occurs inside a multi-byte sequence), so one bad byte
    quarantines only its own unit. `byte_range`: only those bytes, cut where a unit starts
    (`plm.corpus.ranges`); positions count from the range's first unit.
    """
    if byte_range is not None and cfg.text_unit == "file":
        raise ValueError(f"{path}: corpus.text_unit=file reads a file whole, not a byte range of it")
    src = Source(path, cfg, byte_range=byte_range)
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
        yield from _Paragraphs(src).records()
    finally:
        src.close()


class _Paragraphs:
    """The blank-line paragraphs of a source, at most `cap` bytes of one in hand.

    The specification is `line`: one (line, too_large) of `Source.lines()` at a time. For ASCII-compatible
    codecs `records` reads blocks of whole lines instead and hands each run of non-blank lines to `run`, which
    is `line` over those lines at once; that is exact while every line of a block is short enough for
    `Source.lines()` to return it whole (never too large), so the first longer line, and a leading BOM,
    hand the rest of the stream to `line` (the bytes already read first)."""

    def __init__(self, src: Source) -> None:
        self.src, self.cap = src, src.cap
        self.position = 0
        self.parts: list[Any] = []
        self.size, self.over, self.head = 0, False, None

    def _take(self) -> RawRecord | None:
        """The paragraph in hand, if any, as a record; the state reset for the next."""
        rec = None
        if self.parts or self.over:
            if self.over:
                rec = self.src.record(self.position, self.head, True)
            else:
                rec = self.src.record(self.position, strip_newline(self.parts[0][:0].join(self.parts)))
            self.position += 1
        self.parts, self.size, self.over, self.head = [], 0, False, None
        return rec

    def line(self, line: Any, too_large: bool) -> RawRecord | None:
        if not too_large and blank(line):
            return self._take()
        self.size += len(line)
        if too_large or self.size > self.cap:
            if not self.over:
                self.over = True
                joined = line[:0].join(self.parts) + line
                self.head = joined[:QUARANTINE_RAW_BYTES]
            self.parts = []
        else:
            self.parts.append(line)
        return None

    def run(self, lines: bytes) -> None:
        """`line` for each line of `lines` (non-blank lines, none too large, the last one ending in a newline
        unless the stream ends there)."""
        before, self.size = self.size, self.size + len(lines)
        if self.over:
            return
        if self.size <= self.cap:
            self.parts.append(lines)
            return
        # the line that crosses the cap is the one holding byte cap - before; the head stops after it
        cut = lines.find(b"\n", self.cap - before) + 1 or len(lines)
        self.over = True
        self.head = (b"".join(self.parts) + lines[:cut])[:QUARANTINE_RAW_BYTES]
        self.parts = []

    def records(self) -> Iterator[RawRecord]:
        src = self.src
        if not src.byte_safe:
            yield from self._by_line(src.lines())
            return
        stream = src.stream
        start = stream.peek(len(BOM))[: len(BOM)] if src.at_start else b""
        if start and (start.startswith(BOM) or BOM.startswith(start)):  # the BOM belongs to the first line: by line
            yield from self._by_line(src.lines())
            return
        longest = min(self.cap, _BLOCK)  # lines up to this length (newline included) are never too large
        carry = b""
        while True:
            chunk = stream.read1(_BLOCK)
            data = carry + chunk if carry else chunk
            end = data.rfind(b"\n") + 1
            if chunk and end == 0 and len(data) <= longest:  # no newline yet: the line continues in the next chunk
                carry = data
                continue
            if len(data) > longest and (end == 0 or max(map(len, data.split(b"\n"))) >= longest):
                yield from self._by_line(_lines_after(data, stream, self.cap))
                return
            block, carry = data[:end], data[end:]
            lead = _LEADING_BLANKS.match(block)  # blank lines at the block's start (after a newline or none)
            if lead:
                rec = self._take()
                if rec is not None:
                    yield rec
            pos = lead.end() if lead else 0
            record, cap = src.record, self.cap
            if len(block) <= cap and src._codec in _STATELESS:  # no paragraph of it can be too large
                yield from self._block(block, pos)
            else:
                for m in _BLANK_RUN.finditer(block, pos):
                    start = m.start(1)  # block[pos:start]: lines, never empty (a newline before blank lines ends a line)
                    if self.parts or self.over or start - pos > cap:
                        self.run(block[pos:start])
                        rec = self._take()
                        if rec is not None:
                            yield rec
                    else:  # a whole paragraph inside the block: `run` + `_take` in short
                        yield record(self.position, block[pos : start - 1])
                        self.position += 1
                    pos = m.end()
                if pos < len(block):
                    self.run(block[pos:])
            if not chunk:  # the end: a last line without a newline
                if carry:
                    rec = self._take() if blank(carry) else self.run(carry)
                    if rec is not None:
                        yield rec
                break
        rec = self._take()
        if rec is not None:
            yield rec

    def _block(self, block: bytes, pos: int) -> Iterator[RawRecord]:
        """The records of `block[pos:]` (whole lines, no paragraph of it over the cap), as the loop in `records`
        yields them, with one split and one decode for all its whole paragraphs: a paragraph never holds a blank
        line, so the paragraphs joined by two newlines decode (UTF-8 and other stateless codecs) and split back
        exactly; a block whose paragraphs hold a NUL or a bad byte is decoded paragraph by paragraph."""
        src = self.src
        pieces = _BLANK_SPLIT.split(block[pos:] if pos else block)
        *whole, tail = pieces
        if whole and (self.parts or self.over):  # the paragraph the previous block left in hand ends here
            self.run(whole[0] + b"\n")
            rec = self._take()
            if rec is not None:
                yield rec
            whole = whole[1:]
        if whole:
            joined = b"\n\n".join(whole)
            texts = None
            if b"\x00" not in joined:
                try:
                    texts = joined.decode(src._codec).split("\n\n")
                except UnicodeDecodeError:
                    pass
            position = self.position
            if texts is not None:
                for i, text in enumerate(texts, position):
                    yield RawRecord(i, None, text)
            else:
                for i, unit in enumerate(whole, position):
                    yield src.record(i, unit)
            self.position = position + len(whole)
        if tail:
            self.run(tail)

    def _by_line(self, lines: Iterator[tuple[Any, bool]]) -> Iterator[RawRecord]:
        for line, too_large in lines:
            rec = self.line(line, too_large)
            if rec is not None:
                yield rec
        rec = self._take()
        if rec is not None:
            yield rec


class _Prefixed(io.RawIOBase):
    """`head`, then the rest of `stream`: the bytes a block reader took, handed back to a line reader."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head, self._stream = memoryview(head), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _lines_after(head: bytes, stream: IO[bytes], cap: int) -> Iterator[tuple[bytes, bool]]:
    """`Source.lines()` over `head` followed by the rest of `stream` (no BOM: it was checked for)."""
    return bounded_lines(io.BufferedReader(_Prefixed(head, stream), BUFFER).readline, cap, b"\n", b"")
