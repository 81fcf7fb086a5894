"""The Korean word-form check: Kiwi stems, query selection, vector and prefix ranks, bootstrap summary."""

import numpy as np
import pytest

from plm.eval.wordform import analyse, build_task, hangul_share, korean_wordform_metrics, summarise

VOCAB = ["학교", "학교는", "국가", "국민", "국민은", "민주공화국이다"]
COUNTS = [9, 3, 8, 7, 2, 4]


def test_stems_are_the_first_content_morpheme_of_stem_plus_functional_forms():
    assert analyse(["학교에서", "했다", "대한민국은", "민주공화국이다"]) == [
        ("학교/NNG", 2), ("하/VV", 3), ("대한민국/NNP", 2), (None, 4)]  # a compound noun + copula is no inflection


@pytest.fixture(scope="module")
def task():
    # 민주공화국에서 (a compound), 국회에서 (stem not in the vocabulary), 학교 (in it) and english are no queries.
    return build_task(VOCAB, ["학교에서", "국민에게", "국회에서", "학교", "english", "민주공화국에서"])


def test_queries_are_unseen_inflections_of_an_in_vocabulary_stem(task):
    assert task.queries == ["국민에게", "학교에서"] and task.stems == ["국민/NNG", "학교/NNG"]


def test_vector_ranks_find_the_first_same_stem_neighbour(task):
    vectors = np.eye(len(VOCAB), dtype=np.float32)
    # 국민에게 points at 국가 then 국민은 (rank 2); 학교에서 has no vector (inf: a miss, no coverage).
    probe = {"국민에게": vectors[2] + 0.5 * vectors[4], "학교에서": None}
    ranks = task.vector_ranks(vectors, probe.get)
    assert ranks.tolist() == [2.0, np.inf]
    scores = summarise(ranks, "wordform", ks=(1, 5))
    assert scores["wordform_queries"] == 2 and scores["wordform_coverage"] == 0.5
    assert scores["wordform_recall_at_1"] == 0.0 and scores["wordform_recall_at_5"] == 0.5
    assert scores["wordform_mrr"] == pytest.approx(0.25)
    assert scores["wordform_mrr_lo"] <= scores["wordform_mrr"] <= scores["wordform_mrr_hi"]
    with pytest.raises(ValueError, match="vectors for"):
        task.vector_ranks(vectors[:3], probe.get)


def test_prefix_baseline_ranks_by_shared_prefix_then_frequency(task):
    # 국민에게: 국민 and 국민은 share 2 characters (국민 the more frequent: rank 1); 학교에서: 학교 first.
    assert task.prefix_ranks(COUNTS).tolist() == [1.0, 1.0]
    # With 국가 made the most frequent, it still shares only one character: the ranking is by prefix first.
    assert task.prefix_ranks([9, 3, 100, 7, 2, 4]).tolist() == [1.0, 1.0]


def test_metrics_only_for_korean_vocabularies():
    vectors = np.eye(len(VOCAB), dtype=np.float32)
    out = korean_wordform_metrics(VOCAB, COUNTS, vectors, lambda w: vectors[3], ["국민에게"])
    assert out["wordform_recall_at_1"] == 1.0 and out["wordform_prefix_recall_at_1"] == 1.0
    assert korean_wordform_metrics(["the", "film"], [2, 1], np.eye(2), lambda w: None, ["films"]) == {}
    assert hangul_share(["학교", "school"]) == 0.5
