"""The bounded line reader: a source's decoded-or-byte units, never more than `corpus.max_record_bytes` in hand.

`bounded_lines` cuts any readline-able stream (paragraph text, CSV rows, UTF-16/32 lines);
`Source.text_lines` is its fast path for ASCII-compatible codecs (whole blocks decoded in one call),
with the same bounds and the same records (the fuzz harness and the reader tests hold both to that).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from plm.config import CorpusSpec
from plm.corpus.readers.records import BOM, QUARANTINE_RAW_BYTES, RawRecord, Rejected
from plm.corpus.readers.sniff import is_binary, sniff_encoding
from plm.corpus.readers.streams import BUFFER, Limits, head_bytes, open_binary
from plm.corpus.readers.units import ASCII_SPACE, MARK, blank, byte_safe, reencode, strip_newline

_BLOCK = 256 * 1024  # lines decoded per call in the fast path


def bounded_lines(readline: Callable[[int], Any], limit: int, newline: Any, bom: Any) -> Iterator[tuple[Any, bool]]:
    """(line, too_large) from `readline` (bytes or text), `bom` stripped from the first line: a line longer
    than `limit` units is not held, its first QUARANTINE_RAW_BYTES units stand for it and the rest is
    skipped in BUFFER-sized reads."""
    first = True
    while True:
        line = readline(limit + 1)
        if not line:
            return
        if first:
            first = False
            line = line.removeprefix(bom)
        if len(line) > limit and not line.endswith(newline):
            head = line[:QUARANTINE_RAW_BYTES]
            while True:
                more = readline(BUFFER)
                if not more or more.endswith(newline):
                    break
            yield head, True
        else:
            yield line, False


class Source:
    """A text source: its decoded-or-byte line stream and how to turn a unit into a record."""

    def __init__(self, path: Path, cfg: CorpusSpec, text_stream: bool = True,
                 byte_range: tuple[int, int] | None = None) -> None:
        self.path = path
        self.cap = cfg.max_record_bytes
        limits = Limits.of(cfg)
        prefix, whole = head_bytes(path, limits)
        self.encoding = cfg.encoding if cfg.encoding != "auto" else sniff_encoding(prefix, whole)
        self.byte_safe = byte_safe(self.encoding)
        if self.byte_safe and is_binary(prefix):
            raise Rejected("binary", f"binary content in the first {len(prefix)} bytes", prefix)
        self.reason = f"undecodable:{self.encoding}"
        self._codec = codecs.lookup(self.encoding).name
        if self._codec == "utf-8-sig":
            self._codec = "utf-8"
        self.first_char = prefix.decode(self._codec, errors="ignore").lstrip("\ufeff \t\r\n")[:1]
        if byte_range is not None and not self.byte_safe:
            raise ValueError(f"{path}: a byte range of a {self.encoding} file cannot be cut on newline bytes")
        self.binary = open_binary(path, limits, byte_range)
        self.stream: IO[Any] = self.binary
        if not self.byte_safe and text_stream:  # UTF-16/32: decode the stream, mark bad bytes, cut units on text
            self.stream = io.TextIOWrapper(self.binary, encoding=self.encoding, errors="plm-mark", newline="")
        self.at_start = byte_range is None or byte_range[0] == 0
        """Whether the stream starts at the file's first byte (a BOM there is the file's, not text)."""
        self._first = self.at_start

    def close(self) -> None:
        self.stream.close()

    def lines(self) -> Iterator[tuple[Any, bool]]:
        """(line, too_large) with at most `cap` units buffered; a longer line is skipped in chunks."""
        newline: Any = b"\n" if self.byte_safe else "\n"
        limit = self.cap if self.byte_safe else max(1, self.cap // 2)
        first, self._first = self._first, False
        bom = (BOM if self.byte_safe else "\ufeff") if first else newline[:0]
        return bounded_lines(self.stream.readline, limit, newline, bom)

    def text_lines(self) -> Iterator[tuple[str | None, Any, bool]]:
        """Non-blank lines as (text, None, False) when they decode, else (None, unit, too_large) for
        `record`: the stream is cut into ~256 KiB blocks of whole lines and each block is decoded in
        one call, which is several times faster than one call per line; a block that fails (or
        holds NUL) is decoded line by line, so results equal `lines()` + `record`."""
        if not self.byte_safe:
            for line, too_large in self.lines():
                if too_large or not blank(line):
                    yield None, strip_newline(line).rstrip("\r"), too_large
            return
        # read1: one raw read at a time, so lines decoded before a corrupt spot are not lost with it
        read, codec, cap = self.stream.read1, self._codec, self.cap
        carry = b""
        while True:
            chunk = read(_BLOCK)
            data = carry + chunk if carry else chunk
            if self._first and data:
                self._first = False
                data = data.removeprefix(BOM)
            end = data.rfind(b"\n") + 1 if chunk else len(data)
            if end == 0:  # no newline yet: the line continues in the next chunk
                if len(data) > cap:
                    yield None, data[:QUARANTINE_RAW_BYTES], True
                    carry = self._skip_line(read)
                    continue
                if not chunk:
                    return
                carry = data
                continue
            block, carry = data[:end], data[end:]
            try:
                if b"\x00" in block:
                    raise UnicodeDecodeError(codec, b"", 0, 0, "NUL")
                lines = block.decode(codec).split("\n")
            except UnicodeDecodeError:
                for raw in block.split(b"\n"):
                    if raw.strip():
                        yield None, raw.rstrip(b"\r"), len(raw) > cap
                lines = []
            for line in lines:
                if line.strip(ASCII_SPACE):
                    if len(line) > cap // 4 and len(line.encode(codec)) > cap:  # as a block that fails: no CR
                        yield None, line.rstrip("\r").encode(codec)[:QUARANTINE_RAW_BYTES], True
                    else:
                        yield line.rstrip("\r"), None, False
            if not chunk:
                return

    def _skip_line(self, read: Callable[[int], bytes]) -> bytes:
        """Discard the rest of an over-long line; returns what follows its newline."""
        while True:
            chunk = read(_BLOCK)
            if not chunk:
                return b""
            cut = chunk.find(b"\n")
            if cut >= 0:
                return chunk[cut + 1 :]

    def read_all(self) -> tuple[Any, bool]:
        """The whole stream when it fits in `cap`, else (its head, True)."""
        limit = self.cap if self.byte_safe else max(1, self.cap // 2)
        data = self.stream.read(limit + 1)
        data = data.removeprefix(BOM) if self.byte_safe else data.removeprefix("\ufeff")
        if len(data) > limit:
            return data[:QUARANTINE_RAW_BYTES], True
        return data, False

    def raw(self, unit: Any) -> bytes:
        return unit if isinstance(unit, bytes) else reencode(unit, self._codec)

    def decode(self, unit: Any) -> tuple[str | None, str | None]:
        """(text, None) or (None, reason) for one unit (bytes or marked text)."""
        if isinstance(unit, bytes):
            if b"\x00" in unit:
                return None, "nul_bytes"
            try:
                return unit.decode(self._codec), None
            except UnicodeDecodeError:
                return None, self.reason
        if MARK.search(unit):
            return None, self.reason
        if "\x00" in unit:
            return None, "nul_bytes"
        return unit, None

    def record(self, position: int, unit: Any, too_large: bool = False) -> RawRecord:
        if too_large:
            return RawRecord(position, None, self.raw(unit), "too_large")
        text, reason = self.decode(unit)
        if reason is not None:
            return RawRecord(position, None, self.raw(unit), reason)
        return RawRecord(position, None, text)  # type: ignore[arg-type]
