import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import ObjectivesSpec
from plm.objectives.mlm import IGNORE, mask_tokens
from plm.objectives.nsp import create_pairs, truncate_seq_pair
from plm.objectives.shards import check_statistics, write_bert_examples
from plm.tokenizer.encode import EncodedDoc
from plm.tokenizer.specials import SpecialIds
from plm.tokenizer.train import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID

VOCAB = 1000
SPECIALS = SpecialIds(pad=PAD_ID, unk=UNK_ID, cls=CLS_ID, sep=SEP_ID, mask=MASK_ID, bos=None, eos=None,
                      all=frozenset(range(5)), n_leading=5)


def synthetic_docs(n_docs=80, seed=0):
    rng = np.random.default_rng(seed)
    return [
        EncodedDoc(f"doc{d}", [rng.integers(5, VOCAB, rng.integers(3, 30)).astype(np.int32) for _ in range(rng.integers(1, 12))])
        for d in range(n_docs)
    ]


def test_mask_exact_counts_and_never_special():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, VOCAB, (256, 128)).astype(np.int32)
    lengths = rng.integers(10, 129, 256)
    special = np.arange(128)[None, :] >= lengths[:, None]
    ids[:, 0] = CLS_ID
    special[:, 0] = True
    ids[special] = PAD_ID
    ids[:, 0] = CLS_ID
    out = mask_tokens(ids, special, rng, vocab_size=VOCAB, n_special=5, mask_id=MASK_ID, probability=0.15,
                      max_predictions=20, mask_fraction=0.8, random_fraction=0.1)
    selected = out.labels != IGNORE
    n_cand = (~special).sum(1)
    expected = np.minimum(20, np.maximum(1, np.rint(n_cand * 0.15)))
    assert (selected.sum(1) == expected).all()
    assert not (selected & special).any()
    assert (out.labels[selected] == ids[selected]).all()
    assert (out.input_ids[~selected] == ids[~selected]).all()
    replaced = out.input_ids[selected]
    assert ((replaced == MASK_ID) | (replaced >= 5)).all()  # random replacements are never special tokens
    n = selected.sum()
    assert abs(out.n_masked / n - 0.8) < 0.02 and abs(out.n_random / n - 0.1) < 0.015


def test_truncate_seq_pair_trims_longer_side():
    rng = np.random.default_rng(0)
    a, b = list(range(50)), list(range(10))
    truncate_seq_pair(a, b, 30, rng)
    assert len(a) + len(b) == 30 and len(b) == 10


def test_pairs_fit_and_is_next_is_the_real_continuation():
    docs = synthetic_docs()
    documents = [d.sentences for d in docs]
    rng = np.random.default_rng(3)
    pairs = [p for i in range(len(documents)) for p in create_pairs(documents, i, 64, 0.1, 0.5, rng)]
    assert pairs
    for p in pairs:
        assert len(p.tokens_a) + len(p.tokens_b) <= 61 and p.tokens_a and p.tokens_b
        if not p.is_random_next:
            assert p.b_doc == p.a_doc
        elif not p.forced_random:
            assert p.b_doc != p.a_doc
    unforced = [p for p in pairs if not p.forced_random]
    rate = np.mean([p.is_random_next for p in unforced])
    assert abs(rate - 0.5) < 4 * np.sqrt(0.25 / len(unforced))  # a fair coin, within 4 standard errors


def _digest(directory):
    return [hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.glob("part-*.parquet"))]


