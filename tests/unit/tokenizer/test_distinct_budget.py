"""`tokenizer.max_distinct_words`: the sizing pass counts distinct words exactly and samples documents to fit."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import TokenizerSpec
from plm.tokenizer.train import SAMPLE_MODULUS, build_tokenizer, distinct_fraction, distinct_words_by_bucket, fit_tokenizer, sample_keep

ODD = ["Ünïcödé 漢字テスト, 中文 (x) a$b c©d e_f «g» h—i", "Don't we'll 123abc ４５ ＡＢ ...!?", "대한민국은  민주공화국이다.\t끝"]


def pre_tokenized(cfg: TokenizerSpec, sentences: list[str]) -> set[str]:
    """The words the trainer counts: the tokenizer's own normalizer and pre-tokenizer."""
    tok, _ = build_tokenizer(cfg)
    return {w for s in sentences for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(s))}


def doc_id(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:16]


def own_chars(i: int) -> str:
    """Words with characters no other document has: first, inside and last in a word."""
    return f"{chr(0xC000 + i)}다 가{chr(0xB000 + i)}나"


def long_tail_lake(path, n_docs: int = 300) -> list:
    """Each document: common words plus 10 words of its own (3,000 of those), so distinct words grow with the sample."""
    common = "the model reads raw text and learns pieces".split()
    rows = [{"doc_id": doc_id(i), "split": "train",
             "sentences": [" ".join(common) + ".", " ".join(f"w{i}x{k}" for k in range(8)) + "!", own_chars(i)]}
            for i in range(n_docs)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=64)
    return rows


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
@pytest.mark.parametrize("lowercase", [False, True])
def test_counted_words_are_the_pre_tokenizers_words(kind, lowercase, mixed_lake, rows, tmp_path):
    path = tmp_path / "odd.parquet"
    extra = [{"doc_id": doc_id(1000 + i), "split": "train", "sentences": [s]} for i, s in enumerate(ODD)]
    pq.write_table(pa.Table.from_pylist(rows + extra), path)
    cfg = TokenizerSpec(kind=kind, lowercase=lowercase)
    by_bucket = distinct_words_by_bucket(cfg, [path])
    train = [s for r in rows + extra if r["split"] == "train" for s in r["sentences"]]
    assert by_bucket.sum() == len(pre_tokenized(cfg, train))
    # Each word is credited to the smallest hash bucket of the documents holding it.
    first: dict[str, int] = {}
    for r in rows + extra:
        if r["split"] == "train":
            for w in pre_tokenized(cfg, r["sentences"]):
                first[w] = min(first.get(w, SAMPLE_MODULUS), int(r["doc_id"], 16) % SAMPLE_MODULUS)
    expected = np.bincount(list(first.values()), minlength=SAMPLE_MODULUS)
    assert np.array_equal(by_bucket, expected)


def test_distinct_fraction_keeps_exactly_the_buckets_within_budget():
    by_bucket = np.zeros(SAMPLE_MODULUS, dtype=np.int64)
    by_bucket[[0, 10, 11, 500_000]] = [400, 300, 300, 5000]
    assert distinct_fraction(by_bucket, 10**6) == (1.0, 6000)
    # Buckets 0..499,999 hold 1000 words (12.. add none): the largest sample within 1000 stops before 500,000.
    fraction, words = distinct_fraction(by_bucket, 1000)
    assert words == 1000
    ids = [f"{b:016x}" for b in (0, 10, 11, 12, 499_999, 500_000, 999_999)]  # int(id, 16) % 10**6 is the bucket
    assert sample_keep(ids, fraction).tolist() == [True, True, True, True, True, False, False]
    fraction, words = distinct_fraction(by_bucket, 999)  # bucket 11 no longer fits
    assert words == 700 and sample_keep(ids[:4], fraction).tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="one hash bucket"):
        distinct_fraction(by_bucket, 399)


