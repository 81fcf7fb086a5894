"""The `embeddings` strategy: word2vec vectors (frozen or tuned) under a small classifier, vs the same from scratch."""

from __future__ import annotations

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
