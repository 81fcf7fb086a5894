import pytest

from plm.corpus.sentences import split_sentences, split_sentences_many
from plm.samples import SampleNotFound, resolve_sample


def test_english_regex_splitter():
    text = 'It rained. "Stop!" she said. Then 3 dogs ran? Yes... e.g. this stays.\nNew paragraph here'
    assert split_sentences(text, "en") == [
        "It rained.",
        '"Stop!" she said.',
        "Then 3 dogs ran?",
        "Yes... e.g. this stays.",
        "New paragraph here",
    ]


def test_english_abbreviations_initials_and_decimals():
    text = (
        "Mr. Smith went to Washington. He arrived at 3.15 p.m. on Monday. The U.S. Army was there, "
        'e.g. Gen. Jones. It cost $4.50! Really? J. R. R. Tolkien wrote "The Hobbit." (It sold well.) '
        "See No. 5 and Fig. 3 today. Version 2.0 shipped."
    )
    assert split_sentences(text, "en") == [
        "Mr. Smith went to Washington.",
        "He arrived at 3.15 p.m. on Monday.",
        "The U.S. Army was there, e.g. Gen. Jones.",
        "It cost $4.50!",
        "Really?",
        'J. R. R. Tolkien wrote "The Hobbit."',
        "(It sold well.)",
        "See No. 5 and Fig. 3 today.",
        "Version 2.0 shipped.",
    ]


def test_empty_and_blank_lines_dropped():
    assert split_sentences("\n\n  \n", "en") == []
    assert split_sentences("", "ko") == []
    assert split_sentences_many([], []) == []


def test_korean_with_kiwi():
    text = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.\n제2조 국민의 요건은 법률로 정한다."
    assert split_sentences(text, "ko") == [
        "대한민국은 민주공화국이다.",
        "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
        "제2조 국민의 요건은 법률로 정한다.",
    ]


def _sample(name: str) -> str:
    try:
        return resolve_sample(name)[0].read_text()
    except SampleNotFound:
        pytest.skip(f"{name} not installed")


