"""Skip-gram / CBOW generation checked against word2vec's definitions (and gensim's own tables) on the Lee corpus."""

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest

from plm.config import SkipgramSpec
from plm.objectives import skipgram as sg
from plm.samples import resolve_sample

pytest.importorskip("gensim")

WINDOW = 5


@pytest.fixture(scope="module")
def lee():
    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    vocab = sg.build_vocab([lines[:150], lines[150:]], min_count=5, lowercase=True)
    return lines, vocab, sg.encode_sentences([lines], vocab, lowercase=True)


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("part-*.parquet"))}


def test_words_vocab_order_and_roundtrip(tmp_path):
    assert sg.split_words("Hello, World! 대한민국은 민주공화국이다.", lowercase=True) == ["hello", "world", "대한민국은", "민주공화국이다"]
    vocab = sg.build_vocab([["b a a", "c b a"], ["d c b"]], min_count=2, lowercase=False)
    assert vocab.words == ["a", "b", "c"] and vocab.counts.tolist() == [3, 3, 2]
    assert [s.tolist() for s in sg.encode_sentences([["a x c", "x y"]], vocab, lowercase=False)] == [[0, 2]]
    vocab.save(tmp_path / "vocab.parquet")
    again = sg.Vocab.load(tmp_path / "vocab.parquet")
    assert again.words == vocab.words and again.counts.tolist() == vocab.counts.tolist()
    assert pq.read_schema(tmp_path / "vocab.parquet").types[1] == "int64"


def test_vocab_keep_probability_and_noise_equal_gensim(lee):
    from gensim.models import Word2Vec

    lines, vocab, _ = lee
    model = Word2Vec(vector_size=8, min_count=5, sample=1e-3, negative=5, workers=1)
    model.build_vocab([sg.split_words(line, True) for line in lines])
    assert len(model.wv) == len(vocab)
    assert {w: model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key} == dict(zip(vocab.words, vocab.counts.tolist()))
    ours = sg.keep_probability(vocab.counts, 1e-3)
    theirs = np.array([model.wv.get_vecattr(w, "sample_int") for w in vocab.words]) / 2**32
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    order = np.argsort([model.wv.key_to_index[w] for w in vocab.words])
    gensim_q = np.empty(len(vocab))
    gensim_q[order] = np.diff(np.r_[0, model.cum_table]) / model.cum_table[-1]
    np.testing.assert_allclose(sg.noise_distribution(vocab.counts), gensim_q, atol=1e-8)


def test_subsampling_keep_rate_per_word_matches_formula(lee):
    _, vocab, sentences = lee
    ids, _ = sg.flatten(sentences)
    keep_prob = sg.keep_probability(vocab.counts, 1e-3)
    rng = np.random.default_rng(3)
    draws = 40
    kept = sum(np.bincount(ids[sg.subsample(ids, keep_prob, rng)], minlength=len(vocab)) for _ in range(draws))
    trials = np.bincount(ids, minlength=len(vocab)) * draws
    expected = trials * keep_prob
    variance = trials * keep_prob * (1 - keep_prob)
    tested = variance > 25
    assert tested.sum() > 20  # the frequent words, where subsampling bites
    z = (kept[tested] - expected[tested]) / np.sqrt(variance[tested])
    assert np.abs(z).max() < 5
    assert keep_prob[0] < 0.2 and np.all(keep_prob[vocab.counts / vocab.total < 1e-3] == 1)


def test_window_positions_exact_against_a_python_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 15, 300)
    sentence = np.repeat(np.arange(300), lengths).astype(np.int32)
    radius = rng.integers(1, WINDOW + 1, len(sentence)).astype(np.int32)
    centers, contexts = sg.window_positions(sentence, radius, WINDOW)
    reference = [
        (i, j)
        for i in range(len(sentence))
        for j in range(i - radius[i], i + radius[i] + 1)
        if j != i and 0 <= j < len(sentence) and sentence[j] == sentence[i]
    ]
    assert list(zip(centers.tolist(), contexts.tolist())) == reference
    np.testing.assert_allclose(
        sg.expected_contexts(sentence, WINDOW).sum(),
        sum(np.mean([min(b, i - s) + min(b, e - i) for b in range(1, WINDOW + 1)])
            for s, e in zip(np.r_[0, np.cumsum(lengths)[:-1]], np.cumsum(lengths) - 1) for i in range(s, e + 1)),
    )  # fmt: skip


