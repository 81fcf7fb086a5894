"""The CUDA training step: no host sync between log lines, and the static MLM path trains like the CPU one.

Skipped without CUDA (marked `gpu`).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from plm.config import TrainSpec
from plm.models.bert import BertConfig, BertForPreTraining
from plm.models.gpt import GPTConfig, GPTLMHeadModel
from plm.train.engine import pretrain
from plm.train.loader import StreamingLoader

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TINY = {"vocab_size": 64, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_position": 64}


class _Counted:
    """A loader that notes, at each batch, how many sync warnings were raised so far."""

    def __init__(self, loader: StreamingLoader, caught: list) -> None:
        self.loader, self.caught, self.at_batch = loader, caught, []

    def __iter__(self):
        return self

    def __next__(self):
        self.at_batch.append(len(self.caught))
        return next(self.loader)

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_no_host_sync_inside_steps(kind, mlm_shards, clm_shards, tmp_path):
    train, _ = mlm_shards if kind == "mlm" else clm_shards
    build = (lambda: BertForPreTraining(BertConfig(**TINY))) if kind == "mlm" else (lambda: GPTLMHeadModel(GPTConfig(**TINY)))
    spec = TrainSpec(steps=6, batch_size=8, lr=1e-3, warmup_steps=1, device="cuda", compile="off", log_every=6,
                     prefetch=0, seed=0)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = _Counted(StreamingLoader(train, 8, kind, seed=0, buffer_rows=64), caught)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            pretrain(build, spec, loader, None, tmp_path, kind=kind, config=TINY)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # at_batch[i]: warnings so far when step i + 1 asks for its batch. Steps 2..5 (after one-time set-up in
    # step 1, before step 6's log line reads the device) raise none.
    assert len(loader.at_batch) == 6
    assert loader.at_batch[5] == loader.at_batch[1], [str(w.message) for w in caught]
