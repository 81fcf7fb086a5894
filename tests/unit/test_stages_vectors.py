"""fastText and GloVe from a pipeline spec: examples -> pretrain -> exports the peers load -> registry and pyfunc
serving (fastText), and the `embeddings` fine-tune on GloVe vectors (the whole chain without tracking)."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from plm import stages
from plm.config import load_spec

gensim_models = pytest.importorskip("gensim.models")

BASE = ["corpus.paths=[sample:lee]", "corpus.text_unit=line", "tokenizer.vocab_size=1000"]


def test_fasttext_pipeline_registers_and_serves_unseen_words(tmp_path, monkeypatch):
    from gensim.models.fasttext import load_facebook_model

    from plm.tracking import predict_texts

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = load_spec(None, [f"home={tmp_path}", *BASE, "name=ft", "objectives.kinds=[skipgram]",
                            "objectives.skipgram.min_count=3", "model.arch=fasttext", "model.dim=16",
                            "model.epochs=1", "model.buckets=5000"])  # fmt: skip
    with stages.Pipeline(spec) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        ex = stages.examples.run(p, ing, tok)
        pre = stages.pretrain.run(p, tok, ex)
        reg = stages.run_stage(p, "register")
    assert pre.output.arch == "fasttext-16d" and pre.output.kind == "fasttext"
    ft = load_facebook_model(str(pre.path / pre.output.export_path))
    text = gensim_models.KeyedVectors.load_word2vec_format(str(pre.path / pre.output.export_text_path))
    np.testing.assert_allclose(ft.wv.vectors, text.vectors, atol=1e-6)
    assert pre.metrics["wordsim_pairs"] > 50 and "val_loss" in pre.metrics
    assert reg.output.models["ft-fasttext"].version == 1
    rows = predict_texts(f"sqlite:///{tmp_path / 'mlflow.db'}", "models:/ft-fasttext@candidate",
                         ["the governmentally", "qqqzzz"])  # fmt: skip
    assert rows[0]["oov_rate"] == pytest.approx(0.5) and rows[1]["oov_rate"] == 1.0
    np.testing.assert_allclose(rows[1]["embedding"], ft.wv["qqqzzz"], atol=1e-5)  # unseen: its n-grams


def test_glove_pipeline_counts_trains_and_finetunes_embeddings(tmp_path):
    spec = load_spec(None, [f"home={tmp_path}", *BASE, "name=gl", "objectives.kinds=[cooccurrence]",
                            "objectives.cooccurrence.window=5", "model.arch=glove", "model.dim=16", "model.epochs=3",
                            "finetune.strategy=embeddings", "finetune.epochs=1", "finetune.compare_scratch=false",
                            "finetune.lr=0.01"])  # fmt: skip
    with stages.Pipeline(spec, tracking=False) as p:
        results = {r.stage: r for r in stages.run_all(p)}
    ex, pre, fin = results["examples"], results["pretrain"], results["finetune"]
    assert ex.counts["cooccurrence.entries"] > 10_000 and (ex.path / "cooccurrence" / "train" / "vocab.parquet").is_file()
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(pre.path / "vectors.txt"), binary=False, no_header=True)
    assert len(kv.index_to_key) == pre.counts["vocab_size"] and "wordsim_spearman" in pre.metrics
    assert fin.output.strategy == "embeddings" and fin.output.kind == "embeddings_classifier"
    from plm.train.word2vec import load_word_vectors

    words, vectors = load_word_vectors(pre.path / "model")
    tuned = fin.path / fin.output.model_dir
    assert json.loads((tuned / "vocab.json").read_text()) == words  # the classifier's table is GloVe's vocabulary
    table = load_file(str(tuned / "model.safetensors"))["embeddings.weight"]
    np.testing.assert_allclose(table[2:].numpy(), vectors, rtol=1e-6)  # copied in and kept fixed
    assert fin.metrics["pretrained.test_oov_rate"] < 0.6 and "pretrained.test_accuracy" in fin.metrics
