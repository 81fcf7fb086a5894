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
"""

from __future__ import annotations

import bz2
import codecs
import csv
import io
import json
import lzma
import os
import re
import tempfile
import unicodedata
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from plm.config import CorpusSpec

FORMATS = ("txt", "jsonl", "json", "mediawiki", "csv", "parquet")
QUARANTINE_REASONS = (
    "empty_file", "binary", "nul_bytes", "undecodable:<encoding>", "too_large", "invalid_json", "missing_field",
    "bad_columns", "invalid_csv", "invalid_xml", "corrupt_archive", "decompression_bomb",
)
QUARANTINE_RAW_BYTES = 64 * 1024
"""Raw bytes kept for one quarantined unit (its first 64 KiB)."""
BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 256 * 1024
"""Decompressed prefix used to detect format, encoding and binary content (never the whole file)."""

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
]
_COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zstd"}
_READ_CHUNK = 64 * 1024
_ZSTD_CHUNK = 2 * 1024  # zstd has no output bound per call; 2 KiB in is at most 64 MiB out
_OUT_CHUNK = 1024 * 1024
_BUFFER = 1024 * 1024
_BLOCK = 256 * 1024  # lines decoded per call in the fast path


class RawRecord(NamedTuple):
    """One input unit. `raw` is text when usable; bytes (kept verbatim) when `reason` quarantines it.

    `source_id` is the record's own id (`corpus.id_field`), `metadata` the `corpus.metadata_fields`
    it has; both None when not configured or absent.
    """

    position: int
    title: str | None
    raw: str | bytes
    reason: str | None = None
    source_id: str | None = None
    metadata: dict[str, Any] | None = None


class Rejected(Exception):
    """Reading a source stopped for a quarantine `reason`; records yielded before it stand.

    `raw` is what the quarantine row keeps: the offending bytes when there are some (a binary
    file's head), else the message.
    """

    def __init__(self, reason: str, message: str, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.raw = message.encode() if raw is None else raw


# ---------------------------------------------------------------- allowed roots


def default_roots(home: Path | None = None) -> list[Path]:
    """Roots used when `corpus.allowed_roots` is empty: the current directory, PLM_HOME (or `home`),
    the system temp directory, the fetched-samples cache and the installed packages that ship the named samples."""
    from plm.samples import SAMPLES, SampleNotFound, cache_dir, package_dir

    roots = [Path.cwd(), Path(home or os.environ.get("PLM_HOME", ".plm")), Path(tempfile.gettempdir()), cache_dir()]
    for package in sorted({pkg for pkg, _, _ in SAMPLES.values()}):
        try:
            roots.append(package_dir(package))
        except SampleNotFound:
            continue
    return roots


def check_allowed(
    path: Path | str, roots: Sequence[str | Path] = (), home: Path | None = None, key: str | None = None
) -> Path:
    """`path` resolved (symlinks too); PermissionError naming it (and the spec `key`) when it lies outside every root.

    Empty `roots` means `default_roots(home)`. Call it before the file is opened, hashed or even stat'ed as a file.
    """
    resolved = Path(path).expanduser().resolve()
    allowed = list(dict.fromkeys(Path(r).expanduser().resolve() for r in (roots or default_roots(home))))
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        names = ", ".join(str(r) for r in allowed)
        where = f"{key}: " if key else ""
        raise PermissionError(f"{where}{path}: resolves to {resolved}, outside corpus.allowed_roots ({names})")
    return resolved


# ---------------------------------------------------------------- compressed streams


def compression(path: Path) -> str | None:
    """Compression by magic bytes: "gz", "bz2", "xz", "zst" or None."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class Limits(NamedTuple):
    """Decompression-bomb caps (see CorpusSpec)."""

    max_ratio: float = 200.0
    ratio_min_bytes: int = 64 * 1024 * 1024
    max_bytes: int = 32 * 1024**3

    @classmethod
    def of(cls, cfg: CorpusSpec) -> Limits:
        return cls(cfg.max_compression_ratio, cfg.compression_ratio_min_bytes, cfg.max_decompressed_bytes)


class _Decompressed(io.RawIOBase):
    """Raw stream of decompressed bytes that checks the bomb caps and turns codec errors into
    `Rejected("corrupt_archive")` (a truncated stream included, which gzip/zstd would not all flag)."""

    def __init__(self, path: Path, kind: str, limits: Limits) -> None:
        self._file = open(path, "rb")
        self._kind = kind
        self._limits = limits
        self._dec: Any = self._new()
        self._out = b""
        self._pending = b""  # zst input read but not yet fed
        self._eof = False
        self.decompressed = 0

    def _new(self) -> Any:
        if self._kind == "gz":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._kind == "bz2":
            return bz2.BZ2Decompressor()
        if self._kind == "xz":
            return lzma.LZMADecompressor()
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        while not self._out and not self._eof:
            try:
                self._out = self._step()
            except Rejected:
                raise
            except Exception as exc:  # each codec has its own error types (zlib.error, LZMAError, ZstdError, OSError ...)
                raise Rejected("corrupt_archive", f"corrupt {self._kind} stream: {exc}") from None
            self._check(len(self._out))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _check(self, produced: int) -> None:
        self.decompressed += produced
        compressed = max(self._file.tell(), 1)
        lim = self._limits
        if self.decompressed > lim.max_bytes or (
            self.decompressed > lim.ratio_min_bytes and self.decompressed / compressed > lim.max_ratio
        ):
            raise Rejected(
                "decompression_bomb",
                f"stopped after {self.decompressed} bytes decompressed from {compressed} "
                f"(corpus.max_compression_ratio={lim.max_ratio}, corpus.max_decompressed_bytes={lim.max_bytes})",
            )

    def _step(self) -> bytes:
        """One bounded piece of output; b"" with `_eof` set at the clean end of the last member."""
        dec = self._dec
        if self._kind == "gz":
            data = dec.unconsumed_tail or (b"" if dec.eof else self._file.read(_READ_CHUNK))
            if dec.eof:
                return self._next_member(dec.unused_data)
            if not data:
                raise Rejected("corrupt_archive", "truncated gz stream: ended before the end-of-stream marker")
            return dec.decompress(data, _OUT_CHUNK)
        if self._kind == "zst":  # fed _ZSTD_CHUNK at a time: its decompress has no output bound
            if dec.eof:
                self._pending = dec.unused_data + self._pending
                if not self._pending.strip(b"\x00"):  # zero padding is not another frame
                    self._pending = self._file.read(_READ_CHUNK)
                    if not self._pending:
                        self._eof = True
                        return b""
                self._dec = dec = self._new()
            if not self._pending:
                self._pending = self._file.read(_READ_CHUNK)
                if not self._pending:
                    raise Rejected("corrupt_archive", "truncated zst stream: ended inside a frame")
            data, self._pending = self._pending[:_ZSTD_CHUNK], self._pending[_ZSTD_CHUNK:]
            return dec.decompress(data)
        # bz2 / xz: needs_input tells whether the decompressor still holds unread input
        if dec.eof:
            return self._next_member(dec.unused_data)
        data = self._file.read(_READ_CHUNK) if dec.needs_input else b""
        if dec.needs_input and not data:
            raise Rejected("corrupt_archive", f"truncated {self._kind} stream: ended before the end-of-stream marker")
        return dec.decompress(data, _OUT_CHUNK)

    def _next_member(self, unused: bytes) -> bytes:
        rest = unused + self._file.read(_READ_CHUNK)
        if not rest.strip(b"\x00"):  # trailing zero padding (tar-style) is not another member
            self._eof = True
            return b""
        self._dec = self._new()
        return self._dec.decompress(rest, _OUT_CHUNK)


def open_binary(path: Path, limits: Limits = Limits()) -> IO[bytes]:
    """The decompressed byte stream of `path` (buffered); compression by magic bytes.

    Reading raises `Rejected` for a corrupt/truncated archive or a decompression bomb.
    """
    kind = compression(path)
    if kind is None:
        return open(path, "rb", buffering=_BUFFER)
    if kind == "zst":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: zstd-compressed, but the `zstandard` module is not installed") from None
    return io.BufferedReader(_Decompressed(path, kind, limits), buffer_size=_BUFFER)


def _prefix(path: Path, limits: Limits = Limits(), size: int = SNIFF_BYTES) -> tuple[bytes, bool]:
    """The first `size` decompressed bytes and whether they are the whole stream.

    Damage inside the prefix ends it early (the reader meets the damage again and quarantines it).
    """
    chunks: list[bytes] = []
    got = 0
    with open_binary(path, limits) as f:
        try:
            while got < size:
                chunk = f.read(min(_READ_CHUNK, size - got))
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks), not f.read(1)
        except Rejected:
            return b"".join(chunks), False


