import random
import re
import unicodedata

import pytest

from plm.corpus.normalize import detect_lang, detect_langs, normalize_many, normalize_text


def reference(text: str, form: str = "NFC") -> str:
    """The rules written plainly (slow): what the fast paths must reproduce."""
    text = unicodedata.normalize(form, text) if form == "NFC" else _nfkc_keep_compat_jamo(text)
    text = re.sub(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", "\n", text)
    text = re.sub(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ufeff\u200b]", "", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _nfkc_keep_compat_jamo(text: str) -> str:
    return "".join(p if re.fullmatch(r"[\u3131-\u318e]+", p) else unicodedata.normalize("NFKC", p)
                   for p in re.split(r"([\u3131-\u318e]+)", text))


def test_nfc_composes_decomposed_hangul():
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert len(decomposed) == 8
    assert normalize_text(decomposed) == "한국어"
    assert normalize_text("\u1100\u1161\u11a8") == "각"  # conjoining jamo L V T
    assert normalize_text("가\u11a8") == "각"  # syllable + trailing consonant
    assert normalize_text("\u1140\u1161") == "\u1140\u1161"  # archaic jamo: no precomposed syllable


def test_compatibility_jamo_kept_under_nfkc():
    assert normalize_text("ㅋㅋㅋ 좋아요 ㄱㅏ", "NFKC") == "ㅋㅋㅋ 좋아요 ㄱㅏ"
    assert normalize_text("ｆｕｌｌ①ㅋㅋ", "NFKC") == "full1ㅋㅋ"


def test_nfkc_folds_compatibility_forms():
    assert normalize_text("ｆｕｌｌ①", "NFKC") == "full1"
    assert normalize_text("ｆｕｌｌ", "NFC") == "ｆｕｌｌ"


def test_controls_removed_whitespace_collapsed():
    text = "\ufeff  a\x00b\x07  c\t\td \r\n\r\n\r\n\r\n  e\u00a0\u3000f \n\x0cg  "
    assert normalize_text(text) == "ab c d\n\ne f\n\ng"  # form feed counts as a line break


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_batch_and_single_match_the_reference(form):
    rng = random.Random(7)
    alphabet = list("ab 한국\n\t\r\x00\x07\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u00a0\u3000\ufeff\u200b") + [
        "\u1100", "\u1161", "\u11a8", "\u0301", "ㄱ", "ㅏ", "ｆ", "①", "  ", "\n\n\n", "\U0001f600",
    ]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(5000)]
    texts += ["x" * 70_000, "long " * 20_000]  # past the batch chunk size
    expected = [reference(t, form) for t in texts]
    assert [normalize_text(t, form) for t in texts] == expected
    assert normalize_many(texts, form) == expected
    clean = [t.replace("\x1d", "") for t in texts]  # the joined fast path (no separator inside)
    assert normalize_many(clean, form) == [reference(t, form) for t in clean]
    assert normalize_many([]) == []


def test_detect_lang_heuristic():
    assert detect_lang("대한민국 헌법 제1조 (Constitution)") == "ko"
    assert detect_lang("The Korean word 한국 appears once in this sentence.") == "en"
    assert detect_lang("12345 !!!") == "en"


def test_detect_langs_model_shipped_in_package():
    texts = [
        "대한민국은 민주공화국이다. 모든 권력은 국민으로부터 나온다.",
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.",
        "Le renard brun rapide saute par-dessus le chien paresseux au bord de la rivière.",
        "12345 !!!",
        "ㅋㅋ",
    ]
    assert detect_langs(texts) == ["ko", "en", "de", "fr", "und", "und"]
    assert detect_langs([]) == []
