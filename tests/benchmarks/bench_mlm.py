"""MLM masking throughput: plm's vectorised numpy masking vs transformers' DataCollatorForLanguageModeling.

Same batches for both: 256 sequences x 128 ids ([CLS] ... [SEP], real token ids from a tokenizer
trained on the Lee corpus). The collator is called as users call it, on a list of examples;
plm's `mask_tokens` gets the padded id matrix its loader holds. Reports tokens/s and the ratio.

Run: make bench
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from plm.config import TokenizerSpec
from plm.objectives.mlm import mask_tokens
from plm.tokenizer.specials import SpecialIds

transformers = pytest.importorskip("transformers")
pytest.importorskip("gensim")

BATCH, SEQ, ROUNDS = 256, 128, 30


def _tokenizer(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from plm.samples import resolve_sample
    from plm.tokenizer.train import train_tokenizer

    lines = resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()
    lake = tmp_path / "lake.parquet"
    pq.write_table(pa.table({"doc_id": [str(i) for i in range(len(lines))], "sentences": [[s] for s in lines],
                             "split": ["train"] * len(lines)}), lake)  # fmt: skip
    tok = train_tokenizer(TokenizerSpec(vocab_size=8000), [lake], tmp_path / "tokenizer.json")
    return (tok[0] if isinstance(tok, tuple) else tok), lines


def test_mlm_masking_vs_hf_collator(tmp_path):
    from plm.tokenizer.train import load_tokenizer

    tok, lines = _tokenizer(tmp_path)
    ids = [e.ids[:SEQ] for e in tok.encode_batch(lines)]
    ids = [row[:-1] + [row[-1]] for row in ids if len(row) == SEQ] or ids
    rng = np.random.default_rng(0)
    rows = [ids[i % len(ids)] for i in rng.permutation(BATCH * 4)[:BATCH]]
    rows = [(r + [0] * SEQ)[:SEQ] for r in rows]
    batch = np.asarray(rows, dtype=np.int32)
    specials = SpecialIds.from_tokenizer(load_tokenizer(tmp_path / "tokenizer.json"))
    special = np.isin(batch, list(specials.all))
    n_tokens = BATCH * SEQ

    def plm_mask(mode):
        mask_tokens(batch, special, rng, vocab_size=tok.get_vocab_size(), n_special=specials.n_leading,
                    mask_id=specials.mask, probability=0.15, max_predictions=SEQ, mask_fraction=0.8,
                    random_fraction=0.1, mode=mode)  # fmt: skip

    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "tokenizer.json"),
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    collator = transformers.DataCollatorForLanguageModeling(hf_tok, mlm_probability=0.15, return_tensors="pt")
    examples = [{"input_ids": r} for r in rows]

    def timed(fn):
        fn()
        start = time.perf_counter()
        for _ in range(ROUNDS):
            fn()
        return ROUNDS * n_tokens / (time.perf_counter() - start)

    hf = timed(lambda: collator(examples))
    result = {"hf_collator_tokens_per_s": round(hf)}
    for mode in ("bernoulli", "exact"):
        ours = timed(lambda mode=mode: plm_mask(mode))
        result[f"plm_{mode}_tokens_per_s"] = round(ours)
        result[f"{mode}_speedup"] = round(ours / hf, 1)
    print("\nBENCH mlm_masking", json.dumps(result))
    assert result["bernoulli_speedup"] > 1
