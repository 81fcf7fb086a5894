"""Readers: one generator of raw records per source format, over transparently decompressed bytes.

A reader never drops or repairs input. Each record is either a decoded document text or, when it
cannot be used, the raw bytes with a quarantine reason (`undecodable`, `invalid_json`,
`missing_field`, `invalid_xml`), so that every input unit is accounted for.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, NamedTuple

FORMATS = ("txt", "jsonl", "mediawiki", "csv", "parquet")
BOM = b"\xef\xbb\xbf"

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
]
_COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz", ".zst"}


class RawRecord(NamedTuple):
    """One input unit. `raw` is text when usable; bytes (kept verbatim) when `reason` quarantines it."""

    position: int
    title: str | None
    raw: str | bytes
    reason: str | None = None


def compression(path: Path) -> str | None:
    """Compression by magic bytes: "gz", "bz2", "xz", "zst" or None."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def open_binary(path: Path) -> IO[bytes]:
    """The decompressed byte stream of `path`."""
    kind = compression(path)
    if kind == "gz":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zst":
        try:
            import zstandard
        except ImportError:
            raise ValueError(f"{path}: zstd-compressed, but the `zstandard` module is not installed") from None
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def detect_format(path: Path) -> str:
    """One of FORMATS, from the decompressed content first and the extension second."""
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    with open_binary(path) as f:
        head = f.read(65536)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSED_SUFFIXES]
    ext = suffixes[-1] if suffixes else ""
    if b"<mediawiki" in head[:4096]:
        return "mediawiki"
    if ext == ".parquet":
        return "parquet"
    if ext in {".jsonl", ".ndjson"}:
        return "jsonl"
    if ext in {".csv", ".tsv"}:
        return "csv"
    first = head.removeprefix(BOM).lstrip().split(b"\n", 1)[0].strip()
    if first.startswith(b"{") and first.endswith(b"}"):
        try:
            json.loads(first)
            return "jsonl"
        except ValueError:
            pass
    return "txt"


def detect_encoding(path: Path, fmt: str) -> str:
    """"utf-8-sig" when the decompressed stream starts with a BOM, else "utf-8" (Parquet: "binary")."""
    if fmt == "parquet":
        return "binary"
    with open_binary(path) as f:
        return "utf-8-sig" if f.read(3) == BOM else "utf-8"


def _decode(raw: bytes) -> str | None:
    try:
        return raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _record(position: int, title: str | None, raw: bytes) -> RawRecord:
    text = _decode(raw)
    return RawRecord(position, title, raw, "undecodable") if text is None else RawRecord(position, title, text)


_PARAGRAPH = re.compile(rb"\r?\n(?:[ \t]*\r?\n)+")


def read_text(path: Path, unit: Literal["file", "paragraph", "line"] = "file") -> Iterator[RawRecord]:
    """Plain text cut into whole-file, blank-line-paragraph or line units; blank units are not records.

    Units are cut on bytes (a newline byte never occurs inside a UTF-8 sequence), so one bad byte
    quarantines only its own unit.
    """
    with open_binary(path) as f:
        data = f.read().removeprefix(BOM)
    if unit == "file":
        pieces = [data]
    elif unit == "paragraph":
        pieces = _PARAGRAPH.split(data)
    else:
        pieces = data.split(b"\n")
    position = 0
    for piece in pieces:
        if not piece.strip():
            continue
        yield _record(position, None, piece)
        position += 1


def read_jsonl(path: Path, field: str = "text") -> Iterator[RawRecord]:
    """One record per non-blank line; the document text is `field`, the optional `title` field the title."""
    with open_binary(path) as f:
        position = 0
        for line in f:
            if not line.strip():
                continue
            text = _decode(line)
            if text is None:
                yield RawRecord(position, None, line, "undecodable")
            else:
                try:
                    obj = json.loads(text)
                except ValueError:
                    obj = _INVALID
                if obj is _INVALID:
                    yield RawRecord(position, None, line, "invalid_json")
                elif not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                    yield RawRecord(position, None, line, "missing_field")
                else:
                    title = obj.get("title")
                    yield RawRecord(position, title if isinstance(title, str) else None, obj[field])
            position += 1