# ---------------------------------------------------------------- format and encoding


def detect_format(path: Path) -> str:
    """One of FORMATS, from the content first (magic bytes, decompressed head) and the extension second."""
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    head, _ = _prefix(path, size=65536)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSED_SUFFIXES]
    ext = suffixes[-1] if suffixes else ""
    if b"<mediawiki" in head[:8192]:
        return "mediawiki"
    if ext == ".parquet":
        return "parquet"
    if ext in {".csv", ".tsv"}:
        return "csv"
    body = head.removeprefix(BOM).lstrip()
    first = body.split(b"\n", 1)[0].strip()
    if first.startswith(b"{") and first.endswith(b"}"):
        try:
            json.loads(first)
            return "jsonl"
        except ValueError:
            pass
    if ext in {".jsonl", ".ndjson"}:
        return "jsonl"
    if body.startswith(b"[") or ext == ".json":
        return "json"
    return "txt"


_UTF16_32 = {
    b"\xff\xfe\x00\x00": "utf-32-le", b"\x00\x00\xfe\xff": "utf-32-be",
    b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be",
}
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")


def _failed_lines(lines: list[bytes], encoding: str) -> int:
    bad = 0
    for line in lines:
        try:
            line.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            bad += 1
    return bad


def sniff_encoding(prefix: bytes, whole: bool = True) -> str:
    """Codec of a decompressed `prefix`: a BOM, else UTF-8 when (nearly) all its non-ASCII lines decode,
    else CP949 when they decode to Hangul, else charset-normalizer's guess if it fails fewer lines."""
    if prefix.startswith(BOM):
        return "utf-8-sig"
    for bom, name in _UTF16_32.items():
        if prefix.startswith(bom):
            return name
    if len(prefix) >= 64:  # BOM-less UTF-16: ASCII text has NUL in every other byte
        odd, even = prefix[1::2].count(0), prefix[0::2].count(0)
        half = len(prefix) // 2
        if odd > 0.4 * half and even < 0.05 * half:
            return "utf-16-le"
        if even > 0.4 * half and odd < 0.05 * half:
            return "utf-16-be"
    lines = prefix.split(b"\n")
    if not whole and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut inside a multi-byte sequence
    # Lines with non-ASCII bytes are the evidence: a UTF-8 or CP949 file with a few damaged lines
    # keeps its codec (the damaged lines are quarantined), while single-byte codecs, which decode
    # any byte, are only taken from the detector when UTF-8 fails broadly. Legacy text almost never
    # forms valid multi-byte UTF-8 by chance, so non-ASCII lines that decode as UTF-8 outweigh the same
    # number of lines that do not: a UTF-8 file with one damaged line stays UTF-8.
    non_ascii = sum(1 for line in lines if not line.isascii())
    utf8_bad = _failed_lines(lines, "utf-8")
    if utf8_bad <= 0.2 * non_ascii or non_ascii - utf8_bad >= utf8_bad:
        return "utf-8"
    if _plausibly_korean(prefix) and _failed_lines(lines, "cp949") <= max(1, 0.2 * non_ascii):
        return "cp949"
    guess = _detector_guess(prefix[:65536])
    if (guess is not None and _failed_lines(lines, guess) < utf8_bad
            and _plausible_text(prefix.decode(guess, errors="replace"))):
        return guess
    return "utf-8"


