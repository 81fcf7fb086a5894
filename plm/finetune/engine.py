"""Fine-tune a BERT sequence classifier, from a pretrained model dir or from scratch, and serve it.

The pretrained and the from-scratch run use the same seed, so the classifier head, the data order and
the dropout masks are identical and the comparison isolates the pretrained encoder weights.
Optimizer, schedule, device choice and model-dir writing are shared with pretraining (`plm.train`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
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
    """test_* metrics of the task (accuracy/macro_f1, pearson/spearman/mse, exact_match/f1), train_loss, epochs."""
    model_dir: Path
    """out_dir / "model": model.safetensors + config.json (BertConfig fields + num_labels, id2label, max_seq_len)."""


def _clip(ids: Sequence[int], seq_len: int) -> list[int]:
    """Cut to `seq_len` keeping the final [SEP]."""
    ids = list(ids)
    return ids if len(ids) <= seq_len else ids[: seq_len - 1] + ids[-1:]


def pearson_spearman(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[float, float]:
    """Pearson and Spearman (Pearson of average ranks) correlations; NaN when either side is constant."""
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if len(t) < 2 or t.std() == 0 or p.std() == 0:
        return math.nan, math.nan

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
        r = np.empty(len(x))
        r[order] = np.repeat(first + (counts - 1) / 2, counts)  # ties share their average rank
        return r

    return float(np.corrcoef(t, p)[0, 1]), float(np.corrcoef(ranks(t), ranks(p))[0, 1])


def collate(
    ids: Sequence[Sequence[int]],
    labels: Sequence[int] | Sequence[float] | None = None,
    type_ids: Sequence[Sequence[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Pad to the longest: input_ids, token_type_ids (0s, or the given segments), attention_mask[, labels].

    Float labels (regression) stay float; class ids become long.
    """
    T = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), T), PAD_ID, dtype=torch.long)
    token_type_ids = torch.zeros((len(ids), T), dtype=torch.long)
    attention_mask = torch.zeros((len(ids), T), dtype=torch.long)
    for b, x in enumerate(ids):
        input_ids[b, : len(x)] = torch.tensor(x, dtype=torch.long)
        attention_mask[b, : len(x)] = 1
        if type_ids is not None:
            token_type_ids[b, : len(x)] = torch.tensor(type_ids[b], dtype=torch.long)
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    if labels is not None:
        is_float = any(isinstance(v, float) for v in labels)
        batch["labels"] = torch.tensor(list(labels), dtype=torch.float if is_float else torch.long)
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


def load_head_if_same_labels(model: torch.nn.Module, model_dir: Path, id2label: dict[int, str],
                             prefixes: tuple[str, ...] = ("classifier.",)) -> bool:  # fmt: skip
    """Copy the task head (`prefixes`) of a fine-tuned model dir when its labels equal `id2label`
    (task-to-task transfer keeps a head that answers the same question); True when copied."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG).read_text())
    theirs = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    if "num_labels" not in config or theirs != id2label or int(config["num_labels"]) != max(1, len(id2label)):
        return False
    weights = load_file(str(model_dir / WEIGHTS))
    head = {k: v for k, v in weights.items() if k.startswith(prefixes)}
    if not head:
        return False
    model.load_state_dict(head, strict=False)
    return True


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
def _logits(
    model: BertForSequenceClassification,
    ids: Sequence[Sequence[int]],
    batch_size: int,
    device: torch.device,
    type_ids: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Logits (N, num_labels) as float32 on CPU, in input order."""
    was_training = model.training
    model.eval()
    out = []
    for idx in _batches(len(ids), batch_size):
        types = None if type_ids is None else [type_ids[i] for i in idx]
        batch = {k: v.to(device) for k, v in collate([ids[i] for i in idx], type_ids=types).items()}
        with autocast(device):
            out.append(model(**batch)["logits"].float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.num_labels)


