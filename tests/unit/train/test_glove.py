"""GloVe training on real text and its files: the text export loads in gensim with `no_header=True`."""

import numpy as np
import pytest

from plm.config import CooccurrenceSpec, GloveSpec
from plm.objectives.cooccurrence import read_cooccurrence, write_cooccurrence
from plm.objectives.skipgram import build_vocab, encode_sentences
from plm.samples import resolve_sample
from plm.train.glove import save_glove_folder, save_glove_text, train_glove
from plm.train.word2vec import Word2VecPredictor, load_word_vectors

gensim_models = pytest.importorskip("gensim.models")


def test_glove_trains_and_exports(tmp_path):
    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    vocab = build_vocab([lines], 5, True)
    write_cooccurrence(encode_sentences([lines], vocab, True), vocab, CooccurrenceSpec(window=5), tmp_path / "co")
    i, j, x = read_cooccurrence(sorted((tmp_path / "co").glob("part-*.parquet")))
    result = train_glove(GloveSpec(dim=16, epochs=3, batch_size=8192), vocab, i, j, x, seed=2)
    again = train_glove(GloveSpec(dim=16, epochs=1, batch_size=8192), vocab, i, j, x, seed=2)
    assert result.metrics["train_loss"] < again.metrics["train_loss"]  # more epochs, lower loss
    np.testing.assert_allclose(result.vectors, (result.model.word + result.model.context).detach().numpy())

    save_glove_text(tmp_path / "vectors.txt", result.words, result.vectors)
    assert len((tmp_path / "vectors.txt").read_text().splitlines()[0].split()) == 17  # no header line
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(tmp_path / "vectors.txt"), binary=False, no_header=True)
    assert kv.index_to_key == vocab.words
    np.testing.assert_array_equal(kv.vectors, result.vectors)

    save_glove_folder(tmp_path / "model", result.model, vocab, lowercase=True)
    words, vectors = load_word_vectors(tmp_path / "model")
    assert words == vocab.words and np.array_equal(vectors, result.vectors)
    emb = Word2VecPredictor.load(tmp_path / "model").embed(["the minister said", "qqqzz"])
    np.testing.assert_allclose(emb[0][0], result.vectors[[vocab.index[w] for w in ("the", "minister", "said")]].mean(0),
                               rtol=1e-6)  # fmt: skip
    assert emb[1].tolist() == [0.0, 1.0]
