"""GPU training throughput and MFU: plm's engine on GPT-2 124M and BERT-base vs `transformers`, same run.

plm side: the real `plm.train.engine.pretrain` (bf16 autocast, `torch.compile`, fused AdamW, flash SDPA,
no host sync inside a step, gradient clipping, linear schedule, prefetching loader) on synthetic batches;
tokens/s and MFU are the ones the engine itself logs per `log_every` window (the first window holds the
compilation and is dropped; the median of the others is reported). Peer: `GPT2LMHeadModel` /
`BertForPreTraining` with `attn_implementation="sdpa"` in the same process, trained by a plain loop with
the same treatment: bf16 autocast, `torch.compile`, fused AdamW, TF32, gradient clipping, no host sync
inside a step (timed with CUDA synchronisation at the window edges).

Shapes: GPT-2 124M (vocab 50257, 12 x 768, 12 heads), 32 x 1024 tokens a step, dropout 0 (as llm.c and
nanoGPT pretrain it); BERT-base (vocab 30522, 12 x 768), 64 x 512, BERT's dropout 0.1, [CLS] A [SEP] B
[SEP] with 76 predicted positions a row (round(0.15 x 510)) and NSP labels. MFU = (training FLOPs per
token, PaLM's 6N + 12LCT, `flops_per_token`: for BERT the MLM head counted on every token, the usual
convention, although plm computes it at the predicted positions only) x tokens/s / the device's dense
bf16 peak (`plm.train.engine.peak_flops`: H100/H200 SXM 989 TFLOP/s). Both sides use the same FLOPs per
token, so the MFU ratio is the tokens/s ratio.

Prints `BENCH mfu_gpt2_124m {json}` and `BENCH mfu_bert_base {json}` (unit mfu; plm, peer, ratio,
tokens_per_s of both, peak GPU memory of both, peak_rss_mb of the process). Skipped without CUDA. About
6 minutes on an H100/H200 (four compilations); PLM_BENCH_QUICK=1: fewer steps (about 4 minutes).
PLM_BENCH_GPU_SMOKE=1 without CUDA: the same code on CPU at a toy size without compilation (checks the
script, measures nothing meaningful).

Run: .venv/bin/python -m pytest -q -s -o addopts= tests/benchmarks/bench_pretrain_gpu.py
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from plm.config import TrainSpec
from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.export import hf_config
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.tracker import NullTracker
from plm.train.engine import peak_flops, pretrain

transformers = pytest.importorskip("transformers")

CUDA = torch.cuda.is_available()
SMOKE = not CUDA and os.environ.get("PLM_BENCH_GPU_SMOKE") == "1"
QUICK = os.environ.get("PLM_BENCH_QUICK") == "1"
pytestmark = pytest.mark.skipif(not (CUDA or SMOKE), reason="needs CUDA (PLM_BENCH_GPU_SMOKE=1: a toy run on CPU)")

WINDOW = 2 if SMOKE else (5 if QUICK else 10)  # steps per timed window (= the engine's log_every)
WINDOWS = 3  # the first holds the compilation and is dropped
BASE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072}
TOY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
CLS, SEP, N_SPECIAL = 2, 3, 5


def _device() -> torch.device:
    return torch.device("cuda" if CUDA else "cpu")


class _Batches:
    """A few pre-made host batches, cycled: the loader protocol the engine expects (next + state)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches, self.i = batches, 0

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        self.i += 1
        return self.batches[(self.i - 1) % len(self.batches)]

    def state_dict(self) -> dict[str, int]:
        return {"i": self.i}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.i = state["i"]


