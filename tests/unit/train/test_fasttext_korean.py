"""Korean options of the word-vector families: Kiwi morpheme words, jamo n-grams, and a jamo model's `.bin`
loading in gensim and Facebook's fasttext with the same vectors for unseen words (given as jamo)."""

import unicodedata

import numpy as np
import pytest
import torch

from plm.config import FastTextSpec, SkipgramSpec
from plm.objectives.skipgram import build_vocab, split_words, split_words_batch
from plm.objectives.subwords import char_ngrams, decompose_jamo, ngram_buckets, subword_table
from plm.train.fasttext import SubwordVectors, build_fasttext, export_words, save_fasttext_bin, save_fasttext_folder

WORDS = ["국민", "국민은", "국민의", "학교", "학교에서", "권리"]
JAMO = FastTextSpec(dim=8, minn=3, maxn=5, buckets=97, subword="jamo")


def test_jamo_decomposition_is_nfd_on_hangul_and_leaves_the_rest():
    syllables = "".join(chr(c) for c in range(0xAC00, 0xD7A4))
    assert decompose_jamo(syllables) == unicodedata.normalize("NFD", syllables)
    assert decompose_jamo("café 학교1") == "café " + unicodedata.normalize("NFD", "학교") + "1"  # é stays whole
    assert char_ngrams(decompose_jamo("각"), 3, 3) == ["<\u1100\u1161", "\u1100\u1161\u11a8", "\u1161\u11a8>"]
    with pytest.raises(ValueError, match="subword must be one of"):
        ngram_buckets("학교", 3, 5, 97, "syllable")


def test_morpheme_words_split_eojeol_into_kiwi_morphemes():
    assert split_words("학교에서 공부했다.", True) == ["학교에서", "공부했다"]
    assert split_words("학교에서 공부했다.", True, "morpheme") == ["학교", "에서", "공부", "하", "었", "다"]
    assert split_words_batch(["The Film!", "국민의 권리"], True, "morpheme") == [["the", "film"], ["국민", "의", "권리"]]
    vocab = build_vocab([["국민의 권리", "국민은 권리를"]], 2, True, "morpheme")
    assert vocab.words == ["국민", "권리"]
    with pytest.raises(ValueError, match="word_unit must be one of"):
        split_words("x", True, "syllable")
    with pytest.raises(ValueError):
        SkipgramSpec(word_unit="syllable")


@pytest.fixture(scope="module")
def jamo_model(tmp_path_factory):
    torch.manual_seed(0)
    model = build_fasttext(JAMO, WORDS, cbow=False)
    with torch.no_grad():  # trained-looking rows: every word and bucket its own random vector
        model.in_embed.weight.normal_(0, 1)
        model.out_embed.weight.normal_(0, 1)
    out = tmp_path_factory.mktemp("ko")
    counts = np.arange(len(WORDS), 0, -1)
    save_fasttext_bin(out / "vectors.bin", export_words(WORDS, "jamo"), counts, model.in_embed.weight.detach().numpy(),
                      model.out_embed.weight.detach().numpy(), minn=JAMO.minn, maxn=JAMO.maxn, buckets=JAMO.buckets,
                      window=5, epochs=1, min_count=1, negatives=5, subsample=1e-3, cbow=False)  # fmt: skip
    from plm.objectives.skipgram import Vocab

    save_fasttext_folder(out / "model", model, Vocab(WORDS, counts), JAMO, True)
    return model, out


def test_trainer_model_uses_jamo_ngrams(jamo_model):
    model, _ = jamo_model
    ids, offsets = subword_table(WORDS, JAMO.minn, JAMO.maxn, JAMO.buckets, "jamo")
    assert model.subword_ids.tolist() == ids.tolist() and model.subword_offsets.tolist() == offsets.tolist()
    char_ids, _ = subword_table(WORDS, JAMO.minn, JAMO.maxn, JAMO.buckets, "char")
    assert char_ids.tolist() != ids.tolist()


def test_jamo_bin_is_faithful_in_gensim_and_fasttext_for_jamo_queries(jamo_model):
    model, out = jamo_model
    sub = SubwordVectors(out / "model")
    vectors = model.word_vectors().numpy()
    gm = pytest.importorskip("gensim.models.fasttext").load_facebook_model(str(out / "vectors.bin"))
    assert gm.wv.index_to_key == [decompose_jamo(w) for w in WORDS]
    np.testing.assert_allclose(gm.wv.vectors, vectors, atol=1e-5)
    for unseen in ("국민에게", "학교는", "권리를"):
        np.testing.assert_allclose(gm.wv[decompose_jamo(unseen)], sub.vector(unseen), atol=1e-5)
    fasttext = pytest.importorskip("fasttext")
    ft = fasttext.load_model(str(out / "vectors.bin"))
    for word in ("국민에게", "학교"):
        np.testing.assert_allclose(ft.get_word_vector(decompose_jamo(word)), sub.vector(word), atol=1e-5)
    # Given the syllable form, fastText takes syllable n-grams: not what the model was trained with.
    assert not np.allclose(ft.get_word_vector("국민에게"), sub.vector("국민에게"), atol=1e-3)