_WORD = re.compile(r"\w+")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


def _plausible_text(text: str) -> bool:
    """Whether text a legacy codec decoded reads as words rather than mojibake: its non-ASCII characters are
    letters (punctuation, currency signs and spaces aside), and accented Latin letters mostly sit in words with
    ASCII letters (`café`, `Köln`), as they do in Western text; a lone run like `˙ţý` does not."""
    letters = bad = 0
    for ch in text:
        if ord(ch) < 128:
            continue
        cat = unicodedata.category(ch)
        if cat[0] in "LM":
            letters += 1
        elif cat[0] not in "PZ" and cat not in ("Sc", "No"):
            bad += 1
    if letters == 0 or bad > 0.1 * (letters + bad):
        return False
    latin = in_words = 0
    for word in _WORD.findall(text):
        n = sum(1 for ch in word if ord(ch) >= 128 and unicodedata.name(ch, "").startswith("LATIN"))
        latin += n
        in_words += n if _ASCII_LETTER.search(word) else 0
    return latin == 0 or in_words >= 0.5 * latin


def _detector_guess(prefix: bytes) -> str | None:
    """charset-normalizer's best codec; among candidates it scores equal, CP1252 (the common
    Western codec) wins, since short Latin text often ties between CP1250/CP1252/CP1257."""
    try:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(prefix))
    except Exception:  # the detector is advisory: without an answer, UTF-8 quarantines what fails
        return None
    if not matches:
        return None
    best = matches[0]
    for match in matches:
        if (match.chaos, match.coherence) == (best.chaos, best.coherence) and "cp1252" in match.could_be_from_charset:
            return "cp1252"
    return best.encoding


