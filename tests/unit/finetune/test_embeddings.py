"""The `embeddings` strategy: word2vec vectors (frozen or tuned) under a small classifier, vs the same from scratch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from plm.config import FinetuneSpec
from plm.finetune.embeddings import OFFSET, UNK, WordIndex, finetune_embeddings
from plm.finetune.predict import EmbeddingsPipeline
from plm.finetune.run import prepare_task

from .conftest import PAIRS, write_word2vec

GOOD = ["great", "fine", "superb", "moving", "brilliant", "lovely"]
BAD = ["dull", "awful", "tedious", "boring", "clumsy", "bland"]
FILLER = ["film", "the", "a", "plot", "actors", "story", "is", "was"]


@pytest.fixture(scope="module")
def vectors_dir(tmp_path_factory):
    """Vectors where sentiment is one direction (what good word2vec vectors give a linear probe)."""
    rng = np.random.default_rng(0)
    words = GOOD + BAD + FILLER
    vectors = rng.normal(0, 0.3, (len(words), 16)).astype(np.float32)
    vectors[: len(GOOD), 0] += 2.0
    vectors[len(GOOD) : len(GOOD) + len(BAD), 0] -= 2.0
    return write_word2vec(tmp_path_factory.mktemp("w2v") / "model", words, vectors)


def reviews(n: int, seed: int, unseen: bool = False) -> tuple[list[str], list[int]]:
    """Short reviews; `unseen` test sets use sentiment words the training set never shows."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(2))
        pool = (GOOD if y else BAD)[3:] if unseen else (GOOD if y else BAD)[:3]
        words = [*rng.choice(FILLER, 4), rng.choice(pool)]
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + " .")
        labels.append(y)
    return texts, labels


FT = FinetuneSpec(epochs=6, batch_size=8, lr=1e-2, seed=3, embeddings_hidden=16, seq_len=32)


def test_word_index_uses_the_skipgram_splitter():
    index = WordIndex(["the", "film"], lowercase=True, max_words=3)
    assert index.encode(["The FILM, the end!", ""]) == [[OFFSET, OFFSET + 1, OFFSET], [UNK]]
    assert index.oov_rate([[OFFSET, UNK]]) == 0.5


def test_pretrained_vectors_transfer_to_unseen_words_and_stay_frozen(vectors_dir, tmp_path):
    train, test = reviews(64, 0), reviews(64, 1, unseen=True)
    labels = {0: "neg", 1: "pos"}
    pre = finetune_embeddings(FT, vectors_dir, (train[0], None, train[1]), (test[0], None, test[1]), labels,
                              tmp_path / "pre", pretrained=True)  # fmt: skip
    scratch = finetune_embeddings(FT, vectors_dir, (train[0], None, train[1]), (test[0], None, test[1]), labels,
                                  tmp_path / "scratch", pretrained=False)  # fmt: skip
    # words never seen in training carry their sentiment only through the pretrained vectors
    assert pre.metrics["test_accuracy"] >= 0.9, pre.metrics
    assert scratch.metrics["test_accuracy"] < pre.metrics["test_accuracy"]
    from plm.train.word2vec import load_word_vectors

    _, vectors = load_word_vectors(vectors_dir)
    table = load_file(str(pre.model_dir / "model.safetensors"))["embeddings.weight"].numpy()
    assert np.array_equal(table[OFFSET:], vectors)  # frozen: the word2vec table is untouched
    tuned = finetune_embeddings(FT.model_copy(update={"embeddings_trainable": True}), vectors_dir,
                                (train[0], None, train[1]), (test[0], None, test[1]), labels, tmp_path / "tuned", True)  # fmt: skip
    tuned_table = load_file(str(tuned.model_dir / "model.safetensors"))["embeddings.weight"].numpy()
    assert not np.array_equal(tuned_table[OFFSET:], vectors)

    out = EmbeddingsPipeline.load(pre.model_dir).predict_frame(pd.DataFrame({"text": test[0][:8]}))
    assert list(out.columns) == ["label", "score"]
    assert (out["label"] == [labels[y] for y in test[1][:8]]).mean() >= 0.75


