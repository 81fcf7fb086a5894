"""The word-cache fast path encodes exactly like the tokenizer itself, on real English and Korean text."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import TokenizerSpec
from plm.samples import resolve_sample
from plm.tokenizer.encode import encode_documents
from plm.tokenizer.train import train_tokenizer
from plm.tokenizer.wordcache import WordCacheEncoder, bert_style

HOSTILE = [
    "tab\there\nnew line\r\nand\u00a0nbsp\u2003em-space\u2028line-sep\u2029para-sep end",
    "zero\u200bwidth\u200djoiner \u0007bell \x00nul \ufffdreplacement \ue000private",
    "中文字符和日本語の漢字 mixed with ascii 𠀀 ext-b",
    "punctuation!?…—«quotes» “curly” ‘single’ ¿inverted? ¡yes! a.b,c;d:e (f) [g] {h} <i> $5 ^ ` | ~ +=",
    "emoji 😀🎉 and combining e\u0301 vs \u00e9, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ",
    "한국어 자모 \u1112\u1161\u11ab 와 호환 자모 ㅎㅏㄴ, 대한민국은 민주공화국이다.",
    "ΑΒΓ Σίσυφος ÄÖÜ straße İstanbul ǅ ẞ",
    "   ",
    "",
    "a" * 150 + " " + "가" * 120,
]


def corpus_sentences() -> list[str]:
    gensim = pytest.importorskip("gensim")  # noqa: F841 - the samples ship inside gensim and konlpy
    pytest.importorskip("konlpy")
    texts: list[str] = []
    for name in ("sample:lee", "sample:ko-constitution", "sample:polarity"):
        for path in resolve_sample(name):
            raw = path.read_bytes()
            text = raw.decode("utf-8", errors="strict") if name != "sample:polarity" else raw.decode("cp1252")
            texts.extend(line for line in text.splitlines()[:1500])
    return texts + HOSTILE


def lake(tmp_path, texts: list[str]):
    rows = [{"doc_id": f"{i:016x}", "lang": "", "split": "train", "sentences": texts[i : i + 7]} for i in range(0, len(texts), 7)]
    path = tmp_path / "lake.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return [path]


@pytest.mark.parametrize(
    "kind,lowercase,form", [("wordpiece", True, "NFC"), ("wordpiece", False, "NFKC"), ("bpe", True, "NFC")]
)
def test_fast_path_equals_the_tokenizer_on_real_text(kind, lowercase, form, tmp_path):
    texts = corpus_sentences()
    files = lake(tmp_path, texts)
    cfg = TokenizerSpec(kind=kind, lowercase=lowercase, normalization=form, vocab_size=2000, min_frequency=2)
    tok = train_tokenizer(cfg, files, tmp_path / "tok.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    enc = WordCacheEncoder.for_tokenizer(tok)
    assert enc is not None
    enc._agrees = lambda texts, result: True  # compare every sentence here, not a sample
    fast = [ids for i in range(0, len(texts), 1000) for ids in enc.encode(texts[i : i + 1000])]
    reference = tok.encode_batch(texts, add_special_tokens=False)
    mismatches = [t for t, f, r in zip(texts, fast, reference, strict=True) if f.tolist() != r.ids]
    assert mismatches == []
    assert len(enc.cache) > 0 and all(f.dtype == np.int32 for f in fast)


def test_encode_documents_uses_the_fast_path_and_matches(tmp_path):
    texts = corpus_sentences()[:3000]
    files = lake(tmp_path, texts)
    tok = train_tokenizer(TokenizerSpec(vocab_size=1000), files, tmp_path / "tok.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    docs = encode_documents(tok, files, "train")
    reference = tok.encode_batch([t for t in texts], add_special_tokens=False)
    flat = [ids.tolist() for d in docs for ids in d.sentences]
    assert flat == [r.ids for r in reference if r.ids]


def test_a_disagreeing_batch_falls_back_to_the_tokenizer(tmp_path):
    files = lake(tmp_path, corpus_sentences()[:500])
    tok = train_tokenizer(TokenizerSpec(vocab_size=500, lowercase=True), files, tmp_path / "tok.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    enc = WordCacheEncoder.for_tokenizer(tok)
    texts = ["ordinary words here"] * 20
    assert [o.tolist() for o in enc.encode(texts)] == [r.ids for r in tok.encode_batch(texts, add_special_tokens=False)]
    slot = enc.cache["words"]
    enc._ids[enc._start[slot]] = 3  # a corrupted cache entry
    out = enc.encode(texts)
    assert enc.fallbacks == 1
    assert [o.tolist() for o in out] == [r.ids for r in tok.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("kind", ["bytelevel_bpe", "unigram"])
def test_other_pre_tokenizers_take_the_tokenizer_path(kind, tmp_path):
    files = lake(tmp_path, corpus_sentences()[:300])
    family = "gpt" if kind == "bytelevel_bpe" else "bert"
    tok = train_tokenizer(TokenizerSpec(kind=kind, family=family, vocab_size=300), files, tmp_path / "tok.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    assert bert_style(tok) is None and WordCacheEncoder.for_tokenizer(tok) is None


def test_every_unicode_space_separates_words_as_the_tokenizer_does(tmp_path):
    """The whitespace class lists Zs by hand (the plain space left out): each Zs character, tab, newline,
    CR and the line/paragraph separators between two words, compared with the tokenizer."""
    import sys
    import unicodedata

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Zs"]
    spaces += ["\t", "\n", "\r", "\u2028", "\u2029"]
    files = lake(tmp_path, corpus_sentences()[:300])
    tok = train_tokenizer(TokenizerSpec(vocab_size=300), files, tmp_path / "tok.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    enc = WordCacheEncoder.for_tokenizer(tok)
    texts = [f"left{s}right{s}{s}end" for s in spaces] + ["left\u200bright"]  # ZWSP is Cf: removed, not a space
    out = [enc.encode([t])[0] for t in texts]  # one text a batch: each is checked, a miss is a fallback
    reference = tok.encode_batch(texts, add_special_tokens=False)
    assert [o.tolist() for o in out] == [r.ids for r in reference]
    assert enc.fallbacks == 0
    assert len(reference[0].ids) > len(reference[-1].ids)  # the spaces did split the words


def test_unseen_words_told_apart_by_the_continuation_flag_equal_the_word_id_path(tmp_path):
    """WordPiece's unseen words go through `encode_batch_fast`, split into words at each non-`##` token; the
    per-word ids equal those from the tokenizer's word ids (the path BPE takes), on words of any characters."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    files = lake(tmp_path, corpus_sentences()[:500])
    tok = train_tokenizer(TokenizerSpec(vocab_size=500), files, tmp_path / "tok.json")
    tok = tok[0] if isinstance(tok, tuple) else tok
    enc = WordCacheEncoder.for_tokenizer(tok)
    assert enc.continuation is not None
    alphabet = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789éß한국어대민") + ["中", "😀", "\u0301"])
    words = st.lists(st.text(alphabet, min_size=1, max_size=110), min_size=1, max_size=60)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(words)
    def check(ws):
        fast_ids, fast_counts = enc._model_pieces(ws)
        enc.continuation, kept = None, enc.continuation
        try:
            ref_ids, ref_counts = enc._model_pieces(ws)
        finally:
            enc.continuation = kept
        assert np.array_equal(fast_ids, ref_ids) and np.array_equal(fast_counts, ref_counts)
        assert len(fast_counts) == len(ws) and fast_counts.min() >= 1

    check()
