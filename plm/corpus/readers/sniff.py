"""Sniffing a decompressed prefix: the format, the codec (legacy codecs only when plausible), binary content."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from plm.corpus.readers.records import BOM
from plm.corpus.readers.streams import COMPRESSED_SUFFIXES, Limits, head_bytes

def detect_format(path: Path) -> str:
    """One of FORMATS, from the content first (magic bytes, decompressed head) and the extension second."""
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    head, _ = head_bytes(path, size=65536)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in COMPRESSED_SUFFIXES]
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
    prefix, whole = head_bytes(path, limits)
    return sniff_encoding(prefix, whole)


def is_binary(prefix: bytes) -> bool:
    """True when `prefix` has more than 5 % control bytes (other than tab/newlines/FF/ESC) or many NULs."""
    if not prefix:
        return False
    nul = prefix.count(0)
    controls = len(prefix) - len(prefix.translate(None, _CONTROL_BYTES))
    return controls > 0.05 * len(prefix) or (nul >= 16 and nul > 0.005 * len(prefix))


_CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32)])
