"""CPU training throughput: plm's BERT and GPT vs `transformers` models of the same config (SDPA attention).

Same batches for both sides: 32 sequences x 128 tokens, vocabulary 8000 (`PLM_BENCH_VOCAB`), the `small` size (hidden 256,
4 layers, 4 heads, FFN 1024), dropout 0.1 (BERT: once with attention-probability dropout 0.1, both
libraries' default, and once with 0, `model.attention_dropout=0`, which lets both use the fused CPU
attention kernel). BERT batches are [CLS] A [SEP] B [SEP] with segment ids, ~15 % predicted positions
(k = round(0.15 n), at most 20, as the examples stage writes them) and NSP labels; GPT batches are packed
ids with labels = ids. One step = forward + backward + AdamW step: plm's optimizer as its engine builds it
(`build_optimizer(..., fused=True)`), torch's fused AdamW for `transformers`; fp32, default threads. The
two sides alternate step by step so that load from other processes hits both alike; tokens/s is from the
median step time.

Prints `BENCH pretrain_cpu_bert`, `pretrain_cpu_bert_attn_dropout_0` and `pretrain_cpu_gpt` lines (unit
tokens/s; plm, peer, ratio; peak_rss_mb of each side: the VmHWM of a child process that builds that side
alone and runs two steps) plus `gemm_share`: the fraction of each side's profiled step spent in matrix
products (aten::mm/addmm/bmm, the same work on both sides). `ratio_bound` = peer step / plm's GEMM time is
the most plm could reach by removing everything else. PLM_BENCH_QUICK=1: 3 timed steps (under two minutes).

Run: make bench   (or: .venv/bin/python -m pytest -q -s -o addopts= tests/benchmarks/bench_pretrain_cpu.py)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import torch

from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.export import hf_config
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.optim import build_optimizer

transformers = pytest.importorskip("transformers")

BATCH, SEQ = 32, 128
VOCAB = int(os.environ.get("PLM_BENCH_VOCAB", "8000"))  # 30522 = BERT's: the vocabulary projection's share grows
QUICK = os.environ.get("PLM_BENCH_QUICK") == "1"
STEPS = int(os.environ.get("PLM_BENCH_STEPS", "3" if QUICK else "8"))
WARMUP = 1
SMALL = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024}
CLS, SEP, N_SPECIAL = 2, 3, 5
GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


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


def _optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "plm":  # what plm.train.engine.pretrain builds
        return build_optimizer(model, 1e-4, 0.01, fused=True)
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)


def _step(model: torch.nn.Module, loss_of: Callable, opt: torch.optim.Optimizer, batch: dict) -> None:
    loss = loss_of(model, batch)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _timed_steps(models: dict[str, tuple[torch.nn.Module, Callable]], batches: list[dict]) -> tuple[dict, dict]:
    """Median seconds per training step of each model (steps interleaved across models), then one profiled
    step each: the fraction of it spent in matrix products."""
    opts = {name: _optimizer(name, m) for name, (m, _) in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(WARMUP + STEPS):
        batch = batches[step % len(batches)]
        for name, (model, loss_of) in models.items():
            start = time.perf_counter()
            _step(model, loss_of, opts[name], batch)
            if step >= WARMUP:
                times[name].append(time.perf_counter() - start)
    gemm: dict[str, dict[str, float]] = {}
    for name, (model, loss_of) in models.items():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            _step(model, loss_of, opts[name], batches[0])
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        in_gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM)
        gemm[name] = {"share": in_gemm / total, "gemm_s": in_gemm / 1e6, "step_s": total / 1e6}
    return {name: statistics.median(t) for name, t in times.items()}, gemm


def _peak_rss_mb(kind: str, side: str, **cfg) -> float:
    """Peak RSS of a child process that builds one side alone and runs two training steps."""
    args = [sys.executable, __file__, kind, side, json.dumps(cfg)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    return float(out.stdout.strip().splitlines()[-1])


def _report(kind: str, seconds: dict[str, float], gemm: dict, rss: dict[str, float]) -> dict:
    tokens = BATCH * SEQ
    result = {"unit": "tokens/s", "plm": round(tokens / seconds["plm"]), "peer": round(tokens / seconds["hf"]),
              "ratio": round(seconds["hf"] / seconds["plm"], 2), "peak_rss_mb": {"plm": round(rss["plm"]), "peer": round(rss["hf"])},
              "gemm_share": {"plm": round(gemm["plm"]["share"], 3), "peer": round(gemm["hf"]["share"], 3)},
              "ratio_bound": round(gemm["hf"]["step_s"] / gemm["plm"]["gemm_s"], 2),
              "threads": torch.get_num_threads(), "steps": STEPS, "batch": BATCH, "seq": SEQ, "vocab": VOCAB}  # fmt: skip
    print(f"\nBENCH pretrain_cpu_{kind}", json.dumps(result))
    return result


def _hf_kwargs(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("architectures", "model_type")} | {"attn_implementation": "sdpa"}


def _bert_loss(model, b):
    if isinstance(model, BertForPreTraining):
        return model(b["input_ids"], b["token_type_ids"], b["attention_mask"], b["labels"], b["nsp_label"])["loss"]
    return model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"],
                 labels=b["labels"], next_sentence_label=b["nsp_label"]).loss  # fmt: skip


def _gpt_loss(model, b):
    if isinstance(model, GPTLMHeadModel):
        return model(b["input_ids"], labels=b["input_ids"])["loss"]
    return model(input_ids=b["input_ids"], labels=b["input_ids"]).loss


def _build(kind: str, side: str, attention_dropout: float | None = None) -> tuple[torch.nn.Module, Callable]:
    """One side's model (seeded) and its loss function: kind bert | gpt, side plm | hf."""
    torch.manual_seed(0)
    if kind == "bert":
        cfg = BertConfig(vocab_size=VOCAB, max_position=SEQ, attention_dropout=attention_dropout, **SMALL)
        if side == "plm":
            return BertForPreTraining(cfg).train(), _bert_loss
        hf = transformers.BertForPreTraining(transformers.BertConfig(**_hf_kwargs(hf_config(cfg))))
        return hf.train(), _bert_loss
    cfg = GPTConfig(vocab_size=VOCAB, max_position=SEQ, **SMALL)
    if side == "plm":
        return GPTLMHeadModel(cfg).train(), _gpt_loss
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**_hf_kwargs(hf_config(cfg)))).train(), _gpt_loss


