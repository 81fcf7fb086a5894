"""Sentence splitting: Kiwi for Korean, a regex for everything else."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# A boundary is whitespace after ., ! or ? (optionally followed by a closing quote or bracket) that is
# followed by an upper-case letter, a digit or an opening quote. Abbreviations ("Mr. Smith") split
# wrongly: an accepted limitation of the heuristic.
_EN_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_LINES = re.compile(r"\n+")


@lru_cache(maxsize=1)
def _kiwi() -> Any:
    # One Kiwi per process: building it loads the bundled model (about a second).
    from kiwipiepy import Kiwi

    return Kiwi()


def split_sentences(text: str, lang: str) -> list[str]:
    """Sentences of `text`, stripped, empty ones dropped; newlines always end a sentence."""
    out: list[str] = []
    for line in _LINES.split(text):
        line = line.strip()
        if not line:
            continue
        if lang == "ko":
            pieces = [s.text for s in _kiwi().split_into_sents(line)]
        else:
            pieces = _EN_BOUNDARY.split(line)
        out.extend(p for p in (piece.strip() for piece in pieces) if p)
    return out
