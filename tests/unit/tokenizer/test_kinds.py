import json
import unicodedata

import numpy as np
import pytest

from plm.config import TokenizerSpec
from plm.tokenizer.specials import SpecialIds, hf_tokenizer_kwargs, special_tokens
from plm.tokenizer.train import compare_tokenizers, evaluate_tokenizer, fit_tokenizer, load_tokenizer, sample_keep, train_tokenizer

KINDS = ["wordpiece", "bpe", "bytelevel_bpe", "unigram"]
MIXED = ["대한민국은 민주공화국이다.", "The quick fox 한국어 문장.", "모든 국민은 법 앞에 평등하다. A dog!"]


def spec(kind: str, family: str = "bert", **kw) -> TokenizerSpec:
    return TokenizerSpec(kind=kind, family=family, vocab_size=400, min_frequency=1, **kw)


@pytest.mark.parametrize("family", ["bert", "gpt"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_saves_reloads_and_round_trips_hangul(kind, family, mixed_lake, tmp_path):
    out = tmp_path / "tok" / "tokenizer.json"
    tok, stats = fit_tokenizer(spec(kind, family, lowercase=True), mixed_lake, out)
    assert stats.sampled_fraction == 1.0 and stats.train_sentences == 64 * 3
    loaded = load_tokenizer(out)
    specials = special_tokens(family)
    assert [loaded.token_to_id(t) for t in specials] == list(range(len(specials)))
    for text in ["대한민국은 민주공화국이다", "국회는 법률을 제정한다"]:
        enc = loaded.encode(text, add_special_tokens=False)
        assert enc.ids == tok.encode(text, add_special_tokens=False).ids
        # Lowercasing must not decompose syllables into jamo (no accent stripping, no NFD).
        assert all(unicodedata.name(c).startswith("HANGUL SYLLABLE") for t in enc.tokens for c in t if "가" <= c <= "힣")
        assert loaded.decode(enc.ids).replace(" ", "") == text.replace(" ", "")
    ids = SpecialIds.from_tokenizer(loaded)
    assert ids.n_leading == len(specials) and ids.all == frozenset(range(len(specials)))
    if family == "bert":
        assert (ids.pad, ids.unk, ids.cls, ids.sep, ids.mask) == (0, 1, 2, 3, 4) and ids.eos is None
        pair = loaded.encode("a b", "c")
        assert pair.ids[0] == 2 and pair.ids[-1] == 3 and pair.type_ids[0] == 0 and pair.type_ids[-1] == 1
    else:
        assert (ids.eos, ids.bos, ids.pad, ids.unk, ids.mask) == (0, 0, 1, 2, 3) and ids.cls is None
        assert loaded.encode("fox").ids == loaded.encode("fox", add_special_tokens=False).ids  # no template


def test_kinds_have_their_models_and_pre_tokenizers(mixed_lake, tmp_path):
    expected = {"wordpiece": ("WordPiece", "BertPreTokenizer"), "bpe": ("BPE", "BertPreTokenizer"),
                "bytelevel_bpe": ("BPE", "ByteLevel"), "unigram": ("Unigram", "Metaspace")}  # fmt: skip
    for kind, (model, pre) in expected.items():
        train_tokenizer(spec(kind), mixed_lake, tmp_path / f"{kind}.json")
        saved = json.loads((tmp_path / f"{kind}.json").read_text())
        assert saved["model"]["type"] == model and saved["pre_tokenizer"]["type"] == pre
        assert "strip_accents" not in json.dumps(saved["normalizer"]) or '"strip_accents": false' in json.dumps(saved["normalizer"])
    byte_level = json.loads((tmp_path / "bytelevel_bpe.json").read_text())
    assert byte_level["model"]["unk_token"] is None and byte_level["pre_tokenizer"]["add_prefix_space"] is False


def test_bytelevel_never_produces_unknown_and_keeps_case(mixed_lake, tmp_path):
    tok = train_tokenizer(spec("bytelevel_bpe", "gpt"), mixed_lake, tmp_path / "t.json")
    text = "Ünïcödé 漢字 😀 The Fox"
    assert tok.decode(tok.encode(text).ids) == text


def test_nfkc_folds_compatibility_forms(mixed_lake, tmp_path):
    nfc = train_tokenizer(spec("unigram", normalization="NFC"), mixed_lake, tmp_path / "a.json")
    nfkc = train_tokenizer(spec("unigram", normalization="NFKC"), mixed_lake, tmp_path / "b.json")
    assert nfkc.normalizer.normalize_str("ｆｏｘ") == "fox" and nfc.normalizer.normalize_str("ｆｏｘ") == "ｆｏｘ"


def test_hash_sample_under_a_tiny_budget_is_deterministic(mixed_lake, tmp_path):
    # Byte-level BPE: its trainer is deterministic given the same text. WordPiece/BPE/Unigram
    # training in `tokenizers` 0.23 breaks ties in hash-map order (huggingface/tokenizers#1794).
    cfg = spec("bytelevel_bpe", max_train_bytes=2000)
    _, a = fit_tokenizer(cfg, mixed_lake, tmp_path / "a.json")
    _, b = fit_tokenizer(cfg, mixed_lake, tmp_path / "b.json")
    full = fit_tokenizer(spec("bytelevel_bpe"), mixed_lake, tmp_path / "c.json").stats
    assert a == b and (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()
    assert a.split_bytes == full.train_bytes > 2000
    assert a.sampled_fraction == pytest.approx(2000 / a.split_bytes)
    assert 0 < a.train_sentences < full.train_sentences and a.train_bytes < a.split_bytes
    assert a.as_metrics()["tokenizer_train.sampled_fraction"] == a.sampled_fraction


def test_sample_keep_is_a_fraction_of_hex_ids():
    ids = [f"{i * 2654435761 % 2**64:016x}" for i in range(20_000)]
    keep = sample_keep(ids, 0.25)
    assert np.array_equal(keep, sample_keep(ids, 0.25)) and abs(keep.mean() - 0.25) < 0.02
    assert not sample_keep(ids, 0.0).any() and sample_keep(ids, 1.0).all()
    assert sample_keep(["not-hex"], 1.0).all()  # non-hex ids are hashed, not rejected


def test_evaluation_reports_per_language_fertility_and_vocabulary_use(mixed_lake, tmp_path):
    for kind in KINDS:
        tok = train_tokenizer(spec(kind), mixed_lake, tmp_path / f"{kind}.json")
        m = evaluate_tokenizer(tok, mixed_lake, "validation")
        assert {"fertility", "fertility.ko", "fertility.en", "unk_rate", "bytes_per_token", "vocab_used"} <= m.keys()
        assert m["fertility.ko"] >= 1.0 and m["fertility.en"] >= 1.0 and 0 < m["vocab_used"] <= 1
        assert m["unk_rate"] == 0.0  # the validation text is all seen in training
    rows = compare_tokenizers({k: tmp_path / f"{k}.json" for k in KINDS}, mixed_lake, "validation")
    assert [r["name"] for r in rows] == KINDS and rows[2]["model"] == "BPE" and rows[3]["model"] == "Unigram"
    # Byte-level pieces are bytes: more tokens per Korean word than WordPiece's syllable pieces.
    assert rows[2]["fertility.ko"] > rows[0]["fertility.ko"]


def test_unknown_rate_counts_unk(mixed_lake, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tok = train_tokenizer(spec("wordpiece"), mixed_lake, tmp_path / "t.json")
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.Table.from_pylist([{"doc_id": "ab", "lang": "en", "sentences": ["fox 漢", "fox"], "split": "test"}]), path)
    m = evaluate_tokenizer(tok, [path], "test")
    assert m["test_tokens"] == 3 and m["unk_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("family", ["bert", "gpt"])
@pytest.mark.parametrize("kind", KINDS)
def test_transformers_fast_tokenizer_encodes_identically(kind, family, mixed_lake, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "tokenizer.json"
    tok = train_tokenizer(spec(kind, family), mixed_lake, out)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out), **hf_tokenizer_kwargs(family))
    assert hf(MIXED)["input_ids"] == [e.ids for e in tok.encode_batch(MIXED)]
    assert hf(MIXED, add_special_tokens=False)["input_ids"] == [e.ids for e in tok.encode_batch(MIXED, add_special_tokens=False)]
    ids = SpecialIds.from_tokenizer(tok)
    assert (hf.pad_token_id, hf.mask_token_id, hf.unk_token_id) == (ids.pad, ids.mask, ids.unk)
    if family == "bert":
        assert (hf.cls_token_id, hf.sep_token_id) == (ids.cls, ids.sep)
    else:
        assert hf.eos_token_id == ids.eos == 0


def test_budget_uses_the_n_chars_bound_and_samples_only_when_needed(rows, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "lake.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "n_chars": sum(len(s) + 1 for s in r["sentences"])} for r in rows]), path)
    _, roomy = fit_tokenizer(spec("bytelevel_bpe"), [path], tmp_path / "a.json")  # bound fits: one pass
    assert roomy.sampled_fraction == 1.0 and roomy.split_bytes == roomy.train_bytes
    _, tight = fit_tokenizer(spec("bytelevel_bpe", max_train_bytes=3000), [path], tmp_path / "b.json")
    assert tight.split_bytes == roomy.split_bytes and tight.sampled_fraction == pytest.approx(3000 / roomy.split_bytes)