def test_embeddings_pair_regression_through_prepare_task(vectors_dir, tmp_path, tokenizer_path):
    spec = FinetuneSpec(task_type="regression", format="csv", data=str(PAIRS), text_column="sentence1",
                        text_pair_column="sentence2", label_column="similarity", epochs=1, strategy="embeddings")  # fmt: skip
    task = prepare_task(spec, vectors_dir, tokenizer_path, "word2vec")
    assert task.kind == "embeddings_classifier" and task.strategies(["full", "embeddings"]) == ["embeddings"]
    res = task.fit(list(range(len(task.train_idx))), tmp_path, True, "embeddings")
    assert {"test_pearson", "test_spearman", "test_oov_rate"} <= set(res.metrics)
    out = EmbeddingsPipeline.load(res.model_dir).predict_frame(pd.DataFrame({"text": ["a"], "text_pair": ["b"]}))
    assert list(out.columns) == ["score"]
    with pytest.raises(ValueError, match="text_pair"):
        EmbeddingsPipeline.load(res.model_dir).predict_frame(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(ValueError, match="do not apply"):
        task.strategies(["full", "frozen"])


@pytest.fixture(scope="module")
def fasttext_dir(tmp_path_factory):
    """A fastText parent (random rows) whose vocabulary lacks the inflections the task texts use."""
    import torch

    from plm.config import FastTextSpec
    from plm.objectives.skipgram import Vocab
    from plm.train.fasttext import build_fasttext, save_fasttext_folder

    cfg = FastTextSpec(dim=16, minn=2, maxn=4, buckets=211)
    words = GOOD + BAD + FILLER
    torch.manual_seed(0)
    model = build_fasttext(cfg, words, cbow=False)
    with torch.no_grad():
        model.in_embed.weight.normal_(0, 1)
    vocab = Vocab(words, np.arange(len(words), 0, -1))
    return save_fasttext_folder(tmp_path_factory.mktemp("ft") / "model", model, vocab, cfg, lowercase=True)


def test_fasttext_parent_gives_unseen_words_their_ngram_vectors(fasttext_dir, vectors_dir, tmp_path):
    from plm.finetune.embeddings import _load_vectors
    from plm.finetune.features import WordVectorFeatures
    from plm.train.fasttext import SubwordVectors

    index = _load_vectors(fasttext_dir).index(8)
    encoded = index.encode(["The films were greatest", "the film"])
    assert UNK not in encoded[0] and index.oov_rate(encoded) == 0.0 and index.unseen_rate(encoded) == 0.5
    sub = SubwordVectors(fasttext_dir)
    table = index.table(sub.vectors)
    for word in ("films", "were", "greatest"):
        np.testing.assert_array_equal(table[index.index[word] - OFFSET], sub.vector(word))
    # a word2vec parent has no rule for them: the same text keeps its unknown words
    w2v = _load_vectors(vectors_dir).index(8)
    assert w2v.oov_rate(w2v.encode(["The films were greatest"])) == 0.75

    train, test = reviews(32, 0), reviews(32, 1, unseen=True)
    test_texts = [t.replace("film", "films") for t in test[0]]
    res = finetune_embeddings(FT.model_copy(update={"epochs": 1}), fasttext_dir, (train[0], None, train[1]),
                              (test_texts, None, test[1]), {0: "neg", 1: "pos"}, tmp_path / "ft", pretrained=True)  # fmt: skip
    assert res.metrics["test_oov_rate"] == 0.0 < res.metrics["test_unseen_rate"]
    saved = load_file(str(res.model_dir / "model.safetensors"))["embeddings.weight"].numpy()
    vocab = json.loads((res.model_dir / "vocab.json").read_text())
    np.testing.assert_allclose(saved[OFFSET + vocab.index("films")], sub.vector("films"), atol=1e-6)
    feats = WordVectorFeatures(fasttext_dir, test_texts, None, max_words=50)
    assert feats.oov_rate == 0.0 < feats.unseen_rate and len(feats.words) > len(sub.words)


def test_subword_oov_false_keeps_a_fasttext_parents_unseen_words_unknown(fasttext_dir, tmp_path):
    from plm.finetune.features import WordVectorFeatures

    texts = ["The films were greatest", "the film"]
    res = finetune_embeddings(FT.model_copy(update={"epochs": 1, "subword_oov": False}), fasttext_dir,
                              (texts, None, [1, 0]), (texts, None, [1, 0]), {0: "neg", 1: "pos"}, tmp_path / "off",
                              pretrained=True)  # fmt: skip
    assert res.metrics["test_oov_rate"] == res.metrics["test_unseen_rate"] == 0.5
    assert WordVectorFeatures(fasttext_dir, texts, None, 50, subword_oov=False).oov_rate == 0.5