_INVALID = object()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_mediawiki(path: Path) -> Iterator[RawRecord]:
    """Article pages (`<ns>0</ns>`, not redirects) of a MediaWiki XML dump, markup stripped.

    Streams with iterparse and clears each page once read, so memory stays bounded by one page.
    `position` is the page's index among all pages of the dump (skipped ones included).
    """
    position = 0
    root = None
    with open_binary(path) as f:
        try:
            for event, elem in ET.iterparse(f, events=("start", "end")):
                if root is None:
                    root = elem
                if event != "end" or _local(elem.tag) != "page":
                    continue
                ns, title, text, redirect = None, None, None, False
                for child in elem.iter():
                    name = _local(child.tag)
                    if name == "ns":
                        ns = (child.text or "").strip()
                    elif name == "title" and title is None:
                        title = child.text
                    elif name == "redirect":
                        redirect = True
                    elif name == "text":
                        text = child.text or ""
                root.clear()  # drop finished pages (and this one) from the tree
                if ns == "0" and not redirect and text is not None:
                    if not text.lstrip().lower().startswith("#redirect"):
                        yield RawRecord(position, title, wiki_plaintext(text))
                position += 1
        except ET.ParseError as exc:
            yield RawRecord(position, None, str(exc).encode(), "invalid_xml")


_NON_TEXT_LINK = re.compile(r"^\s*(category|file|image|media|[a-z]{2,3}(-[a-z]+)?)\s*:", re.IGNORECASE)


def wiki_plaintext(wikitext: str) -> str:
    """Readable text of a page: markup stripped, plus what strip_code would leave as noise
    (footnotes, category / file / interlanguage links) removed from the top level first."""
    import mwparserfromhell
    from mwparserfromhell.nodes import Tag, Wikilink

    code = mwparserfromhell.parse(wikitext)
    noise = [
        node for node in code.nodes
        if (isinstance(node, Tag) and str(node.tag).strip().lower() == "ref")
        or (isinstance(node, Wikilink) and _NON_TEXT_LINK.match(str(node.title)))
    ]
    for node in noise:
        code.remove(node, recursive=False)
    return code.strip_code()


def read_csv(path: Path, field: str = "text") -> Iterator[RawRecord]:
    """One record per CSV row (header required); the document text is column `field`."""
    with open_binary(path) as f:
        data = f.read()
    text = _decode(data)
    if text is None:
        yield RawRecord(0, None, data, "undecodable")
        return
    delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if field not in (reader.fieldnames or []):
        raise ValueError(f"{path}: no column '{field}' (corpus.jsonl_text_field); columns: {reader.fieldnames}")
    for position, row in enumerate(reader):
        value = row.get(field)
        if not isinstance(value, str):
            yield RawRecord(position, None, json.dumps(row, ensure_ascii=False).encode(), "missing_field")
        else:
            title = row.get("title")
            yield RawRecord(position, title if isinstance(title, str) else None, value)


def read_parquet(path: Path, field: str = "text") -> Iterator[RawRecord]:
    """One record per Parquet row; the document text is column `field` (nulls: `missing_field`)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if field not in names:
        raise ValueError(f"{path}: no column '{field}' (corpus.jsonl_text_field); columns: {names}")
    columns = [field] + (["title"] if "title" in names and field != "title" else [])
    position = 0
    for batch in pf.iter_batches(columns=columns):
        texts = batch.column(0).to_pylist()
        titles = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
        for text, title in zip(texts, titles):
            if isinstance(text, str):
                yield RawRecord(position, title if isinstance(title, str) else None, text)
            else:
                yield RawRecord(position, None, repr(text).encode(), "missing_field")
            position += 1


def read_records(
    path: Path, fmt: str, text_unit: Literal["file", "paragraph", "line"] = "file", field: str = "text"
) -> Iterator[RawRecord]:
    """Dispatch to the reader of `fmt`."""
    if fmt == "txt":
        return read_text(path, text_unit)
    if fmt == "jsonl":
        return read_jsonl(path, field)
    if fmt == "mediawiki":
        return read_mediawiki(path)
    if fmt == "csv":
        return read_csv(path, field)
    if fmt == "parquet":
        return read_parquet(path, field)
    raise ValueError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
