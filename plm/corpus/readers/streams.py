"""Opening a source: compression by magic bytes, bounded decompression with bomb caps, the sniffing prefix."""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from pathlib import Path
from typing import IO, Any, NamedTuple

from plm.config import CorpusSpec
from plm.corpus.readers.records import Rejected

SNIFF_BYTES = 256 * 1024
"""Decompressed prefix used to detect format, encoding and binary content (never the whole file)."""

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
]
COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zstd"}
_READ_CHUNK = 64 * 1024
_ZSTD_CHUNK = 2 * 1024  # zstd has no output bound per call; 2 KiB in is at most 64 MiB out
_OUT_CHUNK = 1024 * 1024
BUFFER = 1024 * 1024


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


class _Window(io.RawIOBase):
    """Bytes [start, end) of an uncompressed file."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self._file = open(path, "rb", buffering=0)
        self._file.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._file.readinto(view) or 0
        self._left -= n
        return n


def open_binary(path: Path, limits: Limits = Limits(), byte_range: tuple[int, int] | None = None) -> IO[bytes]:
    """The decompressed byte stream of `path` (buffered); compression by magic bytes. With `byte_range` (start, end),
    only those bytes of an uncompressed file (ingest maps a large file range by range: `plm.corpus.ranges`).

    Reading raises `Rejected` for a corrupt/truncated archive or a decompression bomb.
    """
    if byte_range is not None:
        if compression(path) is not None:
            raise ValueError(f"{path}: a byte range of a compressed file cannot be read on its own")
        return io.BufferedReader(_Window(path, *byte_range), buffer_size=BUFFER)
    kind = compression(path)
    if kind is None:
        return open(path, "rb", buffering=BUFFER)
    if kind == "zst":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: zstd-compressed, but the `zstandard` module is not installed") from None
    return io.BufferedReader(_Decompressed(path, kind, limits), buffer_size=BUFFER)


def head_bytes(path: Path, limits: Limits = Limits(), size: int = SNIFF_BYTES) -> tuple[bytes, bool]:
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
