"""Fine-tune a BERT sequence classifier, from a pretrained model dir or from scratch, and serve it.

The pretrained and the from-scratch run use the same seed, so the classifier head, the data order and
the dropout masks are identical and the comparison isolates the pretrained encoder weights.
Optimizer, schedule, device choice and model-dir writing are shared with pretraining (`plm.train`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


import numpy as np
import torch
from safetensors.torch import load_file

from plm.config import FinetuneSpec
from plm.finetune.heads import BertForSequenceClassification
from plm.finetune.strategies import Strategy, build_strategy_optimizer, unfreeze_for_epoch
from plm.models.bert import BertConfig
from plm.tracker import NullTracker, Progress, Tracker, no_progress
from plm.train.engine import CONFIG, WEIGHTS, autocast, resolve_device, save_model_dir
from plm.train.schedule import build_scheduler

PAD_ID = 0
WEIGHT_DECAY = 0.01
WARMUP_FRACTION = 0.1
# Architecture fields that must agree between a pretrained encoder and the classifier built on it.
_ARCH_KEYS = (
    "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position", "type_vocab_size"
)


@dataclass
class FinetuneResult:
    metrics: dict[str, float]
    """test_accuracy, test_macro_f1, train_loss (mean over the last epoch), epochs."""
    model_dir: Path
    """out_dir / "model": model.safetensors + config.json (BertConfig fields + num_labels, id2label, max_seq_len)."""


def _clip(ids: Sequence[int], seq_len: int) -> list[int]:
    """Cut to `seq_len` keeping the final [SEP]."""
    ids = list(ids)
    return ids if len(ids) <= seq_len else ids[: seq_len - 1] + ids[-1:]


def collate(ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Pad single-segment sequences to the longest: input_ids, token_type_ids (all 0), attention_mask[, labels]."""
    T = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), T), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), T), dtype=torch.long)
    for b, x in enumerate(ids):
        input_ids[b, : len(x)] = torch.tensor(x, dtype=torch.long)
        attention_mask[b, : len(x)] = 1
    batch = {"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids), "attention_mask": attention_mask}
    if labels is not None:
        batch["labels"] = torch.tensor(list(labels), dtype=torch.long)
    return batch


def _batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def load_encoder(model: BertForSequenceClassification, model_dir: Path) -> None:
    """Copy the `bert.*` weights (embeddings, encoder, pooler) of a pretrained model dir into `model.bert`."""
    model_dir = Path(model_dir)
    pretrained = json.loads((model_dir / CONFIG).read_text())
    ours = model.config.to_dict()
    diff = [f"{k}: {pretrained.get(k)} != {ours[k]}" for k in _ARCH_KEYS if pretrained.get(k) != ours[k]]
    if diff:
        raise ValueError(f"{model_dir} does not match the classifier's BertConfig ({'; '.join(diff)})")
    weights = load_file(str(model_dir / WEIGHTS))
    encoder = {k.removeprefix("bert."): v for k, v in weights.items() if k.startswith("bert.")}
    model.bert.load_state_dict(encoder, strict=True)


def accuracy_and_macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[float, float]:
    """Accuracy and the unweighted mean of per-class F1 over the classes seen in y_true or y_pred."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if not len(t):
        return math.nan, math.nan
    f1s = []
    for c in np.union1d(t, p):
        tp = np.sum((p == c) & (t == c))
        denom = np.sum(p == c) + np.sum(t == c)
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(t == p)), float(np.mean(f1s))


@torch.no_grad()
def _predict(
    model: BertForSequenceClassification, ids: Sequence[Sequence[int]], batch_size: int, device: torch.device
) -> torch.Tensor:
    """Class probabilities (N, num_labels) on CPU, in input order."""
    was_training = model.training
    model.eval()
    probs = []
    for idx in _batches(len(ids), batch_size):
        batch = {k: v.to(device) for k, v in collate([ids[i] for i in idx]).items()}
        with autocast(device):
            logits = model(**batch)["logits"]
        probs.append(logits.float().softmax(-1).cpu())
    model.train(was_training)
    return torch.cat(probs) if probs else torch.zeros(0, model.num_labels)


def finetune_classifier(
    cfg: BertConfig,
    ft: FinetuneSpec,
    train_ids: list[list[int]],
    train_labels: list[int],
    test_ids: list[list[int]],
    test_labels: list[int],
    id2label: dict[int, str],
    out_dir: Path,
    init_from: Path | None,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    strategy: Strategy | None = None,
) -> FinetuneResult:
    """Train a classifier on `[CLS] ... [SEP]` id lists; `init_from` = a pretrained model dir, or None for scratch.

    `strategy` (default: `ft.strategy` from pretrained weights, `full` from scratch) picks what trains
    and at which learning rates (plm.finetune.strategies).

    Logs `train_loss` (and `lr`) every step and `test_accuracy`/`test_macro_f1` every epoch (step = epoch).
    """
    if len(train_ids) != len(train_labels) or len(test_ids) != len(test_labels):
        raise ValueError("ids and labels differ in length")
    if not train_ids:
        raise ValueError("no training examples")
    num_labels = len(id2label)
    if sorted(id2label) != list(range(num_labels)):
        raise ValueError(f"id2label keys must be 0..{num_labels - 1}, got {sorted(id2label)}")
    out_dir = Path(out_dir)
    device = resolve_device("auto")
    train_ids = [_clip(x, ft.seq_len) for x in train_ids]
    test_ids = [_clip(x, ft.seq_len) for x in test_ids]

    torch.manual_seed(ft.seed)  # same head init, dropout masks and data order for pretrained and scratch
    model = BertForSequenceClassification(cfg, num_labels)
    if init_from is not None:
        load_encoder(model, init_from)
    model.to(device).train()
    strategy = strategy or (ft.strategy if init_from is not None else "full")
    steps_per_epoch = math.ceil(len(train_ids) / ft.batch_size)
    total = ft.epochs * steps_per_epoch
    optimizer = build_strategy_optimizer(model, strategy, ft.lr, WEIGHT_DECAY, ft.layer_decay, cfg.num_layers)
    scheduler = build_scheduler(optimizer, min(int(WARMUP_FRACTION * total), total - 1), total)
    tracker.log_params({"init": "pretrained" if init_from else "scratch", "strategy": strategy,
                        "num_labels": num_labels, "steps": total})  # fmt: skip
    gradual = strategy == "discriminative" and ft.gradual_unfreeze

    step, epoch_losses = 0, []
    for epoch in range(1, ft.epochs + 1):
        if gradual:
            unfreeze_for_epoch(model, epoch, cfg.num_layers)
        if strategy == "frozen":  # a fixed feature extractor: no dropout inside it
            model.bert.eval()
        order = np.random.default_rng([ft.seed, epoch]).permutation(len(train_ids))
        epoch_losses = []
        for idx in _batches(len(train_ids), ft.batch_size, order):
            batch = collate([train_ids[i] for i in idx], [train_labels[i] for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device):
                loss = model(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            loss_f = float(loss.detach())
            if not math.isfinite(loss_f):
                raise FloatingPointError(f"non-finite fine-tuning loss ({loss_f}) at step {step + 1}")
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_losses.append(loss_f)
            tracker.log_metrics({"train_loss": loss_f, "lr": optimizer.param_groups[0]["lr"]}, step=step)
            progress("finetune", step, total)
        probs = _predict(model, test_ids, ft.batch_size * 4, device)
        acc, f1 = accuracy_and_macro_f1(test_labels, probs.argmax(-1).tolist())
        tracker.log_metrics({"test_accuracy": acc, "test_macro_f1": f1}, step=epoch)

    metrics = {
        "test_accuracy": acc,
        "test_macro_f1": f1,
        "train_loss": float(np.mean(epoch_losses)),
        "epochs": float(ft.epochs),
    }
    config = cfg.to_dict() | {
        "num_labels": num_labels,
        "id2label": {str(k): v for k, v in sorted(id2label.items())},
        "max_seq_len": ft.seq_len,
    }
    model_dir = save_model_dir(model, config, out_dir / "model")
    return FinetuneResult(metrics=metrics, model_dir=model_dir)


class TextClassifier:
    """Inference over token ids with a fine-tuned model dir (used by the MLflow pyfunc and `plm predict`)."""

    def __init__(self, model: BertForSequenceClassification, id2label: dict[int, str], max_seq_len: int) -> None:
        self.model = model.eval()
        self.id2label = id2label
        self.max_seq_len = max_seq_len
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> TextClassifier:
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG).read_text())
        id2label = {int(k): v for k, v in config["id2label"].items()}
        model = BertForSequenceClassification(BertConfig.from_dict(config), num_labels=int(config["num_labels"]))
        model.load_state_dict(load_file(str(model_dir / WEIGHTS)), strict=True)
        max_seq_len = int(config.get("max_seq_len", model.config.max_position))
        return cls(model.to(device), id2label, max_seq_len)

    def predict_ids(self, ids: list[list[int]], batch_size: int = 64) -> tuple[list[str], list[list[float]]]:
        """Labels and class probabilities (ordered by label id) for `[CLS] ... [SEP]` id lists."""
        if not ids:
            return [], []
        clipped = [_clip(x, self.max_seq_len) for x in ids]
        probs = _predict(self.model, clipped, batch_size, self.device)
        return [self.id2label[i] for i in probs.argmax(-1).tolist()], probs.tolist()
