"""Sentence splitting: Kiwi for Korean, an abbreviation-aware regex for everything else.

Newlines always end a sentence; sentences never cross a document, so the lists keep document
boundaries (NSP needs both). The batch API sends every Korean line of a batch to Kiwi in one
call, which is several times faster than one call per line, and splits every other line of the
batch in one regex pass over the batch's lines joined by newlines (see `_split_joined`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A candidate boundary: sentence punctuation (plus closing quotes/brackets), whitespace, then an
# upper-case letter, a digit or an opening quote/bracket. Decimals ("3.14") have no whitespace
# after the dot and never qualify; abbreviations are rejected in `_split_joined`. Group 1 is what
# stays with the sentence (the whitespace after it goes).
_CANDIDATE = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
# Korean has no letter case: any sentence punctuation (plus closing quotes) before whitespace ends
# a sentence; Kiwi also finds unpunctuated sentence-final endings, this regex does not.
_KO_BOUNDARY = re.compile(r"(?<=[.!?\u3002\u2026])([\"'\u201d\u2019)\]]*)\s+")
_CANDIDATE_SUB = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)[^\S\n]+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_KO_BOUNDARY_SUB = re.compile(r"(?<=[.!?\u3002\u2026])([\"'\u201d\u2019)\]]*)[^\S\n]+")
_OPENERS = "\"'(\u201c\u2018["
_WS = "".join(f"\\x{{{c:x}}}" for c in range(0x3001) if chr(c).isspace() and c != 0x0A)
"""Python's `\\s` (str.isspace) in RE2 syntax, newline aside: RE2's own `\\s` is ASCII only."""
_PREFILTER = f"[.!?][\"'\\x{{201d}}\\x{{2019}})\\]]*[{_WS}]+[\"'\\x{{201c}}\\x{{2018}}(\\[]?[A-Z0-9]"
"""RE2: a line holds an English candidate boundary only if this matches in it."""
_KO_PREFILTER = f"[.!?\\x{{3002}}\\x{{2026}}][\"'\\x{{201d}}\\x{{2019}})\\]]*[{_WS}]"
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


def _lines(text: str) -> list[str]:
    # str.split + dropping blanks is `re.split(r"\n+")` at a third of the cost
    return [s for s in map(str.strip, text.split("\n")) if s]


def _split_joined(texts: Sequence[str], korean: bool = False) -> list[list[str]]:
    """The sentences of each text by the English rule (`korean`: the Korean punctuation rule), all texts at once.

    Each line is stripped and blank lines go, as in `_lines`; the lines of all texts are joined by
    newlines into one string. One RE2 pass (Arrow, C++) flags the lines that hold a candidate
    boundary at all (`_PREFILTER`, a superset); only those are scanned by the boundary regex, each
    within its own line (`finditer` with pos/endpos), so every match and every abbreviation token
    is what the line alone would give. Each accepted boundary's whitespace becomes a newline, so
    one split yields every sentence; a sentence starts and ends with non-whitespace (the boundary
    regex ends its whitespace at a non-space and lines are stripped), so none needs stripping."""
    stripped = list(map(str.strip, "\n".join(texts).split("\n")))
    # per text, how many of its (stripped) lines are not blank
    raw_ends = np.fromiter(accumulate(t.count("\n") + 1 for t in texts), np.int64, len(texts))
    lengths = np.fromiter(map(len, stripped), np.int64, len(stripped))
    nonblank = np.zeros(len(stripped) + 1, np.int64)
    np.cumsum(lengths > 0, out=nonblank[1:])
    line_ends = nonblank[raw_ends]  # lines (not blank) of texts[:i + 1]
    lines = [s for s in stripped if s]
    del stripped
    joined = "\n".join(lines)
    lengths_nb = lengths[lengths > 0]
    starts = np.zeros(len(lines) + 1, np.int64)  # where each line starts in `joined`
    np.cumsum(lengths_nb + 1, out=starts[1:])
    flagged = np.flatnonzero(pc.match_substring_regex(pa.array(lines, pa.large_string()),
                                                      _KO_PREFILTER if korean else _PREFILTER)
                             .to_numpy(zero_copy_only=False))
    # the flagged lines joined: one regex pass (whitespace other than newlines: a match stays in its line)
    flagged_list = flagged.tolist()
    sub = "\n".join([lines[i] for i in flagged_list])
    sub_starts = np.zeros(len(flagged_list) + 1, np.int64)
    np.cumsum(lengths_nb[flagged] + 1, out=sub_starts[1:])
    cuts: list[int] = []  # in `sub`: end of the kept punctuation, start of the next sentence
    if korean:
        for m in _KO_BOUNDARY_SUB.finditer(sub):
            cuts += (m.end(1), m.end())
    else:
        rfind, abbreviations, openers = sub.rfind, ABBREVIATIONS, _OPENERS
        tabs = "\t" in sub  # normalised text has none
        for m in _CANDIDATE_SUB.finditer(sub):
            dot = m.start()
            if sub[dot] == "." and sub[dot + 1] != ".":  # a single period: abbreviation or initial?
                line = rfind("\n", 0, dot) + 1  # the token never reaches back past its line
                start = max(rfind(" ", line, dot), rfind("\t", line, dot) if tabs else -1, line - 1) + 1
                token = sub[start:dot].lstrip(openers).lower()
                if token in abbreviations or (len(token) == 1 and token.isalpha()):
                    continue
            cuts += (m.end(1), m.end())
    c = np.array(cuts, np.int64)
    k = np.searchsorted(sub_starts, c, "right") - 1  # which flagged line
    cut_lines_arr = flagged[k[::2]] if c.size else np.zeros(0, np.int64)
    bounds = [0, *(c - sub_starts[k] + starts[flagged[k]]).tolist()] if c.size else [0]
    cut_lines = cut_lines_arr
    bounds.append(len(joined))
    sentences = "\n".join([joined[bounds[i]:bounds[i + 1]] for i in range(0, len(bounds), 2)]).split("\n") \
        if lines else []
    # sentences per text: its lines, plus one per boundary accepted inside them
    per_line_cuts = np.bincount(np.asarray(cut_lines, np.int64), minlength=len(lines))
    cuts = np.zeros(len(lines) + 1, np.int64)
    np.cumsum(per_line_cuts, out=cuts[1:])
    ends = (line_ends + cuts[line_ends]).tolist()
    return [sentences[a:b] for a, b in zip([0, *ends[:-1]], ends)]


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
    if len(texts) != len(langs):
        raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
    out: list[list[str]] = [[] for _ in texts]
    ko = [i for i, lang in enumerate(langs) if lang == "ko"]
    if not ko:
        return _split_joined(texts) if texts else []
    ko_set = set(ko)
    other = [i for i in range(len(texts)) if i not in ko_set]
    for i, sents in zip(other, _split_joined([texts[i] for i in other]) if other else []):
        out[i] = sents
    if korean == "regex":
        for i, sents in zip(ko, _split_joined([texts[i] for i in ko], korean=True)):
            out[i] = sents
        return out
    ko_lines: list[str] = []
    owners: list[int] = []  # the text of each Korean line
    for i in ko:
        lines = _lines(texts[i])
        ko_lines += lines
        owners += [i] * len(lines)
    if ko_lines:
        for i, sents in zip(owners, _kiwi().split_into_sents(ko_lines)):
            out[i].extend(s for s in (sent.text.strip() for sent in sents) if s)
    return out
