import unicodedata

from plm.corpus.normalize import detect_lang, normalize_text


def test_nfc_composes_decomposed_hangul():
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert len(decomposed) == 8
    assert normalize_text(decomposed) == "한국어"


def test_nfkc_folds_compatibility_forms():
    assert normalize_text("ｆｕｌｌ①", "NFKC") == "full1"
    assert normalize_text("ｆｕｌｌ", "NFC") == "ｆｕｌｌ"


def test_controls_removed_whitespace_collapsed():
    text = "\ufeff  a\x00b\x07  c\t\td \r\n\r\n\r\n\r\n  e\u00a0\u3000f \n\x0cg  "
    assert normalize_text(text) == "ab c d\n\ne f\n\ng"  # form feed counts as a line break


def test_detect_lang_heuristic():
    assert detect_lang("대한민국 헌법 제1조 (Constitution)") == "ko"
    assert detect_lang("The Korean word 한국 appears once in this sentence.") == "en"
    assert detect_lang("12345 !!!") == "en"
