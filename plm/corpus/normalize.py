"""Text normalisation and a language heuristic, applied to every document before hashing.

The normalised text is what gets hashed, deduplicated, filtered and stored, so every rule here
changes document identity: the processing-options fingerprint covers the normal form.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0/C1 control characters except \t and \n (\r is handled above), plus a stray BOM / zero-width space.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff\u200b]")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace run inside a line (tabs, NBSP, ideographic space)
_EDGE_SPACES = re.compile(r" ?\n ?")
_BLANK_RUNS = re.compile(r"\n{3,}")

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LETTER = re.compile(r"[^\W\d_]")


def normalize_text(text: str, form: Literal["NFC", "NFKC"] = "NFC") -> str:
    """Unicode `form`, control characters removed, whitespace collapsed within lines, at most one blank line, stripped."""
    text = unicodedata.normalize(form, text)
    text = _NEWLINES.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _EDGE_SPACES.sub("\n", text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


def detect_lang(text: str) -> str:
    """Heuristic: "ko" when Hangul syllables are more than 30 % of the letters, else "en"."""
    letters = len(_LETTER.findall(text))
    if not letters:
        return "en"
    return "ko" if len(_HANGUL.findall(text)) > 0.3 * letters else "en"
