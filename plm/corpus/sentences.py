"""Sentence splitting: Kiwi for Korean, an abbreviation-aware regex for everything else.

Newlines always end a sentence; sentences never cross a document, so the lists keep document
boundaries (NSP needs both). The batch API sends every Korean line of a batch to Kiwi in one
call, which is several times faster than one call per line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

# A candidate boundary: sentence punctuation (plus closing quotes/brackets), whitespace, then an
# upper-case letter, a digit or an opening quote/bracket. Decimals ("3.14") have no whitespace
# after the dot and never qualify; abbreviations are rejected in `_split_english`.
_CANDIDATE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_LINES = re.compile(r"\n+")
# Korean has no letter case: any sentence punctuation (plus closing quotes) before whitespace ends
# a sentence; Kiwi also finds unpunctuated sentence-final endings, this regex does not.
_KO_BOUNDARY = re.compile(r"(?<=[.!?\u3002\u2026])[\"'\u201d\u2019)\]]*\s+")
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt cmdr adm gov sen rep rev hon pres
    vs etc cf al approx dept est inc ltd co corp bros assn univ jan feb mar apr jun jul aug sep sept
    oct nov dec mon tue wed thu fri sat sun e.g i.e a.m p.m u.s u.k u.n u.s.a ph.d b.a m.a d.c
    no nos vol vols fig figs p pp ch sec art eq ed eds op""".split()
)
"""Lower-cased tokens (without the final dot) after which a period does not end a sentence."""


@lru_cache(maxsize=1)
def _kiwi() -> Any:
    # One Kiwi per process: building it loads the bundled model (seconds).
    from kiwipiepy import Kiwi

    return Kiwi()


def _is_abbreviation(line: str, dot: int) -> bool:
    """Whether the period at `dot` closes an abbreviation or an initial ("J. Smith")."""
    start = max(line.rfind(" ", 0, dot), line.rfind("\t", 0, dot)) + 1
    token = line[start:dot].lstrip("\"'(\u201c\u2018[").lower()
    return token in ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def _split_english(line: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for m in _CANDIDATE.finditer(line):
        punct = m.group()
        if punct[0] == "." and not punct.startswith("..") and _is_abbreviation(line, m.start()):
            continue
        pieces.append(line[start : m.start() + len(m.group().rstrip())])
        start = m.end()
    pieces.append(line[start:])
    return pieces


def _lines(text: str) -> list[str]:
    # str.split + dropping blanks is `_LINES.split` (runs of newlines) at a third of the cost
    return [s for s in map(str.strip, text.split("\n")) if s]


def _split_korean_regex(line: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for m in _KO_BOUNDARY.finditer(line):
        pieces.append(line[start : m.start() + len(m.group().rstrip())])
        start = m.end()
    pieces.append(line[start:])
    return pieces


def split_sentences(text: str, lang: str, korean: Literal["kiwi", "regex"] = "kiwi") -> list[str]:
    """Sentences of `text`, stripped, empty ones dropped; newlines always end a sentence."""
    return split_sentences_many([text], [lang], korean)[0]


def split_sentences_many(
    texts: Sequence[str], langs: Sequence[str], korean: Literal["kiwi", "regex"] = "kiwi"
) -> list[list[str]]:
    """`split_sentences` of each (text, lang) pair; Korean lines of the whole batch go to Kiwi at once.

    `korean="regex"` splits Korean at sentence punctuation only: about a thousand times faster
    than Kiwi's morphological analysis, but blind to sentences that end without punctuation.
    """
    if korean == "regex":
        return [
            [p for line in _lines(text) for p in (piece.strip() for piece in
             (_split_korean_regex(line) if lang == "ko" else _split_english(line))) if p]
            for text, lang in zip(texts, langs, strict=True)
        ]
    out: list[list[str]] = []
    ko_lines: list[str] = []
    slots: list[tuple[int, int]] = []  # (document, index in its list) awaiting Kiwi's answer
    for text, lang in zip(texts, langs, strict=True):
        sentences: list[str] = []
        for line in _lines(text):
            if lang == "ko":
                slots.append((len(out), len(sentences)))
                ko_lines.append(line)
                sentences.append(line)  # replaced by Kiwi's sentences below
            else:
                sentences.extend(p for p in (piece.strip() for piece in _split_english(line)) if p)
        out.append(sentences)
    if ko_lines:
        answers = list(_kiwi().split_into_sents(ko_lines))
        # Replace from the back so earlier indices stay valid while lists grow.
        for (doc, index), sents in sorted(zip(slots, answers, strict=True), key=lambda pair: pair[0], reverse=True):
            pieces = [s for s in (sent.text.strip() for sent in sents) if s]
            out[doc][index : index + 1] = pieces
    return out