def _plausibly_korean(prefix: bytes) -> bool:
    # CP949 decodes most high-byte pairs, so Latin-1 text would "succeed" too: require that the
    # non-ASCII characters it yields are mostly Hangul.
    text = prefix.decode("cp949", errors="ignore")
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    return non_ascii > 0 and len(_HANGUL.findall(text)) > 0.6 * non_ascii


def detect_encoding(path: Path, fmt: str, encoding: str = "auto", limits: Limits = Limits()) -> str:
    """Codec of `path`'s decompressed text from a bounded prefix ("binary" for Parquet); `encoding` other than "auto" is returned as forced."""
    if fmt == "parquet":
        return "binary"
    if encoding != "auto":
        return encoding
    prefix, whole = _prefix(path, limits)
    return sniff_encoding(prefix, whole)


def is_binary(prefix: bytes) -> bool:
    """True when `prefix` has more than 5 % control bytes (other than tab/newlines/FF/ESC) or many NULs."""
    if not prefix:
        return False
    nul = prefix.count(0)
    controls = len(prefix) - len(prefix.translate(None, _CONTROL_BYTES))
    return controls > 0.05 * len(prefix) or (nul >= 16 and nul > 0.005 * len(prefix))


_CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32)])


# ---------------------------------------------------------------- decoding units

_MARK = re.compile(r"[\udc00-\udcff]+")


_MARKED = [0]  # bad byte runs marked so far (any thread): readers skip the marker scan while unchanged


def _mark_bytes(exc: UnicodeError) -> tuple[str | bytes, int]:
    # Decoding: each bad byte becomes the lone surrogate U+DC00+byte, so a unit can be found bad
    # and its bytes rebuilt exactly (`_reencode`). Strict decoding never yields lone surrogates.
    if isinstance(exc, UnicodeDecodeError):
        _MARKED[0] += 1
        return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:exc.end]), exc.end
    raise exc


codecs.register_error("plm-mark", _mark_bytes)


def _reencode(text: str, encoding: str) -> bytes:
    """The original bytes of text decoded with errors="plm-mark"."""
    out = bytearray()
    pos = 0
    for m in _MARK.finditer(text):
        out += text[pos:m.start()].encode(encoding, "surrogatepass")
        out += bytes(ord(c) - 0xDC00 for c in m.group())
        pos = m.end()
    out += text[pos:].encode(encoding, "surrogatepass")
    return bytes(out)