def test_shards_schema_statistics_and_determinism(tmp_path):
    cfg = ObjectivesSpec(seq_len=64, docs_per_shard=100, dupe_factor=2)
    docs = synthetic_docs(600)
    stats = write_bert_examples(docs, "train", cfg, VOCAB, SPECIALS, tmp_path / "a")
    write_bert_examples(docs, "train", cfg, VOCAB, SPECIALS, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    summary = stats.summary()
    assert check_statistics(summary, cfg) == []
    table = pq.read_table(sorted((tmp_path / "a").glob("*.parquet"))[0])
    assert table.schema.names == ["input_ids", "token_type_ids", "labels", "nsp_label", "a_doc_id", "b_doc_id"]
    assert table.schema.field("input_ids").type.value_type == pa.int32()
    assert table.schema.field("token_type_ids").type.value_type == pa.int8()
    assert table.schema.field("labels").type.value_type == pa.int32()
    for row in table.slice(0, 50).to_pylist():
        ids, types, labels = row["input_ids"], row["token_type_ids"], row["labels"]
        assert ids[0] == CLS_ID and ids[-1] == SEP_ID and len(ids) <= 64
        sep = ids.index(SEP_ID)
        assert set(types[: sep + 1]) == {0} and set(types[sep + 1 :]) == {1}
        assert labels[0] == IGNORE and labels[sep] == IGNORE and labels[-1] == IGNORE
        assert len(ids) == len(types) == len(labels)


def test_statistics_gate_reports_deviations():
    cfg = ObjectivesSpec()
    bad = {"mask_rate": 0.30, "mask_token_share": 0.8, "random_token_share": 0.1, "unchanged_share": 0.1,
           "nsp_random_rate_unforced": 0.5, "candidates": 1e5, "selected": 1.5e4, "examples": 2000,
           "nsp_forced_random": 100}
    failures = check_statistics(bad, cfg)
    assert len(failures) == 1 and failures[0].startswith("mask_rate")


def test_same_shards_for_any_number_of_workers_and_after_resume(tmp_path):
    docs = synthetic_docs(300)
    one = ObjectivesSpec(seq_len=64, docs_per_shard=50, dupe_factor=2, workers=1)
    two = one.model_copy(update={"workers": 2})
    write_bert_examples(docs, "train", one, VOCAB, SPECIALS, tmp_path / "w1")
    s2 = write_bert_examples(docs, "train", two, VOCAB, SPECIALS, tmp_path / "w2")
    assert len(_digest(tmp_path / "w1")) == 12 and _digest(tmp_path / "w1") == _digest(tmp_path / "w2")
    # a killed run: some shards written, one never finished (only its temp file exists)
    victims = sorted((tmp_path / "w2").glob("part-*.parquet"))[5:]
    for v in victims:
        v.unlink()
    (tmp_path / "w2" / "part-001-00004.tmp123").write_bytes(b"partial")
    resumed = write_bert_examples(docs, "train", two, VOCAB, SPECIALS, tmp_path / "w2")
    assert _digest(tmp_path / "w1") == _digest(tmp_path / "w2")
    assert resumed.shards_reused == 5 and resumed.shards_written == 7
    assert resumed.examples == s2.examples and resumed.selected == s2.selected


def test_bernoulli_mode_rate_without_cap():
    rng = np.random.default_rng(5)
    ids = rng.integers(5, VOCAB, (512, 128)).astype(np.int32)
    special = np.zeros_like(ids, dtype=bool)
    special[:, 0] = special[:, -1] = True
    out = mask_tokens(ids, special, rng, vocab_size=VOCAB, n_special=5, mask_id=MASK_ID, probability=0.15,
                      max_predictions=20, mask_fraction=0.8, random_fraction=0.1, mode="bernoulli")
    rate = out.n_selected / out.n_candidates
    assert abs(rate - 0.15) < 0.005
    per_row = (out.labels != IGNORE).sum(1)
    assert per_row.max() > 20  # bernoulli has no max_predictions cap, as in the HF collator
    assert not (out.labels[special] != IGNORE).any()


@pytest.mark.parametrize("mode", ["exact", "bernoulli"])
def test_whole_word_groups_are_never_split(mode):
    rng = np.random.default_rng(9)
    ids = rng.integers(5, VOCAB, (200, 64)).astype(np.int32)
    starts = rng.random((200, 64)) < 0.4
    starts[:, 0] = True
    groups = np.cumsum(starts, axis=1)
    special = np.zeros_like(ids, dtype=bool)
    special[:, 0] = True
    out = mask_tokens(ids, special, rng, vocab_size=VOCAB, n_special=5, mask_id=MASK_ID, probability=0.15,
                      max_predictions=20, mask_fraction=0.8, random_fraction=0.1, mode=mode, groups=groups)
    selected = out.labels != IGNORE
    for r in range(200):
        for g in np.unique(groups[r][selected[r]]):
            members = (groups[r] == g) & ~special[r]
            assert selected[r][members].all()
        if mode == "exact":
            k = min(20, max(1, round(63 * 0.15)))
            assert selected[r].sum() <= k


def test_whole_word_shards_keep_word_pieces_together(tmp_path):
    docs = synthetic_docs(120, seed=4)
    rng = np.random.default_rng(0)
    for d in docs:  # words of 1-3 pieces
        d.word_ids = [np.cumsum(rng.random(len(s)) < 0.5).astype(np.int32) for s in d.sentences]
        d.lang, d.starts, d.texts = "en", None, None
    cfg = ObjectivesSpec(seq_len=64, docs_per_shard=60, dupe_factor=1, whole_word="word")
    stats = write_bert_examples(docs, "train", cfg, VOCAB, SPECIALS, tmp_path / "ww")
    assert stats.examples > 100 and check_statistics(stats.summary(), cfg) == []


def test_sop_pairs_are_consecutive_and_half_swapped():
    docs = synthetic_docs(400, seed=2)
    documents = [d.sentences for d in docs]
    rng = np.random.default_rng(1)
    pairs = [p for i in range(len(documents)) for p in create_pairs(documents, i, 64, 0.1, 0.5, rng, order_prediction=True)]
    assert all(p.a_doc == p.b_doc and not p.forced_random for p in pairs)
    # within 4 standard errors of a fair coin
    assert abs(np.mean([p.is_random_next for p in pairs]) - 0.5) < 4 * np.sqrt(0.25 / len(pairs))
    # A and B are spans of the same document, in order unless swapped (truncation may trim their edges)
    def position(flat, span):
        return next(i for i in range(len(flat) - len(span) + 1) if flat[i : i + len(span)] == span)

    for p in pairs[:50]:
        flat = np.concatenate(documents[p.a_doc]).tolist()
        a, b = position(flat, p.tokens_a), position(flat, p.tokens_b)
        first, second = (b, a) if p.is_random_next else (a, b)
        assert first + len(p.tokens_b if p.is_random_next else p.tokens_a) <= second


def test_dynamic_masking_writes_clean_ids_and_loader_masks_deterministically(tmp_path):
    from plm.objectives.mlm import DynamicMasker

    cfg = ObjectivesSpec(seq_len=64, docs_per_shard=100, dupe_factor=1, masking="dynamic", tolerance=0.1)
    stats = write_bert_examples(synthetic_docs(100), "train", cfg, VOCAB, SPECIALS, tmp_path / "dyn")
    table = pq.read_table(sorted((tmp_path / "dyn").glob("*.parquet"))[0])
    assert all(set(r) == {IGNORE} for r in table.column("labels").to_pylist())
    assert MASK_ID not in {t for r in table.column("input_ids").to_pylist() for t in r}
    assert check_statistics(stats.summary(), cfg) == []
    masker = DynamicMasker(VOCAB, 5, MASK_ID, tuple(range(5)), 0.15, 20, 0.8, 0.1)
    ids = np.asarray([[CLS_ID, *range(10, 40), SEP_ID, 0, 0]], dtype=np.int64)
    att = (ids != 0).astype(np.int64)
    a = masker(ids, att, np.random.default_rng([1, 2]))
    b = masker(ids, att, np.random.default_rng([1, 2]))
    assert (a[0] == b[0]).all() and (a[1] != IGNORE).sum() == round(30 * 0.15)
    assert (a[1][0, [0, 31, 32, 33]] == IGNORE).all()


def test_statistics_band_widens_for_small_samples_only():
    cfg = ObjectivesSpec()
    small = {"mask_rate": 0.15, "mask_token_share": 0.8, "random_token_share": 0.1, "unchanged_share": 0.1,
             "nsp_random_rate_unforced": 0.56, "candidates": 1e5, "selected": 1.5e4, "examples": 300,
             "nsp_forced_random": 0}
    assert check_statistics(small, cfg) == []  # 0.06 off on 300 coins is within 4 standard errors (0.115)
    large = {**small, "examples": 100_000}
    assert [f.split(" ")[0] for f in check_statistics(large, cfg)] == ["nsp_random_rate_unforced"]


def test_fused_nsp_planner_equals_the_stepwise_one():
    """The one-loop NSP planner draws the same coins in the same order as `_plan_nsp` + `truncation` per instance."""
    import random

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from plm.objectives.nsp import PairPlan, _plan_document_stepwise, _plan_nsp_document

    docs = st.lists(st.lists(st.integers(1, 200), min_size=1, max_size=12), min_size=1, max_size=8)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(docs, st.integers(16, 160), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**32))
    def check(lengths, seq_len, short_seq_prob, random_fraction, seed):
        bounds = [np.concatenate([[0], np.cumsum(d)]).tolist() for d in lengths]
        fused, stepwise = PairPlan(), PairPlan()
        coin_f, coin_s = random.Random(seed), random.Random(seed)
        for i in range(len(bounds)):
            _plan_nsp_document(bounds, i, seq_len, short_seq_prob, random_fraction, coin_f, fused)
            _plan_document_stepwise(bounds, i, seq_len, short_seq_prob, random_fraction, coin_s, stepwise, False)
        assert fused == stepwise
        assert coin_f.getstate() == coin_s.getstate()

    check()


def test_exact_selection_by_partition_equals_a_full_sort():
    """`_select_exact` takes the k-th key from the partitioned smallest keys; a full sort picks the same positions."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from plm.objectives.mlm import _select_exact

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(1, 12), st.integers(1, 40), st.integers(0, 45), st.floats(0, 1), st.integers(0, 2**32))
    def check(n, t, max_k, density, seed):
        candidates = np.random.default_rng(seed).random((n, t)) < density
        k = np.minimum(np.random.default_rng(seed + 1).integers(0, max_k + 1, n), candidates.sum(axis=1))
        got = _select_exact(candidates, k, np.random.default_rng(seed + 2))
        keys = np.random.default_rng(seed + 2).random((n, t))
        keys[~candidates] = 2.0
        kth = np.take_along_axis(np.sort(keys, axis=1), np.maximum(k - 1, 0)[:, None], axis=1)
        assert np.array_equal(got, (keys <= kth) & candidates & (k[:, None] > 0))

    check()
