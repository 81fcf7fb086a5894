import numpy as np
import pyarrow.parquet as pq
import pytest

from plm.config import TokenizerSpec
from plm.tokenizer.encode import ENCODED_SCHEMA, EncodedDoc, encode_documents, read_encoded, write_encoded
from plm.tokenizer.specials import SpecialIds
from plm.tokenizer.train import train_tokenizer

KINDS = ["wordpiece", "bpe", "bytelevel_bpe", "unigram"]


def trained(kind, lake, tmp_path, vocab=200):
    cfg = TokenizerSpec(kind=kind, family="gpt" if kind == "bytelevel_bpe" else "bert", vocab_size=vocab, min_frequency=1)
    return train_tokenizer(cfg, lake, tmp_path / f"{kind}.json")


@pytest.mark.parametrize("kind", KINDS)
def test_encode_with_words_aligns_words_offsets_and_texts(kind, mixed_lake, tmp_path):
    tok = trained(kind, mixed_lake, tmp_path)
    plain = encode_documents(tok, mixed_lake, "train")
    docs = encode_documents(tok, mixed_lake, "train", with_words=True)
    assert len(docs) == len(plain) == 64 and [d.doc_id for d in docs] == [d.doc_id for d in plain]
    assert {d.lang for d in docs} == {"ko", "en"} and plain[0].word_ids is None and plain[0].lang == docs[0].lang
    specials = SpecialIds.from_tokenizer(tok)
    for doc, ref in zip(docs, plain, strict=True):
        assert len(doc.sentences) == len(doc.word_ids) == len(doc.starts) == len(doc.texts) == 3
        for ids, words, starts, text, ref_ids in zip(doc.sentences, doc.word_ids, doc.starts, doc.texts, ref.sentences, strict=True):
            assert np.array_equal(ids, ref_ids) and ids.dtype == words.dtype == starts.dtype == np.int32
            assert not np.isin(ids, list(specials.all)).any()
            # Words are whitespace words, punctuation split off or not depending on the pre-tokenizer.
            assert words[0] == 0 and np.all(np.diff(words) >= 0)
            assert len(text.split()) <= words[-1] + 1 <= len(text.split()) + text.count(".")
            assert np.all((starts >= 0) & (starts < len(text))) and np.all(np.diff(starts) >= 0)
            # A word's first token starts on a letter, never on the space before it.
            first = np.r_[True, words[1:] != words[:-1]]
            assert all(not text[s].isspace() for s in starts[first])


def test_wordpiece_continuations_share_their_word(mixed_lake, tmp_path):
    tok = trained("wordpiece", mixed_lake, tmp_path, vocab=120)
    doc = encode_documents(tok, mixed_lake, "train", with_words=True)[1]
    tokens = [tok.id_to_token(int(i)) for i in doc.sentences[0]]
    words = doc.word_ids[0]
    assert any(t.startswith("##") for t in tokens)
    for k, t in enumerate(tokens):
        assert (k > 0 and words[k] == words[k - 1]) == t.startswith("##")


def test_bytelevel_korean_starts_point_at_syllables(mixed_lake, tmp_path):
    tok = trained("bytelevel_bpe", mixed_lake, tmp_path, vocab=300)
    doc = next(d for d in encode_documents(tok, mixed_lake, "validation", with_words=True) if d.lang == "ko")
    text, starts, words = doc.texts[0], doc.starts[0], doc.word_ids[0]
    word_starts = {i for i, c in enumerate(text) if not c.isspace() and (i == 0 or text[i - 1].isspace())}
    first = np.r_[True, words[1:] != words[:-1]]
    assert word_starts <= set(starts[first].tolist())


@pytest.mark.parametrize("with_words", [False, True])
def test_encoded_parquet_round_trip(with_words, mixed_lake, tmp_path):
    tok = trained("wordpiece", mixed_lake, tmp_path)
    docs = encode_documents(tok, mixed_lake, "train", with_words=with_words)
    paths = write_encoded(docs, tmp_path / "enc", rows_per_shard=25)
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.read_schema(paths[0]).remove_metadata() == ENCODED_SCHEMA
    back = read_encoded(paths)
    assert len(back) == len(docs)
    for a, b in zip(docs, back, strict=True):
        assert (a.doc_id, a.lang, a.texts) == (b.doc_id, b.lang, b.texts)
        assert all(np.array_equal(x, y) and y.dtype == np.int32 for x, y in zip(a.sentences, b.sentences, strict=True))
        for field in ("word_ids", "starts"):
            if with_words:
                assert all(np.array_equal(x, y) for x, y in zip(getattr(a, field), getattr(b, field), strict=True))
            else:
                assert getattr(b, field) is None


def test_round_trip_mixes_docs_with_and_without_words(tmp_path):
    ids = [np.array([5, 6], np.int32), np.array([], np.int32), np.array([7], np.int32)]
    docs = [
        EncodedDoc("a", ids, [np.array([0, 1], np.int32), np.array([], np.int32), np.array([0], np.int32)],
                   [np.array([0, 2], np.int32), np.array([], np.int32), np.array([0], np.int32)], ["x y", "", "z"], "en"),
        EncodedDoc("b", [np.array([9], np.int32)]),
    ]  # fmt: skip
    back = read_encoded(write_encoded(docs, tmp_path, rows_per_shard=10))
    assert back[1].word_ids is None and back[1].texts is None and back[1].lang == ""
    assert [len(s) for s in back[0].sentences] == [2, 0, 1] and back[0].word_ids[0].tolist() == [0, 1]
    assert back[0].texts == ["x y", "", "z"] and back[1].sentences[0].tolist() == [9]
    assert write_encoded([], tmp_path / "none") == [] and read_encoded([]) == []