def test_tiny_budget_trains_on_a_sample_within_it(tmp_path):
    path = tmp_path / "lake.parquet"
    rows = long_tail_lake(path)
    cfg = TokenizerSpec(vocab_size=200, min_frequency=1, max_distinct_words=1000)
    _, stats = fit_tokenizer(cfg, [path], tmp_path / "tok.json")
    keep = sample_keep([r["doc_id"] for r in rows], stats.sampled_fraction)
    kept = [s for r, k in zip(rows, keep) if k for s in r["sentences"]]
    counted = len(pre_tokenized(cfg, kept))
    assert stats.split_distinct_words == len(pre_tokenized(cfg, [s for r in rows for s in r["sentences"]])) > 2000
    assert 0 < stats.sampled_fraction < 1 and stats.train_sentences == len(kept)
    assert counted == stats.distinct_words <= 1000
    # The largest such sample: one more document's words would not fit.
    buckets = sorted(int(r["doc_id"], 16) % SAMPLE_MODULUS for r, k in zip(rows, keep) if not k)
    bigger = sample_keep([r["doc_id"] for r in rows], (buckets[0] + 0.5) / SAMPLE_MODULUS)
    assert len(pre_tokenized(cfg, [s for r, k in zip(rows, bigger) if k for s in r["sentences"]])) > 1000


def test_budget_above_the_distinct_words_changes_nothing(tmp_path):
    path = tmp_path / "lake.parquet"
    long_tail_lake(path)  # ~2,400 distinct words in ~60 kB: the budget below makes the sizing pass count them
    counted_cfg = TokenizerSpec(vocab_size=200, min_frequency=1, max_distinct_words=5000)
    _, counted = fit_tokenizer(counted_cfg, [path], tmp_path / "a.json")
    _, skipped = fit_tokenizer(TokenizerSpec(vocab_size=200, min_frequency=1), [path], tmp_path / "b.json")
    assert counted.sampled_fraction == 1.0 and counted.distinct_words == counted.split_distinct_words > 2000
    assert skipped.distinct_words is None and "tokenizer_train.distinct_words" not in skipped.as_metrics()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_a_sample_keeps_the_whole_splits_alphabet(kind, tmp_path):
    path = tmp_path / "lake.parquet"
    rows = long_tail_lake(path)
    small = TokenizerSpec(kind=kind, vocab_size=200, min_frequency=1, max_distinct_words=1000)
    tok, stats = fit_tokenizer(small, [path], tmp_path / "small.json")
    full, _ = fit_tokenizer(small.model_copy(update={"max_distinct_words": 10**6}), [path], tmp_path / "full.json")
    assert stats.sampled_fraction < 0.5
    unsampled = [i for i, k in enumerate(sample_keep([r["doc_id"] for r in rows], stats.sampled_fraction)) if not k]
    unk = tok.token_to_id("[UNK]")
    for i in unsampled:  # their characters were never in the text trained on, yet none is unknown
        assert unk not in tok.encode(own_chars(i), add_special_tokens=False).ids
    # The same base vocabulary as training on everything: characters and `##x` / `x</w>`.
    def base(t):
        return {w for w in t.get_vocab() if len(w) == 1 or (w.startswith("##") and len(w) == 3) or w.endswith("</w>") and len(w) == 5}
    assert base(tok) == base(full)



def test_the_stage_says_which_budget_the_sample_is_for():
    from plm.stages.tokenizer import sample_note
    from plm.tokenizer.train import TrainStats

    cfg = TokenizerSpec(max_train_bytes=10**6, max_distinct_words=1000)
    assert sample_note(cfg, TrainStats(1.0, 500, 10, 500, 900, 900)) is None
    words = sample_note(cfg, TrainStats(0.25, 4000, 10, 16000, 990, 4000))
    assert words == ("tokenizer: train split over tokenizer.max_distinct_words, trained on a 25.00% hash sample "
                     "of documents (990 of 4,000 distinct words)")  # fmt: skip
    both = sample_note(cfg, TrainStats(0.1, 10**6, 10, 10**7, 1000, 5000))
    assert "over tokenizer.max_train_bytes and tokenizer.max_distinct_words," in both
    assert sample_note(cfg, TrainStats(0.1, 10**6, 10, 10**7)).endswith("10.00% hash sample of documents")
