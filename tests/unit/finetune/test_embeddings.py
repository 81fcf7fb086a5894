"""The `embeddings` strategy: word2vec vectors (frozen or tuned) under a small classifier, vs the same from scratch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from plm.config import FinetuneSpec
from plm.finetune.embeddings import OFFSET, UNK, WordIndex, finetune_embeddings
from plm.finetune.predict import EmbeddingsPipeline
from plm.finetune.run import prepare_task

from .conftest import PAIRS, stood_in_upstream, write_split_jsonl, write_word2vec

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


def test_a_registered_word_vector_classifier_starts_the_next_task(vectors_dir, tmp_path):
    """Task-to-task transfer from a word-vector classifier (`finetune.init`): its (tuned) table always carries over,
    its hidden layer when the layout matches, its output layer only for the same labels; `features` reads its table."""
    import torch

    from plm.finetune.features import WordVectorFeatures, unit_rows

    train, test = reviews(48, 0), reviews(32, 1)
    labels = {0: "neg", 1: "pos"}
    tuned = FT.model_copy(update={"embeddings_trainable": True})
    parent = finetune_embeddings(tuned, vectors_dir, (train[0], None, train[1]), (test[0], None, test[1]), labels,
                                 tmp_path / "parent", pretrained=True)  # fmt: skip
    ps = load_file(str(parent.model_dir / "model.safetensors"))
    frozen = FT.model_copy(update={"lr": 0.0})  # nothing moves: what the child holds is what it started from

    def child(id2label, pairs=None, name="child"):
        b = None if pairs is None else (pairs[:48], pairs[48:80])
        res = finetune_embeddings(frozen, parent.model_dir, (train[0], None if b is None else b[0], train[1]),
                                  (test[0], None if b is None else b[1], test[1]), id2label, tmp_path / name, True)  # fmt: skip
        return res, load_file(str(res.model_dir / "model.safetensors"))

    same, cs = child(labels)
    assert json.loads((same.model_dir / "vocab.json").read_text()) == json.loads((parent.model_dir / "vocab.json").read_text())
    assert all(torch.equal(cs[k], ps[k]) for k in ps)  # the tuned table, the hidden layer and the same-label head
    assert same.metrics["test_accuracy"] == parent.metrics["test_accuracy"]
    other, os_ = child({0: "different", 1: "same"}, name="other")
    assert torch.equal(os_["embeddings.weight"], ps["embeddings.weight"]) and torch.equal(os_["mlp.0.weight"], ps["mlp.0.weight"])
    assert not torch.equal(os_["mlp.3.weight"], ps["mlp.3.weight"])  # other labels: the head is new
    pair, pr = child(labels, pairs=[t[::-1] for t in train[0]] + [t[::-1] for t in test[0]][:32], name="pair")
    assert torch.equal(pr["embeddings.weight"], ps["embeddings.weight"])
    assert pr["mlp.0.weight"].shape != ps["mlp.0.weight"].shape  # [u, v, |u-v|, u*v]: no layer of the parent fits
    feats = WordVectorFeatures(parent.model_dir, test[0], None, 32)
    assert np.allclose(feats.vectors, unit_rows(ps["embeddings.weight"].numpy()[OFFSET:]))
    assert feats.registered and not WordVectorFeatures(vectors_dir, test[0], None, 32).registered


def test_finetune_init_from_a_registered_word_vector_classifier(vectors_dir, tokenizer_path, tmp_path):
    """Sentiment classifier over word vectors -> registry -> `finetune.init` of a same-sentiment pair task: the
    word-vector candidate starts from the registered table (`init: registered`), its version names the parent,
    the transfer report has `registered` rows; a pipeline without a word-vector family refuses the parent."""
    from mlflow import MlflowClient

    from plm import stages
    from plm.config import load_spec

    texts, ys = reviews(120, 5)
    sent = write_split_jsonl(tmp_path / "sent.jsonl", [{"text": t, "label": "pos" if y else "neg"} for t, y in zip(texts, ys)])
    pairs = write_split_jsonl(tmp_path / "pairs.jsonl", [{"text": a, "text_pair": b, "label": "same" if ya == yb else "different"}
                                              for a, ya, b, yb in zip(texts, ys, texts[1:] + texts[:1], ys[1:] + ys[:1])])  # fmt: skip
    common = [f"home={tmp_path / 'home'}", "name=w", "model.arch=word2vec", "objectives.kinds=[skipgram]",
              "finetune.format=jsonl", "finetune.split_column=split", "finetune.epochs=3", "finetune.batch_size=8",
              "finetune.lr=1e-2", "finetune.embeddings_trainable=true", "finetune.compare_scratch=false",
              "finetune.strategy=embeddings", f"corpus.allowed_roots=[{tmp_path}]"]  # fmt: skip
    tok, pre, ing = stood_in_upstream(tmp_path, tokenizer_path, vectors_dir, "word2vec", "word2vec")

    def run(*extra, transfer=False, tracking=True):
        spec = load_spec(None, [*common, *extra])
        with stages.Pipeline(spec, tracking=tracking) as p:
            p.results.update(ingest=ing, tokenizer=tok, pretrain=pre)
            ft = stages.finetune.run(p, tok, pre)
            tr = stages.transfer.run(p, tok, pre) if transfer else None
            return ft, tr, stages.run_stage(p, "register")

    _, _, reg = run("finetune.task=sentiment", f"finetune.data={sent}")
    parent = reg.output.models["w-sentiment"].model_dump()
    ft, tr, reg = run("finetune.task=samesent", "finetune.task_type=pair_classification", f"finetune.data={pairs}",
                      "finetune.init=models:/w-sentiment@champion", "finetune.transfer_strategies=[embeddings]",
                      "finetune.transfer_labels=[40]", "finetune.transfer_seeds=1", "finetune.baseline=false",
                      transfer=True)  # fmt: skip
    assert ft.output.metric == "registered.test_accuracy" and ft.inputs["init"].startswith(f"w-sentiment/{parent['version']}:")
    registered = ft.path / "registered" / "model"
    home = tmp_path / "home"
    parent_dir = next((home / "registered").rglob("vocab.json")).parent  # the downloaded parent version
    assert json.loads((registered / "vocab.json").read_text()) == json.loads((parent_dir / "vocab.json").read_text())
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    tags = client.get_model_version("w-samesent", str(reg.output.models["w-samesent"].version)).tags
    assert tags["plm.parent.model"] == "w-sentiment" and tags["plm.parent.version"] == str(parent["version"])
    run_params = client.get_run(json.loads((ft.path / "manifest.json").read_text())["run_id"]).data.params
    assert run_params["registered.init"] == "registered" and run_params["registered.head"] == "new"
    report = pd.read_csv(tr.path / "report.csv")
    assert {(s, i) for s, i in zip(report.strategy, report.init)} == {("embeddings", "registered"), ("embeddings", "pretrained"), ("embeddings", "scratch")}
    with pytest.raises(ValueError, match="no word-vector family"):
        run("model.arch=bert", "objectives.kinds=[mlm, nsp]", "finetune.strategy=full", "finetune.task=samesent",
            "finetune.task_type=pair_classification", f"finetune.data={pairs}", "finetune.init=models:/w-sentiment@champion",
            tracking=False)


def _without_words(model_dir, keep: int, dest):
    """A copy of a classifier folder whose table stops after its first `keep` words: the rest are then words it
    first meets when served (`finetune_embeddings` adds the test split's unseen words last)."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(model_dir, dest)
    state = load_file(str(dest / "model.safetensors"))
    state["embeddings.weight"] = state["embeddings.weight"][: OFFSET + keep].contiguous()
    save_file(state, str(dest / "model.safetensors"))
    words = json.loads((dest / "vocab.json").read_text())
    (dest / "vocab.json").write_text(json.dumps(words[:keep]))
    return dest


UNSEEN_TEST = ["Films were greatest yet dullest", "The actorsss bored", "Plotting was superbly lovelier",
               "boringly tediousness clumsiest", "story brilliance moviegoers"]  # fmt: skip


@pytest.mark.parametrize("strategy,table", [("embeddings", "float32"), ("embeddings", "float16"),
                                            ("features", "float32")])  # fmt: skip
def test_a_served_fasttext_classifier_gives_new_words_their_training_ngram_vectors(fasttext_dir, tmp_path, strategy,
                                                                                   table):  # fmt: skip
    """Words in neither the parent's vocabulary nor the task's texts: served, they get the vector training gave
    the same words (the parent's n-gram rows kept in `subwords.safetensors`), so served predictions equal the
    in-process ones; without the rows they would be unknown and the predictions would differ."""
    from plm.finetune.embeddings import EmbeddingsModel, _load_vectors
    from plm.finetune.features import WordVectorFeatures, unit_rows
    from plm.train.fasttext import SubwordVectors

    train = reviews(32, 0)
    ft = FT.model_copy(update={"epochs": 2, "subword_table": table})
    labels = {0: "neg", 1: "pos"}
    trained_words = _load_vectors(fasttext_dir).index(64)
    trained_words.encode(train[0])
    keep = len(trained_words.words)  # parent vocabulary + the training texts' unseen words
    if strategy == "embeddings":
        res = finetune_embeddings(ft, fasttext_dir, (train[0], None, train[1]), (UNSEEN_TEST, None, [1, 0, 1, 0, 1]),
                                  labels, tmp_path / "ft", pretrained=True)  # fmt: skip
    else:
        feats = WordVectorFeatures(fasttext_dir, train[0] + UNSEEN_TEST, None, 64, subword_table=table)
        res = feats.fit(list(range(32)), list(range(32, 37)), train[1] + [1, 0, 1, 0, 1], labels, True, 3, tmp_path / "ft")
    full = res.model_dir
    config = json.loads((full / "config.json").read_text())
    assert config["subwords"] == {"file": "subwords.safetensors", "minn": 2, "maxn": 4, "buckets": 211, "subword": "char",
                                  "unit": int(strategy == "features"), "dtype": table}  # fmt: skip
    rows = load_file(str(full / "subwords.safetensors"))["ngrams"]
    assert tuple(rows.shape) == (211, 16) and str(rows.dtype) == f"torch.{table}"
    words = json.loads((full / "vocab.json").read_text())
    new = words[keep:]  # the test texts' words that neither pretraining nor training saw
    assert len(new) >= 8 and not set(new) & set(trained_words.words)
    stripped = _without_words(full, keep, tmp_path / "stripped")
    served = EmbeddingsModel(stripped)
    table_rows = load_file(str(full / "model.safetensors"))["embeddings.weight"].numpy()
    sub = SubwordVectors(fasttext_dir)
    for w in new:  # served: computed from the kept n-gram rows; at train time: a row of the table
        v = served.subwords.vector(w)
        np.testing.assert_array_equal(v, table_rows[OFFSET + words.index(w)])
        parent = sub.vector(w)
        expect = unit_rows(parent[None])[0] if strategy == "features" else parent
        np.testing.assert_allclose(v, expect, rtol=0, atol=0 if table == "float32" else 2e-3)
    in_process = EmbeddingsModel(full).logits(UNSEEN_TEST)  # the table training built (its rows for these words)
    out = served.logits(UNSEEN_TEST)
    torch.testing.assert_close(out, in_process, rtol=1e-6, atol=1e-6)
    pred = EmbeddingsPipeline.load(stripped).predict_frame(pd.DataFrame({"text": UNSEEN_TEST}))
    assert (pred["label"] == ["pos" if y else "neg" for y in in_process.argmax(-1).tolist()]).all()
    assert np.mean(pred["label"] == ["pos", "neg", "pos", "neg", "pos"]) == res.metrics["test_accuracy"]
    # the same folder without the n-gram rows serves these words as unknown: other predictions
    config.pop("subwords")
    (stripped / "config.json").write_text(json.dumps(config))
    assert not torch.allclose(EmbeddingsModel(stripped).logits(UNSEEN_TEST), in_process, atol=1e-4)



def test_served_unseen_words_hash_their_ngrams_once(fasttext_dir, monkeypatch):
    """A classifier's n-gram rule remembers each word's vector (and a word without one), least recently used out
    first: calls after the first hash nothing, the vectors are the same (read-only) arrays, the cache is bounded."""
    from plm.finetune.embeddings import SubwordTable
    from plm.train.fasttext import NgramVectors, SubwordVectors

    hashed: list[str] = []
    real = NgramVectors.vector
    monkeypatch.setattr(NgramVectors, "vector", lambda self, w: hashed.append(w) or real(self, w))
    rule = SubwordTable(SubwordVectors(fasttext_dir).ngrams, unit=1, cache_size=2)
    first = rule.vector("filmsss")
    assert rule.vector("filmsss") is first and hashed == ["filmsss"] and not first.flags.writeable
    np.testing.assert_allclose(np.linalg.norm(first), 1.0, rtol=1e-6)  # unit=1: scaled as the features table
    empty = SubwordTable(NgramVectors(np.zeros((0, 4), np.float32), 2, 4))  # no buckets: no word has a vector
    assert empty.vector("x") is None and empty.vector("x") is None and hashed.count("x") == 1  # None kept too
    rule.vector("plotz"), rule.vector("castz")  # a third word: "filmsss" was least recently used, and goes
    rule.vector("castz"), rule.vector("filmsss")
    assert hashed == ["filmsss", "x", "plotz", "castz", "filmsss"]


def test_trainable_tables_serve_new_words_the_parents_ngram_vectors_and_none_keeps_no_rows(fasttext_dir, tmp_path):
    """`embeddings_trainable` tunes the table of words, not the n-gram rows: a word first met when served gets the
    parent's n-gram vector (as the test split's unseen words keep theirs in training). `subword_table: none` and a
    scratch table keep no rows (a word outside the table is unknown when served)."""
    from plm.finetune.embeddings import EmbeddingsModel
    from plm.train.fasttext import SubwordVectors

    train = reviews(32, 0)
    test = (UNSEEN_TEST, None, [1, 0, 1, 0, 1])
    tuned = finetune_embeddings(FT.model_copy(update={"epochs": 2, "embeddings_trainable": True}), fasttext_dir,
                                (train[0], None, train[1]), test, {0: "neg", 1: "pos"}, tmp_path / "tuned", True)  # fmt: skip
    sub = SubwordVectors(fasttext_dir)
    table = load_file(str(tuned.model_dir / "model.safetensors"))["embeddings.weight"].numpy()
    assert not np.allclose(table[OFFSET : OFFSET + len(sub.words)], sub.vectors)  # the words' rows were tuned
    served = EmbeddingsModel(tuned.model_dir)
    np.testing.assert_array_equal(
        load_file(str(tuned.model_dir / "subwords.safetensors"))["ngrams"].numpy(), sub.ngrams.ngrams)
    for w in ("cinematographers", "unwatchably"):
        assert w not in served.index.index
        np.testing.assert_array_equal(served.subwords.vector(w), sub.vector(w))
    words = json.loads((tuned.model_dir / "vocab.json").read_text())
    for w in ("dullest", "clumsiest"):  # test-split words: no gradient reached their rows
        np.testing.assert_array_equal(table[OFFSET + words.index(w)], sub.vector(w))
    # a registered classifier as the next task's parent (`finetune.init`) passes its rows on
    child = finetune_embeddings(FT.model_copy(update={"epochs": 1, "subword_table": "float16"}), tuned.model_dir,
                                (train[0], None, train[1]), test, {0: "neg", 1: "pos"}, tmp_path / "child", True)  # fmt: skip
    assert json.loads((child.model_dir / "config.json").read_text())["subwords"]["dtype"] == "float16"
    np.testing.assert_allclose(EmbeddingsModel(child.model_dir).subwords.vector("unwatchably"), sub.vector("unwatchably"),
                               rtol=0, atol=2e-3)  # fmt: skip
    for name, update, pretrained in (("none", {"subword_table": "none"}, True), ("scratch", {}, False)):
        res = finetune_embeddings(FT.model_copy(update={"epochs": 1, **update}), fasttext_dir,
                                  (train[0], None, train[1]), test, {0: "neg", 1: "pos"}, tmp_path / name, pretrained)  # fmt: skip
        assert not (res.model_dir / "subwords.safetensors").exists()
        assert "subwords" not in json.loads((res.model_dir / "config.json").read_text())
        model = EmbeddingsModel(res.model_dir)
        assert model.subwords is None and model.index.fork().encode(["cinematographers"]) == [[UNK]]


def test_the_registered_pyfunc_serves_new_words_as_training_would(fasttext_dir, tokenizer_path, tmp_path):
    """Through the one pyfunc path (`models:/...@champion`, as `plm predict` and the HTTP server load it), a
    text of words the classifier's table lacks is predicted as the in-process model predicts it."""
    from plm.finetune.embeddings import _load_vectors
    from plm.finetune.predict import example_for
    from plm.tracking import TrackingSession, log_pyfunc_model, predict_texts, register_version

    train = reviews(32, 0)
    res = finetune_embeddings(FT.model_copy(update={"epochs": 2}), fasttext_dir, (train[0], None, train[1]),
                              (UNSEEN_TEST, None, [1, 0, 1, 0, 1]), {0: "neg", 1: "pos"}, tmp_path / "ft", True)  # fmt: skip
    index = _load_vectors(fasttext_dir).index(64)
    index.encode(train[0])
    stripped = _without_words(res.model_dir, len(index.words), tmp_path / "stripped")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = TrackingSession(store, "t", tmp_path, "test", tags={})
    kind = "embeddings_classifier"
    uri = log_pyfunc_model(s.start_stage("register", {}), kind, stripped, tokenizer_path, example_for(kind, stripped, []))
    register_version(s, uri, "t-ft", {}, "m", 1.0)
    got = predict_texts(store, "models:/t-ft@champion", UNSEEN_TEST)
    expected = EmbeddingsPipeline.load(res.model_dir).predict_frame(pd.DataFrame({"text": UNSEEN_TEST}))
    assert [g["label"] for g in got] == expected["label"].tolist()
    assert [g["score"] for g in got] == pytest.approx(expected["score"].tolist(), abs=1e-6)


def test_a_jamo_parents_classifier_serves_new_korean_words_by_jamo_ngrams(tmp_path):
    """The kept rule is the parent's: jamo n-grams (`model.subword: jamo`) for a Korean word neither saw."""
    from plm.config import FastTextSpec
    from plm.finetune.embeddings import EmbeddingsModel
    from plm.objectives.skipgram import Vocab
    from plm.train.fasttext import SubwordVectors, build_fasttext, save_fasttext_folder

    cfg = FastTextSpec(dim=8, minn=2, maxn=4, buckets=97, subword="jamo")
    words = ["학교", "학생", "좋다", "나쁘다", "영화"]
    torch.manual_seed(0)
    model = build_fasttext(cfg, words, cbow=False)
    with torch.no_grad():
        model.in_embed.weight.normal_(0, 1)
    parent = save_fasttext_folder(tmp_path / "ko", model, Vocab(words, np.arange(5, 0, -1)), cfg, lowercase=True)
    texts, labels = ["영화 좋다", "영화 나쁘다", "학교 좋다", "학생 나쁘다"], [1, 0, 1, 0]
    res = finetune_embeddings(FT.model_copy(update={"epochs": 1}), parent, (texts, None, labels), (texts, None, labels),
                              {0: "neg", 1: "pos"}, tmp_path / "ft", True)  # fmt: skip
    served = EmbeddingsModel(res.model_dir)
    assert served.subwords.ngrams.subword == "jamo" and "학굣" not in served.index.index
    np.testing.assert_array_equal(served.subwords.vector("학굣"), SubwordVectors(parent).vector("학굣"))