def _gpt_batches(vocab: int, batch: int, seq: int, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    out = []
    for _ in range(4):
        ids = torch.randint(0, vocab, (batch, seq), generator=gen)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def _bert_batches(vocab: int, batch: int, seq: int, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    out = []
    k = round(0.15 * (seq - 2))
    for _ in range(4):
        ids = torch.randint(N_SPECIAL, vocab, (batch, seq), generator=gen)
        types = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i in range(batch):
            a = int(torch.randint(seq // 4, 3 * seq // 4, (1,), generator=gen))
            ids[i, 0], ids[i, a], ids[i, seq - 1] = CLS, SEP, SEP
            types[i, a + 1 :] = 1
            candidates = torch.tensor([t for t in range(1, seq - 1) if t != a])
            picked = candidates[torch.randperm(len(candidates), generator=gen)[:k]]
            labels[i, picked] = ids[i, picked]
        out.append({"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids),
                    "labels": labels, "nsp_label": torch.randint(0, 2, (batch,), generator=gen)})  # fmt: skip
    return out


def _hf_model(cfg: GPTConfig | BertConfig) -> torch.nn.Module:
    kwargs = {k: v for k, v in hf_config(cfg).items() if k not in ("architectures", "model_type")}
    kwargs |= {"attn_implementation": "sdpa"}
    if isinstance(cfg, GPTConfig):
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs))
    return transformers.BertForPreTraining(transformers.BertConfig(**kwargs))


def _peer_tokens_per_s(cfg: GPTConfig | BertConfig, batches: list[dict[str, torch.Tensor]], compile_: bool) -> tuple[float, float]:
    """transformers' model in a plain loop with plm's treatment; median tokens/s of the timed windows, peak GiB."""
    device = _device()
    torch.manual_seed(0)
    model = _hf_model(cfg).to(device).train()
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, fused=CUDA or None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if CUDA else torch.autocast("cpu", enabled=False)
    gpt = isinstance(cfg, GPTConfig)
    dev = [{k: v.to(device) for k, v in b.items()} for b in batches]
    if not gpt:  # what HF's data collator gives: next_sentence_label, and no mask when nothing is padding
        dev = [{"input_ids": b["input_ids"], "token_type_ids": b["token_type_ids"], "labels": b["labels"],
                "next_sentence_label": b["nsp_label"]} for b in dev]  # fmt: skip
    tokens = batches[0]["input_ids"].numel()
    rates = []
    for w in range(WINDOWS):
        _sync()
        t0 = time.perf_counter()
        for s in range(WINDOW):
            with amp:
                loss = step_model(**dev[(w * WINDOW + s) % len(dev)]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync()
        if w:
            rates.append(WINDOW * tokens / (time.perf_counter() - t0))
    return statistics.median(rates), _peak_gib()


def _plm_tokens_per_s(build: Callable[[], torch.nn.Module], cfg: Any, kind: str,
                      batches: list[dict[str, torch.Tensor]], tmp_path) -> tuple[float, float | None, float]:  # fmt: skip
    """The engine's own logged tokens/s and MFU (median over the windows after the first), peak GiB."""
    spec = TrainSpec(steps=WINDOW * WINDOWS, batch_size=batches[0]["input_ids"].shape[0], lr=1e-4, warmup_steps=2,
                     device="cuda" if CUDA else "cpu", compile="on" if CUDA else "off", log_every=WINDOW,
                     prefetch=2, seed=0)  # fmt: skip
    tracker = NullTracker()
    pretrain(build, spec, _Batches(batches), None, tmp_path, kind=kind, config=cfg.to_dict(), tracker=tracker)
    rates = [v for _, v in tracker.history["tokens_per_s"]][1:WINDOWS]
    mfus = [v for _, v in tracker.history.get("mfu", [])][1:WINDOWS]
    return statistics.median(rates), (statistics.median(mfus) if mfus else None), _peak_gib()


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _peak_gib() -> float:
    if not CUDA:
        return 0.0
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.empty_cache()
    return round(peak, 1)


def _report(name: str, flops_per_token: float, plm: tuple, peer: tuple) -> dict[str, Any]:
    (plm_tps, plm_logged_mfu, plm_gib), (peer_tps, peer_gib) = plm, peer
    peak = peak_flops(_device())
    mfu = (lambda tps: round(flops_per_token * tps / peak, 4)) if peak else (lambda tps: None)
    result = {
        "unit": "mfu" if peak else "tokens/s",
        "plm": mfu(plm_tps) if peak else round(plm_tps),
        "peer": mfu(peer_tps) if peak else round(peer_tps),
        "ratio": round(plm_tps / peer_tps, 3),
        "tokens_per_s": {"plm": round(plm_tps), "peer": round(peer_tps)},
        "plm_mfu_logged": plm_logged_mfu,
        "peak_gpu_gib": {"plm": plm_gib, "peer": peer_gib},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "device": torch.cuda.get_device_name() if CUDA else "cpu (smoke)",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "steps_timed": WINDOW * (WINDOWS - 1),
    }  # fmt: skip
    print(f"\nBENCH {name} {json.dumps(result)}", flush=True)
    return result


def _setup() -> None:
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def test_gpt2_124m_mfu_vs_transformers(tmp_path):
    _setup()
    size, (B, T) = (TOY, (4, 64)) if SMOKE else (BASE, (32, 1024))
    cfg = GPTConfig(vocab_size=50257, max_position=T, dropout=0.0, **size)
    batches = _gpt_batches(cfg.vocab_size, B, T, torch.Generator().manual_seed(1))
    plm = _plm_tokens_per_s(lambda: GPTLMHeadModel(cfg), cfg, "clm", batches, tmp_path / "plm")
    peer = _peer_tokens_per_s(cfg, batches, compile_=CUDA)
    flops = GPTLMHeadModel(cfg).flops_per_token(T)
    result = _report("mfu_gpt2_124m", flops, plm, peer)
    assert result["ratio"] > 0


def test_bert_base_mfu_vs_transformers(tmp_path):
    _setup()
    size, (B, T) = (TOY, (4, 64)) if SMOKE else (BASE, (64, 512))
    cfg = BertConfig(vocab_size=30522, max_position=T, **size)
    batches = _bert_batches(cfg.vocab_size, B, T, torch.Generator().manual_seed(1))
    plm = _plm_tokens_per_s(lambda: BertForPreTraining(cfg), cfg, "mlm", batches, tmp_path / "plm")
    peer = _peer_tokens_per_s(cfg, batches, compile_=CUDA)
    flops = BertForPreTraining(cfg).flops_per_token(T)
    result = _report("mfu_bert_base", flops, plm, peer)
    assert result["ratio"] > 0
