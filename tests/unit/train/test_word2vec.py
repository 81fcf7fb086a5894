"""word2vec training: learns on real text, is deterministic, CBOW trains, exports load in gensim, and the stage runs."""

import json

import numpy as np
import pandas as pd
import pytest

from plm.config import SkipgramSpec, Word2VecSpec, load_spec
from plm.eval.wordsim import wordsim
from plm.objectives.skipgram import build_vocab, encode_sentences, write_skipgram
from plm.samples import resolve_sample
from plm.tracker import NullTracker
from plm.train.word2vec import (
    Word2VecPredictor, evaluate_loss, load_word2vec, load_word_vectors, save_word2vec, save_word_vectors,
    train_word2vec,
)  # fmt: skip

gensim_models = pytest.importorskip("gensim.models")


@pytest.fixture(scope="module")
def lee():
    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    sg = SkipgramSpec(min_count=3)
    vocab = build_vocab([lines], sg.min_count, sg.lowercase)
    return sg, vocab, encode_sentences([lines], vocab, sg.lowercase)


def test_training_on_lee_learns_held_out_contexts(lee, tmp_path):
    """On Lee (60k words) WordSim-353 is mostly noise below ~20 epochs, for gensim too (see the benchmark, which
    compares the two on a bigger corpus); what a few epochs must show is held-out context prediction."""
    sg, vocab, sentences = lee
    held_out = len(sentences) // 10
    write_skipgram(sentences[:held_out], vocab, sg, 99, tmp_path / "validation")
    val = sorted((tmp_path / "validation").glob("part-*.parquet"))
    cfg = Word2VecSpec(dim=32, epochs=3, batch_size=1024, log_every=10)
    tracker = NullTracker()
    result = train_word2vec(cfg, sg, vocab, sentences[held_out:], seed=7, tracker=tracker)
    # Untrained, every score is 0 (output vectors start at zero): loss (1 + k) log 2 per example.
    assert evaluate_loss(result.model, val) < 0.75 * 6 * np.log(2)
    sim = wordsim(result.words, result.vectors)
    assert sim.pairs >= 90 and -1 <= sim.spearman <= 1  # min_count 3 on Lee covers about a third of WordSim-353
    losses = [v for _, v in tracker.history["loss"]]
    assert losses[-1] < 0.8 * losses[0]
    lrs = [v for _, v in tracker.history["lr"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] <= cfg.lr and lrs[-1] >= cfg.min_lr
    assert {"words_per_s", "pairs_per_s", "epoch"} <= set(tracker.history)
    assert result.metrics["words"] == pytest.approx(3 * sum(len(s) for s in sentences[held_out:]))


def test_same_seed_same_vectors_and_cbow_trains(lee):
    sg, vocab, sentences = lee
    sentences = sentences[:60]
    cfg = Word2VecSpec(dim=16, epochs=2, batch_size=256, log_every=5)
    a = train_word2vec(cfg, sg, vocab, sentences, seed=3)
    b = train_word2vec(cfg, sg, vocab, sentences, seed=3)
    c = train_word2vec(cfg, sg, vocab, sentences, seed=4)
    assert np.array_equal(a.vectors, b.vectors) and not np.array_equal(a.vectors, c.vectors)

    cbow = SkipgramSpec(min_count=3, cbow=True)
    tracker = NullTracker()
    result = train_word2vec(cfg.model_copy(update={"epochs": 4, "lr": 0.05}), cbow, vocab, sentences, seed=3,
                            tracker=tracker)  # fmt: skip
    losses = [v for _, v in tracker.history["loss"]]
    assert result.model.cbow and losses[-1] < 0.9 * losses[0] and np.isfinite(result.vectors).all()


def test_first_epoch_from_shards_then_fresh_epochs(lee, tmp_path):
    sg, vocab, sentences = lee
    sentences = sentences[:80]
    write_skipgram(sentences, vocab, sg, 11, tmp_path / "train")
    write_skipgram(sentences[:20], vocab, sg, 12, tmp_path / "validation")
    shards = sorted((tmp_path / "train").glob("part-*.parquet"))
    cfg = Word2VecSpec(dim=16, epochs=2, batch_size=512)
    fresh = train_word2vec(cfg, sg, vocab, sentences, shards, seed=5)
    replay = train_word2vec(cfg.model_copy(update={"regenerate": False}), sg, vocab, None, shards, seed=5)
    generated = train_word2vec(cfg, sg, vocab, sentences, seed=5)
    assert not np.array_equal(fresh.vectors, replay.vectors) and not np.array_equal(fresh.vectors, generated.vectors)
    assert fresh.metrics["words"] == replay.metrics["words"] == generated.metrics["words"]
    with pytest.raises(ValueError, match="regenerate"):
        train_word2vec(cfg, sg, vocab, None, shards)
    val = sorted((tmp_path / "validation").glob("part-*.parquet"))
    assert 0 < evaluate_loss(fresh.model, val) < 6 * np.log(2)  # trained beats the all-zero-score loss

    cbow = sg.model_copy(update={"cbow": True})
    write_skipgram(sentences, vocab, cbow, 11, tmp_path / "cbow")
    cbow_shards = sorted((tmp_path / "cbow").glob("part-*.parquet"))
    from_shards = train_word2vec(cfg.model_copy(update={"regenerate": False}), cbow, vocab, None, cbow_shards, seed=5)
    assert from_shards.model.cbow and from_shards.metrics["words"] == fresh.metrics["words"]
    assert evaluate_loss(from_shards.model, cbow_shards) < 6 * np.log(2)


@pytest.mark.parametrize("binary", [True, False])
def test_export_loads_in_gensim_with_identical_vectors(tmp_path, binary):
    words = ["the", "räksmörgås", "서울", "x1"]
    vectors = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    vectors[0, 0] = 1e-30  # tiny and huge values survive the text format too
    vectors[1, 1] = 3.4e38
    path = save_word2vec(tmp_path / ("v.bin" if binary else "v.txt"), words, vectors, binary=binary)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert list(kv.index_to_key) == words and np.array_equal(kv.vectors, vectors)
    assert load_word2vec(path, binary)[0] == words and np.array_equal(load_word2vec(path, binary)[1], vectors)
    gensim_path = tmp_path / "gensim.out"
    kv.save_word2vec_format(str(gensim_path), binary=binary)  # and plm reads what gensim writes
    assert np.array_equal(load_word2vec(gensim_path, binary)[1], vectors)
    with pytest.raises(ValueError, match="whitespace"):
        save_word2vec(tmp_path / "bad", ["a b"], vectors[:1], binary)


def test_model_folder_and_predictor(lee, tmp_path):
    sg, vocab, sentences = lee
    result = train_word2vec(Word2VecSpec(dim=8, epochs=1), sg, vocab, sentences[:30], seed=1)
    model_dir = save_word_vectors(tmp_path / "model", result.model, vocab, lowercase=True)
    words, vectors = load_word_vectors(model_dir)
    assert words == vocab.words and np.array_equal(vectors, result.vectors) and vectors.dtype == np.float32
    assert json.loads((model_dir / "config.json").read_text())["arch"] == "word2vec"
    predictor = Word2VecPredictor.load(model_dir, tmp_path / "unused-tokenizer.json")
    frame = predictor.predict_frame(pd.DataFrame({"text": ["The the THE", "the qqqzzz", "!!!"]}))
    the = vectors[vocab.index["the"]]
    assert np.allclose(frame["embedding"][0], the) and np.allclose(frame["embedding"][1], the)
    assert list(frame["oov_rate"]) == [0.0, 0.5, 0.0] and not np.any(frame["embedding"][2])


def test_pretrain_stage_end_to_end_with_tracking(tmp_path):
    from mlflow import MlflowClient

    from plm import stages

    spec = load_spec(None, [f"home={tmp_path}", "corpus.paths=[sample:lee]", "corpus.text_unit=line",
                            "tokenizer.vocab_size=1000", "objectives.kinds=[skipgram]",
                            "objectives.skipgram.min_count=3", "model.arch=word2vec", "model.dim=32",
                            "model.epochs=2", "model.batch_size=1024"])  # fmt: skip
    with stages.Pipeline(spec) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        ex = stages.examples.run(p, ing, tok)
        pre = stages.pretrain.run(p, tok, ex)
    assert pre.output.arch == "word2vec" and not pre.reused
    words, vectors = load_word_vectors(pre.path / pre.output.model_dir)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(pre.path / pre.output.export_path), binary=True)
    assert list(kv.index_to_key) == words and np.array_equal(kv.vectors, vectors)
    text = gensim_models.KeyedVectors.load_word2vec_format(str(pre.path / pre.output.export_text_path))
    assert np.array_equal(text.vectors, vectors)
    for key in ("val_loss", "wordsim_spearman", "wordsim_coverage", "analogy_coverage", "words_per_s", "train_loss"):
        assert key in pre.metrics
    assert 0 < pre.metrics["val_loss"] < 6 * np.log(2) and pre.metrics["wordsim_pairs"] > 50
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(pre.run_id)
    assert run.data.metrics["wordsim_spearman"] == pytest.approx(pre.metrics["wordsim_spearman"])
    assert "loss" in run.data.metrics and run.data.params["model.arch"] == "word2vec"
    with stages.Pipeline(spec, tracking=False) as p2:  # same fingerprint: reused, not retrained
        again = stages.pretrain.run(p2, tok, ex)
    assert again.reused and again.fingerprint == pre.fingerprint
