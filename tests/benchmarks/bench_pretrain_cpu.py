"""CPU training throughput: plm's BERT and GPT vs `transformers` models of the same config (SDPA attention).

Same batches for both sides: 32 sequences x 128 tokens, vocabulary 8000 (`PLM_BENCH_VOCAB`), the `small` size (hidden 256,
4 layers, 4 heads, FFN 1024), dropout 0.1 (BERT: once with attention-probability dropout 0.1, both
libraries' default, and once with 0, `model.attention_dropout=0`, which lets both use the fused CPU
attention kernel). BERT batches are [CLS] A [SEP] B [SEP] with segment ids, ~15 % predicted positions
(k = round(0.15 n), at most 20, as the examples stage writes them) and NSP labels; GPT batches are packed
ids with labels = ids. One step = forward + backward + AdamW step (the fused
CPU implementation for both), fp32, default threads. The two sides
alternate step by step so that load from other processes hits both alike; tokens/s is from the median
step time. Reports tokens/s and the plm / transformers ratio (target >= 2x for BERT: plm projects only
the predicted positions onto the vocabulary).

Run: make bench   (or: .venv/bin/python -m pytest -q -s -o addopts= tests/benchmarks/bench_pretrain_cpu.py)
"""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest
import torch

from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.export import hf_config
from plm.models.gpt import GPTConfig, GPTLMHeadModel

transformers = pytest.importorskip("transformers")

BATCH, SEQ = 32, 128
VOCAB = int(os.environ.get("PLM_BENCH_VOCAB", "8000"))  # 30522 = BERT's: the vocabulary projection's share grows
STEPS = int(os.environ.get("PLM_BENCH_STEPS", "8"))
WARMUP = 1
SMALL = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024}
CLS, SEP, N_SPECIAL = 2, 3, 5


def _bert_batch(gen: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(N_SPECIAL, VOCAB, (BATCH, SEQ), generator=gen)
    types = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i in range(BATCH):
        a = int(torch.randint(20, SEQ - 20, (1,), generator=gen))
        ids[i, 0], ids[i, a], ids[i, SEQ - 1] = CLS, SEP, SEP
        types[i, a + 1 :] = 1
        candidates = torch.tensor([t for t in range(1, SEQ - 1) if t != a])
        k = min(20, round(0.15 * len(candidates)))
        picked = candidates[torch.randperm(len(candidates), generator=gen)[:k]]
        labels[i, picked] = ids[i, picked]
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids), "labels": labels,
            "nsp_label": torch.randint(0, 2, (BATCH,), generator=gen)}  # fmt: skip


def _timed_steps(models: dict[str, tuple[torch.nn.Module, callable]], batches: list[dict]) -> dict[str, float]:
    """Median seconds per training step of each model, steps interleaved across models."""
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for name, (m, _) in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(WARMUP + STEPS):
        batch = batches[step % len(batches)]
        for name, (model, loss_of) in models.items():
            start = time.perf_counter()
            loss = loss_of(model, batch)
            loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            if step >= WARMUP:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _report(kind: str, seconds: dict[str, float]) -> dict[str, float]:
    tokens = BATCH * SEQ
    result = {f"{name}_tokens_per_s": round(tokens / s) for name, s in seconds.items()}
    result["speedup"] = round(seconds["hf"] / seconds["plm"], 2)
    result.update(threads=torch.get_num_threads(), steps=STEPS, batch=BATCH, seq=SEQ, vocab=VOCAB)
    print(f"\nBENCH pretrain_cpu_{kind}", json.dumps(result))
    return result


def _hf_kwargs(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("architectures", "model_type")} | {"attn_implementation": "sdpa"}


@pytest.mark.parametrize("attention_dropout", [None, 0.0], ids=["attn_dropout_0.1", "attn_dropout_0"])
def test_bert_small_training_vs_transformers(attention_dropout):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, max_position=SEQ, attention_dropout=attention_dropout, **SMALL)
    plm = BertForPreTraining(cfg).train()
    hf = transformers.BertForPreTraining(transformers.BertConfig(**_hf_kwargs(hf_config(cfg)))).train()
    gen = torch.Generator().manual_seed(1)
    batches = [_bert_batch(gen) for _ in range(4)]

    def plm_loss(model, b):
        return model(b["input_ids"], b["token_type_ids"], b["attention_mask"], b["labels"], b["nsp_label"])["loss"]

    def hf_loss(model, b):
        return model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"],
                     labels=b["labels"], next_sentence_label=b["nsp_label"]).loss  # fmt: skip

    assert hf.config._attn_implementation == "sdpa"
    name = "bert_small" + ("_attn_dropout_0" if attention_dropout == 0 else "")
    result = _report(name, _timed_steps({"plm": (plm, plm_loss), "hf": (hf, hf_loss)}, batches))
    assert result["speedup"] > 1


def test_gpt_small_training_vs_transformers():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, max_position=SEQ, **SMALL)
    plm = GPTLMHeadModel(cfg).train()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**_hf_kwargs(hf_config(cfg)))).train()
    gen = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)} for _ in range(4)]

    def plm_loss(model, b):
        return model(b["input_ids"], labels=b["input_ids"])["loss"]

    def hf_loss(model, b):
        return model(input_ids=b["input_ids"], labels=b["input_ids"]).loss

    assert hf.config._attn_implementation == "sdpa"
    result = _report("gpt_small", _timed_steps({"plm": (plm, plm_loss), "hf": (hf, hf_loss)}, batches))
    assert result["speedup"] > 0.8  # same math on both sides; plm must not be slower
