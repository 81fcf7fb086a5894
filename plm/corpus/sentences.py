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
from itertools import compress, repeat
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A candidate boundary: sentence punctuation (plus closing quotes/brackets), whitespace, then an
# upper-case letter, a digit or an opening quote/bracket. Decimals ("3.14") have no whitespace
# after the dot and never qualify; abbreviations are rejected in `_accepted`. Group 1 is what
# stays with the sentence, group 2 the whitespace that goes (never a newline: over lines joined by
# newlines, a boundary stays inside its line), as `re.split` returns them.
_CANDIDATE_SPLIT = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)([^\S\n]+)(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
# Korean has no letter case: any sentence punctuation (plus closing quotes) before whitespace ends
# a sentence; Kiwi also finds unpunctuated sentence-final endings, this regex does not.
_KO_BOUNDARY_SPLIT = re.compile(r"(?<=[.!?\u3002\u2026])([\"'\u201d\u2019)\]]*)([^\S\n]+)")
_OPENERS = "\"'(\u201c\u2018["
_WS = "".join(f"\\x{{{c:x}}}" for c in range(0x3001) if chr(c).isspace() and c != 0x0A)
"""Python's `\\s` (str.isspace: nothing above U+3000) in RE2 syntax, newline aside: RE2's own `\\s` is ASCII only."""
_RE2_SPLIT = {
    # the lookahead consumed (RE2 has none) and put back after the marks: it never starts a candidate itself
    False: (f"([.!?]+[\"'\\x{{201d}}\\x{{2019}})\\]]*)([{_WS}]+)([\"'\\x{{201c}}\\x{{2018}}(\\[]?[A-Z0-9])",
            "\x00\\1\x00\\2\x00\\3"),
    # the lookbehind consumed and put back before the marks: a candidate ends in whitespace, never in punctuation
    True: (f"([.!?\\x{{3002}}\\x{{2026}}])([\"'\\x{{201d}}\\x{{2019}})\\]]*)([{_WS}]+)", "\\1\x00\\2\x00\\3\x00"),
}
"""`_CANDIDATE_SPLIT` and `_KO_BOUNDARY_SPLIT` as RE2 patterns (Arrow) whose replacement marks each candidate's
groups with NULs, so splitting the result on NUL gives what `re.split` gives, several times faster."""


def _split_candidates(joined: str, korean: bool) -> list[str]:
    """`re.split` of `joined` by the candidate pattern: RE2 marks the groups, one split cuts them (a text holding
    a NUL itself goes to Python's engine)."""
    if "\x00" in joined:
        return (_KO_BOUNDARY_SPLIT if korean else _CANDIDATE_SPLIT).split(joined)
    pattern, marks = _RE2_SPLIT[korean]
    marked = pc.replace_substring_regex(pa.array([joined], pa.large_string()), pattern, marks)
    return marked[0].as_py().split("\x00")
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

    Each line is stripped and blank lines go, as in `_lines`; the lines of all texts are joined by newlines into
    one string and `re.split` cuts it at every candidate boundary in one C-level pass (a match never leaves its
    line: its whitespace excludes the newline and the lookahead needs a non-space). The pieces come back as
    (text, punctuation, whitespace) triples; their lengths give every position, and the abbreviation rule is
    decided over whole lists (the token before a single period is the tail of the text piece, or the piece
    itself after the previous boundary). The whitespace of each accepted boundary becomes a newline, so one join
    and one split yield every sentence; a sentence starts and ends with non-whitespace (lines are stripped and a
    boundary's whitespace ends at a non-space), so none needs stripping."""
    counts = np.fromiter(map(str.count, texts, repeat("\n")), np.int64, len(texts))
    stripped = list(map(str.strip, "\n".join(texts).split("\n")))
    lengths = np.fromiter(map(len, stripped), np.int64, len(stripped))
    nonblank = np.zeros(len(stripped) + 1, np.int64)
    np.cumsum(lengths > 0, out=nonblank[1:])
    line_ends = nonblank[np.cumsum(counts + 1)]  # lines (not blank) of texts[:i + 1]
    lines = stripped if nonblank[-1] == len(stripped) else list(compress(stripped, lengths > 0))
    del stripped
    if not lines:
        return [[] for _ in texts]
    joined = "\n".join(lines)
    starts = np.zeros(len(lines) + 1, np.int64)  # where each line starts in `joined`
    np.cumsum(lengths[lengths > 0] + 1, out=starts[1:])
    parts = _split_candidates(joined, korean)
    if korean:
        accepted = np.arange(len(parts) // 3)
    else:
        accepted = _accepted(parts)
    ends = np.cumsum(np.fromiter(map(len, parts), np.int64, len(parts)))
    cut_lines = np.searchsorted(starts, ends[3 * accepted + 1], "right") - 1  # the line of each accepted boundary
    for i in (3 * accepted + 2).tolist():
        parts[i] = "\n"
    sentences = "".join(parts).split("\n")
    del parts
    per_line = np.zeros(len(lines) + 1, np.int64)
    np.cumsum(np.bincount(cut_lines, minlength=len(lines)), out=per_line[1:])
    bounds = (line_ends + per_line[line_ends]).tolist()
    return [sentences[a:b] for a, b in zip([0, *bounds[:-1]], bounds)]


def _accepted(parts: list[str]) -> np.ndarray:
    """Which candidate boundaries of `_CANDIDATE_SPLIT.split(joined)` stand: all but a single period after an
    abbreviation or a single letter. `parts` is text, (punctuation, whitespace, text) per candidate."""
    n = len(parts) // 3
    texts, puncts, spaces = parts[0::3], parts[1::3], parts[2::3]
    single = np.fromiter(map(str.startswith, puncts, repeat(".")), np.bool_, n)
    single &= ~np.fromiter(map(str.startswith, puncts, repeat("..")), np.bool_, n)
    check = np.flatnonzero(single)  # a single period: abbreviation or initial?
    if not check.size:
        return np.arange(n)
    before = [texts[i] for i in check.tolist()]  # the text between the previous boundary (or line) and the period
    cut = np.fromiter(map(str.rfind, before, repeat(" ")), np.int64, len(before))
    for sep in ("\t", "\n"):
        np.maximum(cut, np.fromiter(map(str.rfind, before, repeat(sep)), np.int64, len(before)), out=cut)
    tokens = list(map(str.__getitem__, before, map(slice, (cut + 1).tolist(), repeat(None))))
    # no separator in the piece: the token starts at the previous boundary when its whitespace ends in a space or
    # tab (or at the very start), else further back (a boundary after other whitespace: looked up in full)
    far = np.flatnonzero(cut < 0)
    if far.size:
        prev = check[far] - 1
        ok = np.ones(far.size, np.bool_)
        has_prev = prev >= 0
        ok[has_prev] = np.fromiter(map(str.endswith, [spaces[i] for i in prev[has_prev].tolist()], repeat((" ", "\t"))),
                                   np.bool_, int(has_prev.sum()))
        if not ok.all():
            joined = "".join(parts)
            ends = np.cumsum(np.fromiter(map(len, parts), np.int64, len(parts)))
            for j in far[~ok].tolist():
                dot = int(ends[3 * check[j]])
                line = joined.rfind("\n", 0, dot) + 1
                tokens[j] = joined[max(joined.rfind(" ", line, dot), joined.rfind("\t", line, dot), line - 1) + 1 : dot]
    tokens = list(map(str.lower, map(str.lstrip, tokens, repeat(_OPENERS))))
    abbreviation = np.fromiter(map(ABBREVIATIONS.__contains__, tokens), np.bool_, len(tokens))
    abbreviation |= (np.fromiter(map(len, tokens), np.int64, len(tokens)) == 1) & np.fromiter(
        map(str.isalpha, tokens), np.bool_, len(tokens))
    keep = np.ones(n, np.bool_)
    keep[check[abbreviation]] = False
    return np.flatnonzero(keep)


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