def test_batch_equals_single_on_real_mixed_text():
    ko = [p for p in _sample("sample:ko-constitution").split("\n\n") if p.strip()][:20]
    en = [d for d in _sample("sample:lee").split("\n") if d.strip()][:20]
    texts = [t for pair in zip(ko, en) for t in pair]  # interleaved languages, document order kept
    langs = ["ko", "en"] * (len(texts) // 2)
    batch = split_sentences_many(texts, langs)
    assert batch == [split_sentences(t, lang) for t, lang in zip(texts, langs)]
    assert all(batch) and sum(map(len, batch)) > len(texts)
    korean = [s for doc in batch[::2] for s in doc]
    assert "제1조 ① 대한민국은 민주공화국이다." in korean  # one line, two sentences
    assert "②대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다." in korean


def test_lee_sentences_do_not_end_on_abbreviations():
    docs = [d for d in _sample("sample:lee").split("\n") if d.strip()]
    sentences = [s for doc in split_sentences_many(docs, ["en"] * len(docs)) for s in doc]
    assert len(sentences) > 2 * len(docs)
    last_words = {s.split()[-1].lower() for s in sentences}
    assert not last_words & {"mr.", "mrs.", "dr.", "u.s.", "st."}


def test_korean_regex_splitter_agrees_with_kiwi_on_punctuated_text():
    text = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.\n\"그렇다.\" 그는 말했다! 정말?"
    assert split_sentences(text, "ko", korean="regex") == [
        "대한민국은 민주공화국이다.",
        "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
        '"그렇다."',
        "그는 말했다!",
        "정말?",
    ]
    assert split_sentences("Mr. Kim arrived. He left.", "en", korean="regex") == ["Mr. Kim arrived.", "He left."]


# ---------------------------------------------------------------- the batch splitter vs the per-line algorithm

import re  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from plm.corpus.sentences import ABBREVIATIONS  # noqa: E402

_REF_CANDIDATE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_REF_KO = re.compile(r"(?<=[.!?\u3002\u2026])[\"'\u201d\u2019)\]]*\s+")


def _reference_lines(text: str) -> list[str]:
    return [s for s in map(str.strip, text.split("\n")) if s]


def _reference_english(line: str) -> list[str]:
    """The per-line algorithm the batch splitter replaced (plm 0.x, sentences.py before session 6), kept as the oracle."""
    pieces, start = [], 0
    for m in _REF_CANDIDATE.finditer(line):
        punct = m.group()
        if punct[0] == "." and not punct.startswith(".."):
            tok_start = max(line.rfind(" ", 0, m.start()), line.rfind("\t", 0, m.start())) + 1
            token = line[tok_start : m.start()].lstrip("\"'(\u201c\u2018[").lower()
            if token in ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                continue
        pieces.append(line[start : m.start() + len(m.group().rstrip())])
        start = m.end()
    pieces.append(line[start:])
    return pieces


def _reference_korean(line: str) -> list[str]:
    pieces, start = [], 0
    for m in _REF_KO.finditer(line):
        pieces.append(line[start : m.start() + len(m.group().rstrip())])
        start = m.end()
    pieces.append(line[start:])
    return pieces


def _reference(texts: list[str], langs: list[str]) -> list[list[str]]:
    return [[p for line in _reference_lines(t) for p in (x.strip() for x in
             (_reference_korean(line) if lang == "ko" else _reference_english(line))) if p]
            for t, lang in zip(texts, langs)]


# Characters that move boundaries: sentence punctuation, closing and opening quotes and brackets, upper case and
# digits (a boundary needs one next), letters and single letters (initials: `J.`), every kind of whitespace
# Python's `\s` and `str.strip` know (line breaks other than \n stay inside a line), Hangul, CJK full stop.
_ATOMS = st.sampled_from([
    ".", ".", ". ", "..", "...", "!", "?", "?!", "\"", "'", "\u201d", "\u2019", ")", "]", "\u201c", "\u2018", "(", "[",
    "A", "T", "Z", "3", "0", "a", "e", "x", "é", "É", "가", "나", "\u3002", "\u2026", " ", " ", "  ", "\t", "\n", "\n",
    "\n\n", " \n ", "\xa0", "\u2003", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "-", ",", "#",
    "Mr", "mr", "Dr", "e.g", "i.e", "U.S", "u.s.a", "Fig", "No", "etc", "vs", "p", "St", "word", "Word", "The",
])
_TEXT = st.lists(_ATOMS, max_size=40).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_TEXT, st.sampled_from(["en", "de", "und"])), max_size=12))
def test_batch_splitter_equals_the_per_line_algorithm(docs):
    texts, langs = [t for t, _ in docs], [lang for _, lang in docs]
    assert split_sentences_many(texts, langs) == _reference(texts, langs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_TEXT, st.sampled_from(["en", "ko"])), max_size=12))
def test_batch_korean_regex_splitter_equals_the_per_line_algorithm(docs):
    texts, langs = [t for t, _ in docs], [lang for _, lang in docs]
    assert split_sentences_many(texts, langs, korean="regex") == _reference(texts, langs)


def test_batch_splitter_equals_the_per_line_algorithm_on_real_text():
    docs = [d for d in _sample("sample:lee").split("\n\n") if d.strip()]
    docs = docs + ["", "\n \n", "Mr.\nSmith. Went", "end.\nThe next. \u201cQuoted.\u201d Then",
                   "Ask\tMr. Smith. He came\tJ. Doe. No\xa0Dr. Who", "x\xa0Mr. Y. Z"] + docs[:5]
    langs = ["en"] * len(docs)
    got = split_sentences_many(docs, langs)
    assert got == _reference(docs, langs)
    assert sum(map(len, got)) > len(docs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT, st.booleans())
def test_re2_candidate_marks_equal_pythons_split(text, korean):
    """The RE2 pass (Arrow) that marks candidates cuts exactly where `re.split` with Python's pattern cuts."""
    from plm.corpus.sentences import _CANDIDATE_SPLIT, _KO_BOUNDARY_SPLIT, _split_candidates

    joined = "\n".join(_reference_lines(text))
    assert _split_candidates(joined, korean) == (_KO_BOUNDARY_SPLIT if korean else _CANDIDATE_SPLIT).split(joined)


def test_tokens_reaching_back_past_other_whitespace_and_nul_texts():
    # the token before "Mr." starts at the line, not after the ideographic space of the boundary before it
    texts = ["Hi.\u3000Mr. Smith came. Then Dr. No left.", "Ask.\u2003J. Doe. Yes", "A\x00b. Mr. C. D. E", "x. Y"]
    langs = ["en"] * len(texts)
    assert split_sentences_many(texts, langs) == _reference(texts, langs)
    assert split_sentences_many(texts, ["ko"] * 4, korean="regex") == _reference(texts, ["ko"] * 4)
