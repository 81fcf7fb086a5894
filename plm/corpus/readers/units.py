"""Decoding units strictly: bad bytes are marked (never replaced) so a unit is found bad and its bytes rebuilt."""

from __future__ import annotations

import codecs
import re
from typing import Any

MARK = re.compile(r"[\udc00-\udcff]+")


MARKED = [0]  # bad byte runs marked so far (any thread): readers skip the marker scan while unchanged


def _mark_bytes(exc: UnicodeError) -> tuple[str | bytes, int]:
    # Decoding: each bad byte becomes the lone surrogate U+DC00+byte, so a unit can be found bad
    # and its bytes rebuilt exactly (`reencode`). Strict decoding never yields lone surrogates.
    if isinstance(exc, UnicodeDecodeError):
        MARKED[0] += 1
        return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:exc.end]), exc.end
    raise exc


codecs.register_error("plm-mark", _mark_bytes)


def reencode(text: str, encoding: str) -> bytes:
    """The original bytes of text decoded with errors="plm-mark"."""
    out = bytearray()
    pos = 0
    for m in MARK.finditer(text):
        out += text[pos:m.start()].encode(encoding, "surrogatepass")
        out += bytes(ord(c) - 0xDC00 for c in m.group())
        pos = m.end()
    out += text[pos:].encode(encoding, "surrogatepass")
    return bytes(out)


def byte_safe(encoding: str) -> bool:
    """Whether the newline byte can only mean newline (ASCII-compatible codecs: UTF-8, CP949, Latin-*)."""
    name = codecs.lookup(encoding).name
    if name == "utf-8-sig":  # the BOM is stripped from the first unit; the rest is UTF-8
        return True
    return not name.startswith(("utf-16", "utf-32", "utf-7")) and "\n".encode(encoding) == b"\n"


ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes: blank means the same on both paths


def strip_newline(unit: Any) -> Any:
    if isinstance(unit, bytes):
        return unit[:-1] if unit.endswith(b"\n") else unit
    return unit[:-1] if unit.endswith("\n") else unit


def blank(unit: Any) -> bool:
    return not unit.strip()