def _predict(
    model: BertForSequenceClassification, ids: Sequence[Sequence[int]], batch_size: int, device: torch.device,
    type_ids: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:  # fmt: skip
    """Class probabilities (N, num_labels) on CPU, in input order."""
    return _logits(model, ids, batch_size, device, type_ids).softmax(-1)


def train_loop(
    model: torch.nn.Module,
    ft: FinetuneSpec,
    optimizer: torch.optim.Optimizer,
    n_train: int,
    make_batch: Callable[[list[int]], dict[str, torch.Tensor]],
    evaluate: Callable[[], dict[str, float]],
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    on_epoch: Callable[[int], None] = lambda epoch: None,
) -> tuple[dict[str, float], float]:
    """`ft.epochs` seeded passes (warmup + linear decay, clipping, NaN guard); `evaluate()` after each epoch.

    Shared by every head. Returns the last evaluation and the mean training loss of the last epoch;
    logs `train_loss`/`lr` per step and the evaluation per epoch (step = epoch).
    """
    device = next(model.parameters()).device
    steps_per_epoch = math.ceil(n_train / ft.batch_size)
    total = ft.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, min(int(WARMUP_FRACTION * total), total - 1), total)
    step, epoch_losses, scores = 0, [], {}
    for epoch in range(1, ft.epochs + 1):
        model.train()
        on_epoch(epoch)
        order = np.random.default_rng([ft.seed, epoch]).permutation(n_train)
        epoch_losses = []
        for idx in _batches(n_train, ft.batch_size, order):
            batch = {k: v.to(device) for k, v in make_batch(idx.tolist()).items()}
            with autocast(device):
                loss = model(**batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
            loss_f = float(loss.detach())
            if not math.isfinite(loss_f):
                raise FloatingPointError(f"non-finite fine-tuning loss ({loss_f}) at step {step + 1}")
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_losses.append(loss_f)
            tracker.log_metrics({"train_loss": loss_f, "lr": optimizer.param_groups[0]["lr"]}, step=step)
            progress("finetune", step, total)
        if ft.eval_each_epoch or epoch == ft.epochs:
            scores = evaluate()
            tracker.log_metrics(scores, step=epoch)
    return scores, float(np.mean(epoch_losses))


def sequence_metrics(
    logits: torch.Tensor, labels: Sequence[int] | Sequence[float], regression: bool
) -> dict[str, float]:
    """test_accuracy/test_macro_f1 (classes) or test_pearson/test_spearman/test_mse (regression)."""
    if regression:
        pred = logits.squeeze(-1).tolist()
        pearson, spearman = pearson_spearman(labels, pred)
        mse = float(np.mean((np.asarray(pred) - np.asarray(labels, dtype=np.float64)) ** 2)) if len(pred) else math.nan
        return {"test_pearson": pearson, "test_spearman": spearman, "test_mse": mse}
    acc, f1 = accuracy_and_macro_f1(labels, logits.argmax(-1).tolist())
    return {"test_accuracy": acc, "test_macro_f1": f1}


def finetune_classifier(
    cfg: BertConfig,
    ft: FinetuneSpec,
    train_ids: list[list[int]],
    train_labels: list[int] | list[float],
    test_ids: list[list[int]],
    test_labels: list[int] | list[float],
    id2label: dict[int, str],
    out_dir: Path,
    init_from: Path | None,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    strategy: Strategy | None = None,
    train_types: list[list[int]] | None = None,
    test_types: list[list[int]] | None = None,
) -> FinetuneResult:
    """Train a sequence (pair) classifier or regressor; `init_from` = a pretrained model dir, or None for scratch.

    Inputs are `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` id lists with their segment ids (`*_types`,
    default all 0). An empty `id2label` makes a regressor (one output, MSE, float labels).
    `strategy` (default: `ft.strategy` from pretrained weights, `full` from scratch) picks what trains
    and at which learning rates (plm.finetune.strategies).

    Logs `train_loss` (and `lr`) every step and the test metrics every epoch (step = epoch).
    """
    if len(train_ids) != len(train_labels) or len(test_ids) != len(test_labels):
        raise ValueError("ids and labels differ in length")
    if not train_ids:
        raise ValueError("no training examples")
    regression = not id2label
    num_labels = 1 if regression else len(id2label)
    if not regression and sorted(id2label) != list(range(num_labels)):
        raise ValueError(f"id2label keys must be 0..{num_labels - 1}, got {sorted(id2label)}")
    if regression:
        train_labels = [float(v) for v in train_labels]
        test_labels = [float(v) for v in test_labels]
    out_dir = Path(out_dir)
    device = resolve_device("auto")
    train_types = train_types or [[0] * len(x) for x in train_ids]
    test_types = test_types or [[0] * len(x) for x in test_ids]
    train_ids, train_types = [_clip(x, ft.seq_len) for x in train_ids], [_clip(x, ft.seq_len) for x in train_types]
    test_ids, test_types = [_clip(x, ft.seq_len) for x in test_ids], [_clip(x, ft.seq_len) for x in test_types]

    torch.manual_seed(ft.seed)  # same head init, dropout masks and data order for pretrained and scratch
    model = BertForSequenceClassification(cfg, num_labels)
    head = "new"
    if init_from is not None:
        load_encoder(model, init_from)
        head = "kept" if load_head_if_same_labels(model, init_from, id2label) else "new"
    model.to(device).train()
    strategy = resolve_strategy(strategy or ft.strategy, init_from is not None)
    optimizer = build_strategy_optimizer(model, strategy, ft.lr, WEIGHT_DECAY, ft.layer_decay, cfg.num_layers)
    total = ft.epochs * math.ceil(len(train_ids) / ft.batch_size)
    tracker.log_params({"init": "pretrained" if init_from else "scratch", "strategy": strategy,
                        "num_labels": num_labels, "steps": total, "head": head})  # fmt: skip

    def make_batch(idx: list[int]) -> dict[str, torch.Tensor]:
        return collate([train_ids[i] for i in idx], [train_labels[i] for i in idx], [train_types[i] for i in idx])

    def evaluate() -> dict[str, float]:
        logits = _logits(model, test_ids, ft.batch_size * 4, device, test_types)
        return sequence_metrics(logits, test_labels, regression)

    scores, train_loss = train_loop(
        model, ft, optimizer, len(train_ids), make_batch, evaluate, tracker, progress,
        on_epoch=lambda epoch: strategy_epoch(model, strategy, ft, epoch, cfg.num_layers),
    )  # fmt: skip
    metrics = {**scores, "train_loss": train_loss, "epochs": float(ft.epochs)}
    config = cfg.to_dict() | {
        "regression": regression,
        "num_labels": num_labels,
        "id2label": {str(k): v for k, v in sorted(id2label.items())},
        "max_seq_len": ft.seq_len,
    }
    model_dir = save_model_dir(model, config, out_dir / "model")
    return FinetuneResult(metrics=metrics, model_dir=model_dir)


def resolve_strategy(strategy: Strategy, pretrained: bool) -> Strategy:
    """The strategy a run uses: from scratch everything trains (`full`); `scratch` means exactly that."""
    if not pretrained or strategy == "scratch":
        return "full"
    if strategy == "embeddings":
        raise ValueError("finetune.strategy=embeddings needs word2vec vectors (model.arch word2vec), not a BERT encoder")
    return strategy


def strategy_epoch(model: torch.nn.Module, strategy: Strategy, ft: FinetuneSpec, epoch: int, num_layers: int) -> None:
    """Per-epoch strategy state: gradual unfreezing, and a frozen encoder kept in eval mode (no dropout)."""
    if strategy == "discriminative" and ft.gradual_unfreeze:
        unfreeze_for_epoch(model, epoch, num_layers)
    if strategy == "frozen":
        model.bert.eval()  # type: ignore[union-attr]


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

    def predict_ids(
        self, ids: list[list[int]], batch_size: int = 64, type_ids: list[list[int]] | None = None
    ) -> tuple[list[str], list[list[float]]]:
        """Labels and class probabilities (ordered by label id) for `[CLS] ... [SEP]` id lists (+ segment ids)."""
        if not ids:
            return [], []
        probs = self.logits(ids, batch_size, type_ids).softmax(-1)
        return [self.id2label[i] for i in probs.argmax(-1).tolist()], probs.tolist()

    def predict_values(
        self, ids: list[list[int]], batch_size: int = 64, type_ids: list[list[int]] | None = None
    ) -> list[float]:
        """Regression outputs (a model with one output)."""
        return self.logits(ids, batch_size, type_ids).squeeze(-1).tolist() if ids else []

    def logits(self, ids: list[list[int]], batch_size: int, type_ids: list[list[int]] | None) -> torch.Tensor:
        clipped = [_clip(x, self.max_seq_len) for x in ids]
        types = None if type_ids is None else [_clip(x, self.max_seq_len) for x in type_ids]
        return _logits(self.model, clipped, batch_size, self.device, types)
