"""Transfer strategies: which parameters train, and at which learning rate.

- `full`: every weight trains at `lr` (Devlin et al. 2019).
- `frozen`: the encoder (embeddings, layers, pooler) is fixed; only the classifier head trains
  (the feature-based approach).
- `discriminative`: layer-wise learning rates, `lr * layer_decay**(depth from the top)`: head at
  `lr`, top layer one factor lower, ... embeddings lowest (Howard & Ruder 2018; Clark et al. 2020);
  with `gradual_unfreeze`, one more layer group (from the top) becomes trainable each epoch.
- `scratch`: `full` from random weights; the baseline.
- `zero_shot`: a GPT decoder classifies by the likelihood of label verbalisers, nothing trains
  (plm.finetune.gpt).

The groups apply to BERT (`bert.*`: embeddings, encoder layers, pooler) and to a GPT decoder
(`transformer.*`: wte/wpe, blocks `h.i`, ln_f) alike; a GPT's task tokens sit with the head.
- `embeddings`: word2vec vectors as the (fixed or tuned) embedding layer of a small classifier
  (plm.finetune.embeddings); it replaces the BERT encoder, so the groups above do not apply.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

import torch
from torch import nn

from plm.train.optim import build_optimizer

Strategy = Literal["full", "frozen", "discriminative", "embeddings", "features", "scratch", "zero_shot"]
ALL_STRATEGIES: tuple[str, ...] = get_args(Strategy)
_LAYER = re.compile(r"^(?:bert\.encoder\.layer|transformer\.h)\.(\d+)\.")
_EMBEDDINGS = ("bert.embeddings.", "transformer.wte.", "transformer.wpe.")
BODY = ("bert.", "transformer.")
"""Parameter prefixes of the pretrained body (encoder or decoder); everything else is the task head."""


def depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder (decoder) layer i, num_layers + 1 for the pooler (ln_f) and the head."""
    if name.startswith(_EMBEDDINGS):
        return 0
    match = _LAYER.match(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def _is_no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name


def build_strategy_optimizer(
    model: nn.Module, strategy: Strategy, lr: float, weight_decay: float, layer_decay: float, num_layers: int
) -> torch.optim.AdamW:
    """AdamW over the parameters the strategy trains (BERT's no-decay rule kept in every group)."""
    if strategy == "frozen":
        for name, p in model.named_parameters():
            p.requires_grad = not name.startswith(BODY)
    if strategy != "discriminative":
        return build_optimizer(model, lr, weight_decay)
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        groups.setdefault((depth(name, num_layers), _is_no_decay(name, p)), []).append(p)
    top = num_layers + 1
    return torch.optim.AdamW(
        [
            {"params": ps, "lr": lr * layer_decay ** (top - d), "weight_decay": 0.0 if no_decay else weight_decay,
             "depth": d}  # fmt: skip
            for (d, no_decay), ps in sorted(groups.items())
        ],
        lr=lr, betas=(0.9, 0.999), eps=1e-6,
    )  # fmt: skip


def unfreeze_for_epoch(model: nn.Module, epoch: int, num_layers: int) -> int:
    """Gradual unfreezing: in epoch e (1-based) the top e layer groups train. Returns the lowest trainable depth."""
    lowest = max(0, num_layers + 1 - (epoch - 1))
    for name, p in model.named_parameters():
        p.requires_grad = depth(name, num_layers) >= lowest
    return lowest
