from plm.corpus.sentences import split_sentences


def test_english_regex_splitter():
    text = 'It rained. "Stop!" she said. Then 3 dogs ran? Yes... e.g. this stays.\nNew paragraph here'
    assert split_sentences(text, "en") == [
        "It rained.",
        '"Stop!" she said.',
        "Then 3 dogs ran?",
        "Yes... e.g. this stays.",
        "New paragraph here",
    ]


def test_empty_and_blank_lines_dropped():
    assert split_sentences("\n\n  \n", "en") == []
    assert split_sentences("", "ko") == []


def test_korean_with_kiwi():
    text = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.\n제2조 국민의 요건은 법률로 정한다."
    assert split_sentences(text, "ko") == [
        "대한민국은 민주공화국이다.",
        "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
        "제2조 국민의 요건은 법률로 정한다.",
    ]
