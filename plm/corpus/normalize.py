"""Text normalisation and language identification, applied to every document before hashing.

The normalised text is what gets hashed, deduplicated, filtered and stored, so every rule here
changes document identity: the processing-options fingerprint covers the normal form.

Hangul: NFC (and NFKC) compose conjoining jamo sequences L V (T) of the modern repertoire
(U+1100-1112, U+1161-1175, U+11A8-11C2) into precomposed syllables, also a syllable followed by a
trailing consonant (가 + ᆨ = 각). Archaic jamo (e.g. ᅀ U+1140, extended-A/B U+A960/U+D7B0) have no
precomposed syllables and stay as sequences, which is the Unicode-correct form. Compatibility jamo
(ㄱ ㅏ, U+3131-318E, as in "ㅋㅋ") are kept as written under both forms: NFKC alone would turn them
into conjoining jamo and glue "ㄱㅏ" into "가", changing what the writer typed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Each rule is a character class or a plain replace: the regex engine scans classes fast, while
# alternations and negated classes cost several times more on megabytes of text.
# \x1d is a line break too, but replaced before (single path) or absent (batch path): see _SEP.
_NEWLINES = re.compile(r"[\r\x0b\x0c\x1c\x1e\x85\u2028\u2029]")
# C0/C1 control characters except \t and \n (line breaks are handled above), plus a stray BOM /
# zero-width space.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ufeff\u200b]")
# The whitespace left inside a line after the two rules above (str.isspace minus line breaks).
_BLANKS = re.compile(r"[\t\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_ASCII_PLAIN = bytes(range(0x20, 0x7F)) + b"\n\x1d"  # ASCII bytes no class rule changes
_COMPAT_JAMO = re.compile(r"[\u3131-\u318e]+")
_SEP = "\x1d"  # joins a batch; normalize_text turns it into a line break, so batches never see it inside a text

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LETTER = re.compile(r"[^\W\d_]")


def _unicode(text: str, form: str) -> str:
    if text.isascii():  # ASCII is invariant under NFC and NFKC
        return text
    if form == "NFKC" and _COMPAT_JAMO.search(text):
        # normalise the text between compatibility-jamo runs only (see the module docstring)
        parts = _COMPAT_JAMO.split(text)
        runs = _COMPAT_JAMO.findall(text)
        out = [unicodedata.normalize(form, parts[0])]
        for run, part in zip(runs, parts[1:]):
            out.append(run)
            out.append(unicodedata.normalize(form, part))
        return "".join(out)
    return unicodedata.normalize(form, text)


_RARE = re.compile(f"{_NEWLINES.pattern[:-1]}{_CONTROL.pattern[1:-1]}{_BLANKS.pattern[1:]}+")
"""Runs of characters the three class rules change: one scan applies all three."""
_RARE_TABLE = {
    **{c: "\n" for c in "\r\x0b\x0c\x1c\x1e\x85\u2028\u2029"},
    **{chr(i): "" for i in [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x1F, *range(0x7F, 0x85), *range(0x86, 0xA0)]},
    "\ufeff": "", "\u200b": "",
    **{chr(i): " " for i in [0x09, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000]},
}
_RARE_TRANS = str.maketrans(_RARE_TABLE)
_CHUNK_CHARS = 1 << 16
_SPACE_RUNS = re.compile("  +")


def _fix_rare(match: re.Match[str]) -> str:
    return match.group().translate(_RARE_TRANS)


def _clean(text: str) -> str:
    """Line breaks unified, controls removed, blanks collapsed to one space, no space at line
    edges, at most one blank line (not stripped)."""
    text = text.replace("\r\n", "\n")
    # The regex scan is the slowest step; ASCII text is first checked with bytes.translate (C speed).
    if not text.isascii() or text.encode("ascii").translate(None, _ASCII_PLAIN):
        text = _RARE.sub(_fix_rare, text)
    if "  " in text:  # substring tests and replaces are fast scans: most rules find nothing to do
        text = _SPACE_RUNS.sub(" ", text)  # one pass (halving runs with str.replace took one pass per doubling)
    if " \n" in text:
        text = text.replace(" \n", "\n")
    if "\n " in text:
        text = text.replace("\n ", "\n")
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def normalize_text(text: str, form: Literal["NFC", "NFKC"] = "NFC") -> str:
    """Unicode `form`, control characters removed, whitespace collapsed within lines, at most one blank line, stripped."""
    # a group separator is a line break of its own: as \x1c (also one), it cannot pair with a \r
    return _clean(_unicode(text, form).replace(_SEP, "\x1c")).strip()


def normalize_many(texts: Sequence[str], form: Literal["NFC", "NFKC"] = "NFC") -> list[str]:
    """`normalize_text` of each text (same results), fast: the hot path of ingest.

    Unicode normalisation runs per text (its quick check would otherwise fail a whole batch at
    the first non-normalised character). The cleaning rules run over chunks of about 64 K
    characters of texts joined with U+001D, which no rule changes and which the single path
    treats as a line break: few calls, and a chunk without tabs or controls skips those rules.
    A chunk whose texts contain U+001D falls back to one call per text.
    """
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for text in texts:
        text = _unicode(text, form)
        chunk.append(text)
        size += len(text)
        if size >= _CHUNK_CHARS:
            out.extend(_clean_chunk(chunk))
            chunk, size = [], 0
    if chunk:
        out.extend(_clean_chunk(chunk))
    return out


def _clean_chunk(texts: list[str]) -> list[str]:
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:
        return [_clean(t.replace(_SEP, "\x1c")).strip() for t in texts]
    return [part.strip() for part in _clean(joined).split(_SEP)]


def detect_lang(text: str) -> str:
    """Heuristic: "ko" when Hangul syllables are more than 30 % of the letters (of the first
    LANG_PREFIX_CHARS characters), else "en"."""
    head = text[:LANG_PREFIX_CHARS]
    if _HANGUL.search(head) is None:  # most documents of an English corpus: no counting needed
        return "en"
    letters = len(_LETTER.findall(head))
    return "ko" if len(_HANGUL.findall(head)) > 0.3 * letters else "en"


def detect_lang_many(texts: pa.Array | pa.ChunkedArray) -> list[str]:
    """`detect_lang` of each text of an Arrow array: only texts with Hangul in their head need counting."""
    head = pc.utf8_slice_codeunits(texts, 0, LANG_PREFIX_CHARS)
    hangul = np.flatnonzero(pc.match_substring_regex(head, "[\uac00-\ud7a3]").to_numpy(zero_copy_only=False))
    out = ["en"] * len(texts)
    for i in hangul.tolist():
        out[i] = detect_lang(texts[i].as_py())
    return out


LANG_PREFIX_CHARS = 1000
"""Characters of a document that `detect_langs` looks at (the cost is per character)."""
MIN_LANG_LETTERS = 12
MIN_LANG_CONFIDENCE = 0.25


@lru_cache(maxsize=1)
def _identifier() -> Any:
    # py3langid ships its model (140 labels) inside the wheel; loading it takes a few seconds once.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_langs(texts: Sequence[str]) -> list[str]:
    """ISO 639-1 code of each text (py3langid, a naive Bayes model shipped in the package), or
    "und" when it has fewer than MIN_LANG_LETTERS letters or the model is less than
    MIN_LANG_CONFIDENCE sure. Texts whose letters are mostly Hangul are "ko" without the model."""
    out: list[str] = []
    for text in texts:
        head = text[:LANG_PREFIX_CHARS]
        letters = len(_LETTER.findall(head))
        if letters < MIN_LANG_LETTERS:
            out.append("und")
        elif len(_HANGUL.findall(head)) > 0.5 * letters:
            out.append("ko")
        else:
            label, confidence = _identifier().classify(head)
            out.append(label if confidence >= MIN_LANG_CONFIDENCE and len(label) == 2 else "und")
    return out