def _batches(kind: str) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    if kind == "bert":
        return [_bert_batch(gen) for _ in range(4)]
    return [{"input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)} for _ in range(4)]


@pytest.mark.parametrize("attention_dropout", [None, 0.0], ids=["attn_dropout_0.1", "attn_dropout_0"])
def test_bert_small_training_vs_transformers(attention_dropout):
    models = {side: _build("bert", side, attention_dropout) for side in ("plm", "hf")}
    assert models["hf"][0].config._attn_implementation == "sdpa"
    seconds, gemm = _timed_steps(models, _batches("bert"))
    rss = {side: _peak_rss_mb("bert", side, attention_dropout=attention_dropout) for side in ("plm", "hf")}
    result = _report("bert" + ("_attn_dropout_0" if attention_dropout == 0 else ""), seconds, gemm, rss)
    assert result["ratio"] > 1


def test_gpt_small_training_vs_transformers():
    models = {side: _build("gpt", side) for side in ("plm", "hf")}
    assert models["hf"][0].config._attn_implementation == "sdpa"
    seconds, gemm = _timed_steps(models, _batches("gpt"))
    rss = {side: _peak_rss_mb("gpt", side) for side in ("plm", "hf")}
    result = _report("gpt", seconds, gemm, rss)
    assert result["ratio"] > 0.8  # same math on both sides; plm must not be slower


if __name__ == "__main__":  # child of _peak_rss_mb: python bench_pretrain_cpu.py KIND SIDE CONFIG_JSON
    kind, side = sys.argv[1], sys.argv[2]
    model, loss_of = _build(kind, side, **json.loads(sys.argv[3]))
    batches, opt = _batches(kind), _optimizer(side, model)
    for b in batches[:2]:
        _step(model, loss_of, opt, b)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(hwm_kb / 1024)
