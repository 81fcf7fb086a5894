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
