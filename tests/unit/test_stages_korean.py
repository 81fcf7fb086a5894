"""Korean word vectors from a pipeline spec: jamo n-grams and morpheme words flow through examples ->
pretrain -> exports, and the fastText stage logs the word-form check (`plm.eval.wordform`) on Korean text."""

import json

import pytest

from plm import stages
from plm.config import load_spec
from plm.objectives.skipgram import VOCAB_FILE, Vocab
from plm.objectives.subwords import decompose_jamo
from plm.train.fasttext import load_fasttext_bin

BASE = ["corpus.paths=[sample:ko-constitution]", "corpus.text_unit=paragraph", "tokenizer.vocab_size=500",
        "objectives.kinds=[skipgram]", "objectives.skipgram.min_count=3", "model.arch=fasttext", "model.dim=16",
        "model.epochs=1", "model.buckets=5000"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One home for both runs: the second reuses the first's ingest and tokenizer stages."""
    return tmp_path_factory.mktemp("ko")


def _pretrain(home, *overrides):  # noqa: ANN001, ANN202
    spec = load_spec(None, [f"home={home}", *BASE, *overrides])
    with stages.Pipeline(spec, tracking=False) as p:
        ing = stages.ingest.run(p)
        tok = stages.tokenizer.run(p, ing)
        ex = stages.examples.run(p, ing, tok)
        return ex, stages.pretrain.run(p, tok, ex)


def test_jamo_fasttext_on_korean_logs_the_wordform_check(home):
    ex, pre = _pretrain(home, "model.subword=jamo")
    m = pre.metrics
    assert m["wordform_queries"] >= 50 and m["wordform_coverage"] == 1.0  # every unseen form has n-grams
    assert 0 <= m["wordform_recall_at_10_lo"] <= m["wordform_recall_at_10"] <= m["wordform_recall_at_10_hi"] <= 1
    assert m["wordform_prefix_queries"] == m["wordform_queries"] and "wordform_prefix_mrr" in m
    config = json.loads((pre.path / "model" / "config.json").read_text())
    assert config["subword"] == "jamo" and config["word_unit"] == "eojeol"
    words = Vocab.load(ex.path / "skipgram" / "train" / VOCAB_FILE).words
    assert load_fasttext_bin(pre.path / "vectors.bin").words == [decompose_jamo(w) for w in words]


def test_morpheme_words_reach_the_vocabulary_and_the_model_config(home):
    ex, pre = _pretrain(home, "objectives.skipgram.word_unit=morpheme")
    words = set(Vocab.load(ex.path / "skipgram" / "train" / VOCAB_FILE).words)
    assert {"국민", "은", "의", "하"} <= words and "국민은" not in words
    assert json.loads((pre.path / "model" / "config.json").read_text())["word_unit"] == "morpheme"
    assert not any(k.startswith("wordform") for k in pre.metrics)  # morpheme vocabularies rank no eojeol
    with pytest.raises(ValueError, match="word_unit"):
        load_spec(None, [f"home={home}", *BASE, "objectives.skipgram.word_unit=syllable"])


def test_a_spec_can_name_the_gate_metric_of_the_pretrained_model(home):
    from plm.stages.register import targets

    pre = stages.StageResult("pretrain", "p0", home, False, 0.0, output=stages.pretrain.Output(
        model_dir="model", arch="fasttext-16d", kind="fasttext"), metrics={"wordsim_spearman": float("nan"),
                                                                          "wordform_mrr": 0.3})  # fmt: skip

    def gate(*overrides):  # noqa: ANN002, ANN202
        with stages.Pipeline(load_spec(None, [f"home={home}", *BASE, *overrides]), tracking=False) as p:
            return targets(p, pre, None, None)[0].metric

    assert gate() == "wordsim_spearman"  # the family's: NaN on Korean, so never @champion
    assert gate("tracking.gate_metric=wordform_mrr") == "wordform_mrr"
    with pytest.raises(ValueError, match="logged no 'wordform_recall'.*wordform_mrr, wordsim_spearman"):
        gate("tracking.gate_metric=wordform_recall")