def _byte_safe(encoding: str) -> bool:
    """Whether the newline byte can only mean newline (ASCII-compatible codecs: UTF-8, CP949, Latin-*)."""
    name = codecs.lookup(encoding).name
    if name == "utf-8-sig":  # the BOM is stripped from the first unit; the rest is UTF-8
        return True
    return not name.startswith(("utf-16", "utf-32", "utf-7")) and "\n".encode(encoding) == b"\n"


class _Source:
    """A text source: its decoded-or-byte line stream and how to turn a unit into a record."""

    def __init__(self, path: Path, cfg: CorpusSpec, text_stream: bool = True) -> None:
        self.path = path
        self.cap = cfg.max_record_bytes
        limits = Limits.of(cfg)
        prefix, whole = _prefix(path, limits)
        self.encoding = cfg.encoding if cfg.encoding != "auto" else sniff_encoding(prefix, whole)
        self.byte_safe = _byte_safe(self.encoding)
        if self.byte_safe and is_binary(prefix):
            raise Rejected("binary", f"binary content in the first {len(prefix)} bytes", prefix)
        self.reason = f"undecodable:{self.encoding}"
        self._codec = codecs.lookup(self.encoding).name
        if self._codec == "utf-8-sig":
            self._codec = "utf-8"
        self.first_char = prefix.decode(self._codec, errors="ignore").lstrip("\ufeff \t\r\n")[:1]
        self.binary = open_binary(path, limits)
        self.stream: IO[Any] = self.binary
        if not self.byte_safe and text_stream:  # UTF-16/32: decode the stream, mark bad bytes, cut units on text
            self.stream = io.TextIOWrapper(self.binary, encoding=self.encoding, errors="plm-mark", newline="")
        self._first = True

    def close(self) -> None:
        self.stream.close()

    def lines(self) -> Iterator[tuple[Any, bool]]:
        """(line, too_large) with at most `cap` units buffered; a longer line is skipped in chunks."""
        newline: Any = b"\n" if self.byte_safe else "\n"
        limit = self.cap if self.byte_safe else max(1, self.cap // 2)
        readline = self.stream.readline
        while True:
            line = readline(limit + 1)
            if not line:
                return
            if self._first:
                self._first = False
                line = line.removeprefix(BOM) if self.byte_safe else line.removeprefix("\ufeff")
            if len(line) > limit and not line.endswith(newline):
                head = line[:QUARANTINE_RAW_BYTES]
                while True:
                    more = readline(_BUFFER)
                    if not more or more.endswith(newline):
                        break
                yield head, True
            else:
                yield line, False

    def text_lines(self) -> Iterator[tuple[str | None, Any, bool]]:
        """Non-blank lines as (text, None, False) when they decode, else (None, unit, too_large) for
        `record`: the stream is cut into ~256 KiB blocks of whole lines and each block is decoded in
        one call, which is several times faster than one call per line; a block that fails (or
        holds NUL) is decoded line by line, so results equal `lines()` + `record`."""
        if not self.byte_safe:
            for line, too_large in self.lines():
                if too_large or not _blank(line):
                    yield None, _strip_newline(line).rstrip("\r"), too_large
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
                if line.strip(_ASCII_SPACE):
                    if len(line) > cap // 4 and len(line.encode(codec)) > cap:
                        yield None, line.encode(codec)[:QUARANTINE_RAW_BYTES], True
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
        return unit if isinstance(unit, bytes) else _reencode(unit, self._codec)

    def decode(self, unit: Any) -> tuple[str | None, str | None]:
        """(text, None) or (None, reason) for one unit (bytes or marked text)."""
        if isinstance(unit, bytes):
            if b"\x00" in unit:
                return None, "nul_bytes"
            try:
                return unit.decode(self._codec), None
            except UnicodeDecodeError:
                return None, self.reason
        if _MARK.search(unit):
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


_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes: blank means the same on both paths


def _strip_newline(unit: Any) -> Any:
    if isinstance(unit, bytes):
        return unit[:-1] if unit.endswith(b"\n") else unit
    return unit[:-1] if unit.endswith("\n") else unit


def _blank(unit: Any) -> bool:
    return not unit.strip()


# ---------------------------------------------------------------- readers


def read_text(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """Plain text cut into `corpus.text_unit` units: whole file, blank-line paragraphs or lines.

    Blank units are not records. Units are cut before decoding (on bytes for ASCII-compatible
    codecs, where a newline byte never occurs inside a multi-byte sequence), so one bad byte
    quarantines only its own unit.
    """
    src = _Source(path, cfg)
    try:
        if cfg.text_unit == "file":
            data, too_large = src.read_all()
            if too_large or not _blank(data):
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
            if not too_large and _blank(line):
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


def _paragraph(src: _Source, position: int, parts: list[Any], over: bool, head: Any) -> RawRecord:
    if over:
        return src.record(position, head, True)
    return src.record(position, _strip_newline(parts[0][:0].join(parts)))


def _pick(obj: dict[str, Any], cfg: CorpusSpec) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """Title, source id and metadata of a JSON/CSV/Parquet record."""
    title = obj.get("title")
    source_id = obj.get(cfg.id_field) if cfg.id_field else None
    metadata = {k: obj[k] for k in cfg.metadata_fields if k in obj} if cfg.metadata_fields else None
    return (
        title if isinstance(title, str) else None,
        None if source_id is None else str(source_id),
        metadata,
    )


def _json_record(position: int, obj: Any, raw: Callable[[], bytes], cfg: CorpusSpec) -> RawRecord:
    text = obj.get(cfg.jsonl_text_field) if type(obj) is dict else None
    if type(text) is not str:
        return RawRecord(position, None, raw(), "missing_field")
    if "\x00" in text:
        return RawRecord(position, None, raw(), "nul_bytes")
    if cfg.id_field is None and not cfg.metadata_fields:  # the common case, without _pick's work
        title = obj.get("title")
        return RawRecord(position, title if type(title) is str else None, text)
    title, source_id, metadata = _pick(obj, cfg)
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


def read_jsonl(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """One record per non-blank line; text in `corpus.jsonl_text_field`, optional `title`, id and metadata fields."""
    src = _Source(path, cfg)
    try:
        position = 0
        for text, unit, too_large in src.text_lines():
            if text is None and (too_large or src.decode(unit)[1] != "nul_bytes"):
                yield src.record(position, unit, too_large)  # too large or undecodable
            else:
                line = text if text is not None else unit if isinstance(unit, str) else unit.decode(src._codec, "replace")
                try:
                    obj = _loads(line)
                except ValueError:
                    obj = _INVALID
                if obj is _INVALID:  # a raw NUL byte is invalid JSON too
                    yield RawRecord(position, None, unit if text is None else src.raw(text + "\n"), "invalid_json")
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

    src = _Source(path, cfg, text_stream=False)
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


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_mediawiki(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """Article pages (`<ns>0</ns>`, not redirects) of a MediaWiki XML dump, markup stripped.

    Streams with iterparse and clears each page once read, so memory stays bounded by one page.
    `position` is the page's index among all pages of the dump (skipped ones included).
    """
    position = 0
    root = None
    with open_binary(path, Limits.of(cfg)) as f:
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
                    if len(text) * 4 > cfg.max_record_bytes and len(text.encode()) > cfg.max_record_bytes:
                        yield RawRecord(position, title, text.encode()[:QUARANTINE_RAW_BYTES], "too_large")
                    elif not text.lstrip().lower().startswith("#redirect"):
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


_TOO_LARGE_ROW = "\n"


class _CsvLines:
    """Text lines for csv.reader, each at most `cap` characters: a longer physical line is skipped
    and replaced by an empty line, with `skipped` set so the row can be quarantined `too_large`."""

    def __init__(self, src: _Source, text: IO[str]) -> None:
        self.src, self.text = src, text
        self.limit = max(1, src.cap // 2) if not src.byte_safe else src.cap
        self.skipped: str | None = None

    def __iter__(self) -> Iterator[str]:
        readline = self.text.readline
        first = True
        while True:
            line = readline(self.limit + 1)
            if not line:
                return
            if first:
                line, first = line.removeprefix("\ufeff"), False
            if len(line) > self.limit and not line.endswith("\n"):
                self.skipped = line[:QUARANTINE_RAW_BYTES]
                while True:
                    more = readline(_BUFFER)
                    if not more or more.endswith("\n"):
                        break
                yield _TOO_LARGE_ROW
            else:
                yield line


def read_csv(path: Path, cfg: CorpusSpec) -> Iterator[RawRecord]:
    """One record per CSV/TSV row (header required); text in column `corpus.jsonl_text_field`.

    The delimiter is `corpus.csv_delimiter`, else sniffed from the head (tab for `.tsv`). Rows
    with another column count than the header are `bad_columns`; quarantined rows keep their
    bytes as re-written by the csv module (the physical bytes of a multi-line row are not kept).
    """
    src = _Source(path, cfg, text_stream=False)
    marked = _MARKED[0]  # before anything is decoded (the wrapper decodes ahead of the rows)
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
            return _reencode(out.getvalue(), src._codec)

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
                yield RawRecord(position, None, _reencode(lines.skipped, src._codec), "too_large")
                lines.skipped = None
            elif not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            elif len(row) != width:
                yield RawRecord(position, None, raw(row), "bad_columns")
            elif _MARKED[0] != marked and any(_MARK.search(v) for v in row):
                yield RawRecord(position, None, raw(row), src.reason)
            elif "\x00" in row[field]:
                yield RawRecord(position, None, raw(row), "nul_bytes")
            elif plain:
                yield RawRecord(position, row[title_at] if title_at is not None else None, row[field])
            else:
                title, source_id, metadata = _pick(dict(zip(header, row)), cfg)
                yield RawRecord(position, title, row[field], None, source_id, metadata)
            position += 1
    finally:
        text.close()


def _sniff_delimiter(path: Path, head: bytes, encoding: str) -> str:
    """The candidate (`,` tab `;` `|`) that occurs the same non-zero number of times on most head
    lines; the extension decides when none does (tab for `.tsv`, else comma)."""
    name = path.name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
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
                    title, source_id, metadata = _pick(row, cfg)
                    yield RawRecord(position, title, text, None, source_id, metadata)
                position += 1
    except (pa.ArrowException, OSError) as exc:
        raise Rejected("corrupt_archive", f"corrupt Parquet file: {exc}") from None


_READERS: dict[str, Callable[[Path, CorpusSpec], Iterator[RawRecord]]] = {
    "txt": read_text, "jsonl": read_jsonl, "json": read_json, "mediawiki": read_mediawiki,
    "csv": read_csv, "parquet": read_parquet,
}


def read_records(path: Path, fmt: str, cfg: CorpusSpec | None = None) -> Iterator[RawRecord]:
    """The single entry point: every record of `path` read as `fmt` under `cfg` (default spec).

    Checks `corpus.allowed_roots` first (PermissionError). Damage that ends a file early (corrupt
    archive, bomb, binary) becomes one final quarantine row; a file with no record at all yields one
    `empty_file` row; quarantined raw bytes are capped at QUARANTINE_RAW_BYTES.
    """
    cfg = cfg or CorpusSpec()
    if fmt not in _READERS:
        raise ValueError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    resolved = check_allowed(path, cfg.allowed_roots)
    return _guarded(resolved, _READERS[fmt], cfg)


def _guarded(path: Path, reader: Callable[[Path, CorpusSpec], Iterator[RawRecord]], cfg: CorpusSpec) -> Iterator[RawRecord]:
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
    if not any_record:
        yield RawRecord(0, None, b"", "empty_file")
