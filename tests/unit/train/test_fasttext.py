"""fastText training and files: learns on real text, `.bin` loads in gensim and in Facebook's fasttext with the
same vectors (in-vocabulary and unseen words), `.vec` loads in gensim, and the predictor serves unseen words."""

import numpy as np
import pandas as pd
import pytest

from plm.config import FastTextSpec, SkipgramSpec
from plm.objectives.skipgram import build_vocab, encode_sentences
from plm.objectives.subwords import subword_table
from plm.samples import resolve_sample
from plm.train.fasttext import (
    FastTextPredictor, SubwordVectors, load_fasttext_bin, save_fasttext_bin, save_fasttext_folder, train_fasttext,
)  # fmt: skip
from plm.train.word2vec import save_word2vec

gensim_ft = pytest.importorskip("gensim.models.fasttext")

CFG = FastTextSpec(dim=16, epochs=1, buckets=5000, minn=3, maxn=5)
SG = SkipgramSpec(min_count=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    vocab = build_vocab([lines], SG.min_count, SG.lowercase)
    result = train_fasttext(CFG, SG, vocab, encode_sentences([lines], vocab, SG.lowercase), seed=3)
    out = tmp_path_factory.mktemp("ft")
    model = result.model
    save_fasttext_bin(out / "vectors.bin", vocab.words, vocab.counts, model.in_embed.weight.detach().numpy(),
                      model.out_embed.weight.detach().numpy(), minn=CFG.minn, maxn=CFG.maxn, buckets=CFG.buckets,
                      window=SG.window, epochs=CFG.epochs, min_count=SG.min_count, negatives=SG.negatives,
                      subsample=SG.subsample, cbow=False)  # fmt: skip
    save_word2vec(out / "vectors.vec", result.words, result.vectors, binary=False)
    save_fasttext_folder(out / "model", model, vocab, CFG, SG.lowercase)
    return result, vocab, out


def test_training_learns_and_unseen_inflections_land_near_their_stem(trained):
    result, vocab, out = trained
    assert np.isfinite(result.vectors).all() and result.metrics["train_loss"] < 3.0  # untrained: 6 * log 2 = 4.16
    sub = SubwordVectors(out / "model")
    assert "governments" not in vocab.index
    unit = result.vectors / np.linalg.norm(result.vectors, axis=1, keepdims=True)
    unseen = sub.vector("governments")
    ranks = np.argsort(-(unit @ (unseen / np.linalg.norm(unseen))))
    assert vocab.index["government"] in ranks[:5].tolist()


def test_bin_loads_in_gensim_with_the_same_vectors(trained):
    result, vocab, out = trained
    model = gensim_ft.load_facebook_model(str(out / "vectors.bin"))
    assert model.wv.index_to_key == vocab.words and model.wv.min_n == 3 and model.wv.max_n == 5
    np.testing.assert_allclose(model.wv.vectors, result.vectors, atol=1e-6)
    sub = SubwordVectors(out / "model")
    for word in ("governmentally", "시나브로", "xq"):
        assert word not in vocab.index
        np.testing.assert_allclose(model.wv[word], sub.vector(word), atol=1e-6)
    loaded = load_fasttext_bin(out / "vectors.bin")
    assert loaded.words == vocab.words and loaded.args["bucket"] == CFG.buckets
    np.testing.assert_array_equal(loaded.input, result.model.in_embed.weight.detach().numpy())


def test_bin_loads_in_facebook_fasttext_with_the_same_subwords(trained):
    fasttext = pytest.importorskip("fasttext")
    result, vocab, out = trained
    ft = fasttext.load_model(str(out / "vectors.bin"))
    assert ft.get_words() == vocab.words and ft.get_dimension() == CFG.dim
    ids, offsets = subword_table(vocab.words, CFG.minn, CFG.maxn, CFG.buckets)
    for word in ("government", "minister", "said"):
        i = vocab.index[word]
        assert ft.get_subwords(word)[1].tolist() == ids[offsets[i] : offsets[i + 1]].tolist()
        np.testing.assert_allclose(ft.get_word_vector(word), result.vectors[i], atol=1e-6)
    sub = SubwordVectors(out / "model")
    np.testing.assert_allclose(ft.get_word_vector("시나브로"), sub.vector("시나브로"), atol=1e-6)
    np.testing.assert_allclose(ft.get_input_vector(vocab.index["said"]),
                               result.model.in_embed.weight[vocab.index["said"]].detach().numpy(), atol=0)  # fmt: skip


def test_vec_loads_in_gensim_and_predictor_covers_unseen_words(trained):
    from gensim.models import KeyedVectors

    result, vocab, out = trained
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.vec"), binary=False)
    np.testing.assert_allclose(kv.vectors, result.vectors, atol=1e-6)
    pred = FastTextPredictor.load(out / "model")
    frame = pred.predict_frame(pd.DataFrame({"text": ["the governmentally said", "zzz"]}))
    assert frame["oov_rate"].tolist() == pytest.approx([1 / 3, 1.0])
    expected = np.mean([result.vectors[vocab.index["the"]], SubwordVectors(out / "model").vector("governmentally"),
                        result.vectors[vocab.index["said"]]], axis=0)  # fmt: skip
    np.testing.assert_allclose(frame["embedding"][0], expected, atol=1e-6)
    assert np.abs(frame["embedding"][1]).sum() > 0  # an unseen word still has n-gram vectors