def _shard(lee, cbow=False, seed=5):
    _, vocab, sentences = lee
    ids, offsets = sg.flatten(sentences)
    cfg = SkipgramSpec(window=WINDOW, negatives=5, cbow=cbow)
    sampler = sg.NegativeSampler(sg.noise_distribution(vocab.counts))
    out = sg.skipgram_shard(ids, np.diff(offsets), sg.keep_probability(vocab.counts, cfg.subsample), sampler, cfg,
                            np.random.default_rng(seed))  # fmt: skip
    out.stats.noise = sampler.probs
    return out, cfg


def test_radius_uniform_pairs_and_negatives(lee):
    from scipy.stats import chisquare

    out, cfg = _shard(lee)
    hist = np.array(out.stats.radius_hist)
    assert chisquare(hist).pvalue > 1e-4
    assert np.all(out.negatives != out.context[:, None])
    assert out.negatives.shape == (len(out.center), cfg.negatives) and out.negatives.dtype == np.int32
    s = out.stats.summary()
    assert s["negatives_tv_buckets"] < 0.01
    assert all(abs(s[f"negatives_ratio_top{i}"] - 1) < 0.03 for i in range(1, 6))
    assert abs(s["pairs_per_word"] / s["pairs_per_word_expected"] - 1) < 0.02
    # Observed negatives over the 50 most frequent words against the exact conditional expectation.
    expected = out.stats.expected_negatives()
    top = slice(0, 50)
    chi = ((out.stats.negative_counts[top] - expected[top]) ** 2 / expected[top]).sum()
    assert chi < 50 + 5 * np.sqrt(100)
    assert sg.check_skipgram(out.stats, cfg, tolerance=0.03) == []


def test_check_catches_wrong_noise_distribution(lee):
    out, cfg = _shard(lee)
    out.stats.noise = sg.noise_distribution(lee[1].counts, power=1.0)  # claim plain unigram was intended
    failures = sg.check_skipgram(out.stats, cfg, tolerance=0.03)
    assert any("negatives" in f for f in failures)


def test_cbow_shape(lee):
    out, cfg = _shard(lee, cbow=True)
    table = out.table()
    assert table.schema.names == ["center", "context", "negatives"]
    sizes = np.diff(out.context_offsets)
    assert sizes.min() >= 1 and sizes.max() <= 2 * WINDOW and len(sizes) == len(out.center)
    assert str(table.schema.field("context").type) == "list<item: int32>"
    assert np.all(out.negatives != out.center[:, None])
    assert out.stats.pairs == sizes.sum()


def test_shards_deterministic_resumable_and_independent_of_grouping(lee, tmp_path):
    _, vocab, sentences = lee
    cfg = SkipgramSpec(window=WINDOW, shard_size=40_000)
    full = sg.write_skipgram(sentences, vocab, cfg, seed=9, out_dir=tmp_path / "a")
    digests = _digests(tmp_path / "a")
    assert len(digests) >= 4 and full.shards_written == len(digests)
    assert (tmp_path / "a" / "vocab.parquet").exists()
    assert sg.check_skipgram(full, cfg, 0.03) == []

    sg.write_skipgram(sentences, vocab, cfg, seed=9, out_dir=tmp_path / "b", shards=range(1, len(digests), 2))
    sg.write_skipgram(sentences, vocab, cfg, seed=9, out_dir=tmp_path / "b", shards=range(0, len(digests), 2))
    assert _digests(tmp_path / "b") == digests

    sg.write_skipgram(sentences, vocab, cfg, seed=9, out_dir=tmp_path / "c", workers=2)
    assert _digests(tmp_path / "c") == digests

    (tmp_path / "a" / "part-00002.parquet").unlink()
    resumed = sg.write_skipgram(sentences, vocab, cfg, seed=9, out_dir=tmp_path / "a")
    assert (resumed.shards_written, resumed.shards_reused) == (1, len(digests) - 1)
    assert _digests(tmp_path / "a") == digests
    assert {k: v for k, v in resumed.summary().items() if not k.startswith("shards_")} == {
        k: v for k, v in full.summary().items() if not k.startswith("shards_")
    }
    assert sum(pq.read_metadata(tmp_path / "a" / n).num_rows for n in digests) == full.examples

    other = sg.write_skipgram(sentences, vocab, cfg, seed=10, out_dir=tmp_path / "d")
    assert _digests(tmp_path / "d") != digests and other.examples != full.examples


def test_empty_shard_writes_an_empty_table(lee):
    _, vocab, _ = lee
    cfg = SkipgramSpec()
    sampler = sg.NegativeSampler(sg.noise_distribution(vocab.counts))
    out = sg.skipgram_shard(np.zeros(0, np.int32), np.zeros(0, np.int64), sg.keep_probability(vocab.counts, 1e-3),
                            sampler, cfg, np.random.default_rng(0))  # fmt: skip
    assert out.table().num_rows == 0 and out.stats.pairs == 0
