"""Transfer for a pretrained GPT decoder: GPT-1 fine-tuning (Radford et al. 2018) and GPT-2 zero-shot (2019).

Fine-tuning (`full`, `frozen`, `discriminative`, `scratch`): the input transformations of GPT-1, section 3.3.
A text becomes `<start> text <extract>`, a pair `<start> A <delim> B <extract>`; the three task tokens are
new, randomly initialised embeddings (`task_tokens`, ids vocab_size + 0/1/2, kept apart from the tokenizer's
vocabulary so the LM head and the pretrained embedding matrix stay as pretrained). The causal decoder reads
the sequence and a linear head reads the final hidden state of `<extract>`, the only position that has seen
the whole input. A pair task with `finetune.pair_orderings: both` (GPT-1's similarity input) gives every
example two views, `A <delim> B` and `B <delim> A`; the decoder reads each and the two `<extract>` states
are summed before the head, so the prediction does not depend on the order of the pair. The language-model loss on the input's own tokens stays on as an auxiliary objective,
`loss = task loss + finetune.lm_aux_weight * LM loss` (GPT-1: 0.5). Right padding is safe without a mask: a
causal position never attends to a later one, and the head reads the last real position.

Feature-based (`features`): the decoder stays fixed and reads `<|endoftext|> text` (no task tokens: the input
looks like a document of its pretraining); a text's feature is the mean of the final hidden states over its
own tokens, and an L2 logistic regression with its strength chosen by cross-validation on the labelled subset
(`plm.finetune.features.fit_logistic`, as the word-vector `features` strategy) is fitted on the standardised
features. A frozen decoder's state at one position varies little from text to text, so a head trained by a
few dozen SGD steps on it (`frozen`, `full` at a few hundred labels) stays at the majority class; the
standardised mean and a fitted regression do not have that problem. The model folder is the decoder with a
linear head (`head: mean`, the scaler folded into its weights), served by the same predictor. Its scratch twin
is the same with a seeded random decoder. Pairs are read as `[u, v, |u - v|, u * v]` of the two texts' means.

Zero-shot (`zero_shot`): no parameter changes. Each text is put into `finetune.zero_shot_template` and
every label's verbaliser (`finetune.verbalizers`, default " <label>") is scored by its summed log-likelihood
as the continuation; the most likely label wins. With `finetune.zero_shot_calibrate` each label's score has
its score after the content-free input "N/A" subtracted (contextual calibration, Zhao et al. 2021), which
removes the decoder's prior preference for one verbaliser.

Shapes: B batch, K views per example (1, or 2 for both orderings), T tokens, C hidden, V vocabulary, L labels.
An encoded example is its list of K views (`encode_views`); a batch holds the B*K views example by example.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from plm.config import FinetuneSpec
from plm.finetune.engine import FinetuneResult, load_head_if_same_labels, sequence_metrics, train_loop
from plm.finetune.strategies import Strategy, build_strategy_optimizer, unfreeze_for_epoch
from plm.models.gpt import GPTConfig, init_weights
from plm.models.gpt import GPTModel
from plm.tracker import NullTracker, Progress, Tracker, no_progress

TASK_TOKENS = ("start", "delim", "extract")
"""GPT-1's task tokens, ids vocab_size + 0, 1, 2 in an input sequence."""
IGNORE_INDEX = -100
WEIGHT_DECAY = 0.01
CONFIG, WEIGHTS = "config.json", "model.safetensors"
ZERO_SHOT_CONTENT_FREE = "N/A"


POOLINGS = ("extract", "mean")
"""What the head reads: the `<extract>` token's final state (GPT-1), or the mean of the final states over
a `<|endoftext|> text` input's text tokens (`features`)."""


class GPTForSequenceClassification(nn.Module):
    """Decoder (+ tied LM head) -> hidden state of the `<extract>` token (or the mean over the text's tokens)
    -> dropout -> linear (1 output = regression)."""

    def __init__(self, cfg: GPTConfig, num_labels: int, lm_aux_weight: float = 0.0, views: int = 1,
                 pooling: str = "extract") -> None:  # fmt: skip
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.config = cfg
        self.num_labels = num_labels
        self.lm_aux_weight = lm_aux_weight
        self.views = views
        self.pooling = pooling
        self.transformer = GPTModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.task_tokens = nn.Embedding(len(TASK_TOKENS), cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)
        pair_features = pooling == "mean" and views == 2
        self.classifier = nn.Linear(cfg.hidden_size * (4 if pair_features else 1), num_labels)
        self.apply(init_weights)
        for name, p in self.named_parameters():  # GPT-2's depth-scaled residual projections, as in pretraining
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))
        self.lm_head.weight = self.transformer.wte.weight

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, task tokens >= vocab_size included -> final hidden states (B, T, C)."""
        V = self.config.vocab_size
        t = self.transformer
        if input_ids.shape[1] > self.config.max_position:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_position {self.config.max_position}")
        task = input_ids >= V  # (B, T)
        x = torch.where(task[..., None], self.task_tokens((input_ids - V).clamp(min=0)),
                        t.wte(input_ids.clamp(max=V - 1)))  # (B, T, C)  # fmt: skip
        x = t.drop(x + t.wpe(torch.arange(input_ids.shape[1], device=input_ids.device)))
        for block in t.h:
            x = block(x)
        return t.ln_f(x)

    def pool(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, C) final states -> (B, C): the last real position (`extract`), or the mean over positions
        1 .. length-1 (`mean`: every token after the leading `<|endoftext|>`; padding and position 0 excluded)."""
        if self.pooling == "extract":
            return h[torch.arange(len(h), device=h.device), lengths - 1]  # each <extract> token's state
        pos = torch.arange(h.shape[1], device=h.device)
        keep = ((pos[None, :] >= 1) & (pos[None, :] < lengths[:, None])).to(h.dtype)  # (B, T)
        return (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        h = self.hidden(input_ids)  # (B*K, T, C)
        last = self.pool(h, lengths)  # (B*K, C)
        if self.pooling == "mean" and self.views == 2:  # a pair's two texts: [u, v, |u - v|, u * v] (features)
            u, v = last.view(-1, 2, last.shape[-1]).unbind(1)
            last = torch.cat([u, v, (u - v).abs(), u * v], -1)  # (B, 4C)
        else:
            last = last.view(-1, self.views, last.shape[-1]).sum(1)  # (B, C): the views summed (GPT-1, similarity)
        logits = self.classifier(self.dropout(last))  # (B, L)
        out = {"logits": logits}
        if labels is None:
            return out
        if self.num_labels == 1:
            task_loss = F.mse_loss(logits.float().squeeze(-1), labels.float())
        else:
            task_loss = F.cross_entropy(logits.float(), labels)
        out["task_loss"] = task_loss
        out["loss"] = task_loss
        if self.lm_aux_weight > 0:
            targets = input_ids[:, 1:].clone()  # (B, T-1): position t predicts token t + 1
            pos = torch.arange(1, input_ids.shape[1], device=h.device)
            targets[(targets >= self.config.vocab_size) | (pos[None, :] >= lengths[:, None])] = IGNORE_INDEX
            lm_logits = self.lm_head(h[:, :-1]).float()  # (B, T-1, V)
            n = (targets != IGNORE_INDEX).sum().clamp(min=1)
            lm = F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), targets.reshape(-1),
                                 ignore_index=IGNORE_INDEX, reduction="sum") / n  # fmt: skip
            out["lm_loss"] = lm
            out["loss"] = task_loss + self.lm_aux_weight * lm
        return out


def _ids(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]


def _task_inputs(a_ids: Sequence[Sequence[int]], b_ids: Sequence[Sequence[int]] | None, seq_len: int,
                 vocab_size: int) -> list[list[int]]:  # fmt: skip
    """`<start> A <extract>` or `<start> A <delim> B <extract>` from token ids, at most `seq_len`; pairs lose
    tokens from the longer side first, a single text from its end."""
    start, delim, extract = (vocab_size + i for i in range(len(TASK_TOKENS)))
    if b_ids is None:
        return [[start, *a[: seq_len - 2], extract] for a in a_ids]
    out = []
    for a, b in zip(a_ids, b_ids):
        a, b = list(a), list(b)
        while len(a) + len(b) > seq_len - 3:
            (a if len(a) >= len(b) else b).pop()
        out.append([start, *a, delim, *b, extract])
    return out


def encode_gpt(
    tok: Any, texts: Sequence[str], pairs: Sequence[str] | None, seq_len: int, vocab_size: int
) -> list[list[int]]:
    """`<start> A <extract>` or `<start> A <delim> B <extract>` ids, at most `seq_len`; pairs lose tokens from
    the longer side first, a single text from its end."""
    return _task_inputs(_ids(tok, texts), None if pairs is None else _ids(tok, pairs), seq_len, vocab_size)


def encode_views(
    tok: Any, texts: Sequence[str], pairs: Sequence[str] | None, seq_len: int, vocab_size: int,
    orderings: str = "one",
) -> list[list[list[int]]]:
    """Each example's views: `[A <delim> B]`, or with `orderings="both"` also `[B <delim> A]` (pairs only);
    each text is tokenised once."""
    a_ids = _ids(tok, texts)
    b_ids = None if pairs is None else _ids(tok, pairs)
    ab = _task_inputs(a_ids, b_ids, seq_len, vocab_size)
    if b_ids is None or orderings == "one":
        return [[x] for x in ab]
    return [list(v) for v in zip(ab, _task_inputs(b_ids, a_ids, seq_len, vocab_size))]


def collate_views(views: Sequence[Sequence[Sequence[int]]], labels: Sequence[int] | Sequence[float] | None = None
                  ) -> dict[str, torch.Tensor]:  # fmt: skip
    """A batch of examples, each a list of K views, as B*K rows example by example (`collate_gpt`)."""
    k = {len(v) for v in views}
    if len(k) != 1:
        raise ValueError(f"every example needs the same number of views, got {sorted(k)}")
    return collate_gpt([x for v in views for x in v], labels)


def collate_gpt(ids: Sequence[Sequence[int]], labels: Sequence[int] | Sequence[float] | None = None,
                pad_id: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
    """Right-padded `input_ids` (B, T) and `lengths` (B,)[, `labels`]."""
    T = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), T), pad_id, dtype=torch.long)
    for b, x in enumerate(ids):
        input_ids[b, : len(x)] = torch.tensor(x, dtype=torch.long)
    batch = {"input_ids": input_ids, "lengths": torch.tensor([len(x) for x in ids], dtype=torch.long)}
    if labels is not None:
        is_float = any(isinstance(v, float) for v in labels)
        batch["labels"] = torch.tensor(list(labels), dtype=torch.float if is_float else torch.long)
    return batch


@torch.no_grad()
def gpt_logits(model: GPTForSequenceClassification, views: Sequence[Sequence[Sequence[int]]], batch_size: int
               ) -> torch.Tensor:  # fmt: skip
    """Head logits (N, L) of N examples (each its list of views) on CPU, float32, in input order."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(views), batch_size):
        batch = {k: v.to(device) for k, v in collate_views(views[s : s + batch_size]).items()}
        out.append(model(**batch)["logits"].float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.num_labels)


def load_decoder(model: GPTForSequenceClassification, model_dir: Path) -> None:
    """Copy a pretrained decoder's `transformer.*` weights (plm's GPT model folder) into `model`."""
    model_dir = Path(model_dir)
    raw = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    if raw.get("arch") != "gpt":
        raise ValueError(f"{model_dir} holds arch {raw.get('arch')!r}, not a GPT decoder")
    ours = model.config.to_dict()
    diff = [f"{k}: {raw.get(k)} != {ours[k]}" for k in ("vocab_size", "hidden_size", "num_layers", "num_heads",
            "intermediate_size", "max_position") if raw.get(k) != ours[k]]  # fmt: skip
    if diff:
        raise ValueError(f"{model_dir} does not match the classifier's GPTConfig ({'; '.join(diff)})")
    weights = load_file(str(model_dir / WEIGHTS))
    body = {k.removeprefix("transformer."): v for k, v in weights.items() if k.startswith("transformer.")}
    model.transformer.load_state_dict(body, strict=True)


def _epoch_hook(model: GPTForSequenceClassification, strategy: str, ft: FinetuneSpec, epoch: int) -> None:
    if strategy == "discriminative" and ft.gradual_unfreeze:
        unfreeze_for_epoch(model, epoch, model.config.num_layers)
    if strategy == "frozen":
        model.transformer.eval()  # a fixed feature extractor: no dropout in it


def finetune_gpt(
    cfg: GPTConfig,
    ft: FinetuneSpec,
    train_ids: list[list[list[int]]],
    train_labels: list[int] | list[float],
    test_ids: list[list[list[int]]],
    test_labels: list[int] | list[float],
    id2label: dict[int, str],
    out_dir: Path | None,
    init_from: Path | None,
    strategy: Strategy,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    bos: int | None = None,
) -> FinetuneResult:
    """Train a GPT-1 classifier (regressor when `id2label` is empty) on encoded examples (`encode_views`: each
    example's list of views, 2 when both orderings of a pair are read; with `ft.head_init` probe, `encode_plain`
    rows whose `<|endoftext|>` is `bos`, and the head first fitted by `set_probe_head`).

    `init_from` = a pretrained decoder folder, None = random weights (`scratch`, always every weight trained).
    Metrics: test_* of the task, train_loss (task + aux), epochs. `out_dir=None` writes no model.
    """
    from plm.train.engine import resolve_device
    from plm.train.export import save_model_dir

    if not train_ids:
        raise ValueError("no training examples")
    regression = not id2label
    num_labels = 1 if regression else len(id2label)
    device = resolve_device("auto")
    probe = ft.head_init == "probe"
    if probe and (regression or bos is None):
        raise ValueError("finetune.head_init probe fits a classifier's head on `<|endoftext|> text` inputs: it needs "
                         "labels and the tokenizer's <|endoftext|>")  # fmt: skip
    torch.manual_seed(ft.seed)  # same head, task tokens, dropout masks and order from pretrained and from scratch
    views = {len(v) for v in train_ids + test_ids}
    if len(views) != 1:
        raise ValueError(f"every example needs the same number of views, got {sorted(views)}")
    model = GPTForSequenceClassification(cfg, num_labels, ft.lm_aux_weight, views=views.pop(),
                                         pooling="mean" if probe else "extract")  # fmt: skip
    head = "new"
    if init_from is not None:
        load_decoder(model, init_from)
        parent_head = json.loads((Path(init_from) / CONFIG).read_text(encoding="utf-8")).get("head", "extract")
        # a `features` parent's head reads mean states (and a scaler folded in), not the <extract> state: never kept
        kept = not probe and parent_head == "extract" and load_head_if_same_labels(
            model, init_from, id2label, ("classifier.", "task_tokens."))  # fmt: skip
        head = "kept" if kept else "new"
    else:
        strategy = "full"
    model.to(device).train()
    probe_C = None
    if probe:  # linear probing first (LP-FT): the head starts as the regression fitted on the untrained decoder
        probe_C = set_probe_head(model, train_ids, train_labels, ft.seed, ft.batch_size * 4)  # leaves it in train mode
        head = "probe"
    # frozen: only the head and the task tokens learn, the decoder is a fixed feature extractor
    optimizer = build_strategy_optimizer(model, strategy, ft.lr, WEIGHT_DECAY, ft.layer_decay, cfg.num_layers)
    tracker.log_params({"init": "pretrained" if init_from else "scratch", "strategy": strategy,
                        "num_labels": num_labels, "lm_aux_weight": ft.lm_aux_weight, "head": head})  # fmt: skip

    def make_batch(idx: list[int]) -> dict[str, torch.Tensor]:
        return collate_views([train_ids[i] for i in idx], [train_labels[i] for i in idx])

    def evaluate() -> dict[str, float]:
        return sequence_metrics(gpt_logits(model, test_ids, ft.batch_size * 4), test_labels, regression)

    scores, train_loss = train_loop(model, ft, optimizer, len(train_ids), make_batch, evaluate, tracker, progress,
                                    on_epoch=lambda epoch: _epoch_hook(model, strategy, ft, epoch))  # fmt: skip
    metrics = {**scores, "train_loss": train_loss, "epochs": float(ft.epochs)}
    if probe_C is not None:
        metrics["probe_C"] = probe_C
    model_dir = Path(out_dir or ".") / "model"
    if out_dir is not None:
        config = cfg.to_dict() | {"head": model.pooling, "regression": regression, "num_labels": num_labels,
                                  "id2label": {str(k): v for k, v in sorted(id2label.items())},
                                  "max_seq_len": ft.seq_len, "lm_aux_weight": ft.lm_aux_weight}  # fmt: skip
        if probe:
            config |= {"bos": bos, "head_init": "probe", "strategy": strategy}
        if model.views != 1:  # absent = 1: a one-ordering model's files are as before pair_orderings existed
            config["views"] = model.views
        save_model_dir(model, config, model_dir)
    return FinetuneResult(metrics=metrics, model_dir=model_dir)


# ---- features: a frozen decoder's mean states + a cross-validated logistic regression ----------


def encode_plain(tok: Any, texts: Sequence[str], pairs: Sequence[str] | None, seq_len: int, bos: int
                 ) -> list[list[list[int]]]:  # fmt: skip
    """The `features` input of each example: `<|endoftext|> text` cut to `seq_len` tokens, one view per text
    (a pair: `[<|endoftext|> A]`, `[<|endoftext|> B]`, each text read on its own)."""
    a = [[bos, *x[: seq_len - 1]] for x in _ids(tok, texts)]
    if pairs is None:
        return [[x] for x in a]
    b = [[bos, *x[: seq_len - 1]] for x in _ids(tok, pairs)]
    return [[x, y] for x, y in zip(a, b)]


def features_model(cfg: GPTConfig, num_labels: int, decoder_dir: Path | None, seed: int, views: int
                   ) -> GPTForSequenceClassification:  # fmt: skip
    """The `features` classifier: the pretrained decoder (`decoder_dir`) or a seeded random one (None), mean pooling."""
    torch.manual_seed(seed)
    model = GPTForSequenceClassification(cfg, num_labels, views=views, pooling="mean")
    if decoder_dir is not None:
        load_decoder(model, decoder_dir)
    return model.eval()


@torch.no_grad()
def pooled_features(model: GPTForSequenceClassification, views: Sequence[Sequence[Sequence[int]]], batch_size: int = 64
                    ) -> np.ndarray:  # fmt: skip
    """(N, D) float64 inputs of the head (the mean states; pairs `[u, v, |u - v|, u * v]`), in input order."""
    captured: list[torch.Tensor] = []
    hook = model.dropout.register_forward_hook(lambda module, args, out: captured.append(args[0].float().cpu()))
    try:
        gpt_logits(model, views, batch_size)
    finally:
        hook.remove()
    return torch.cat(captured).double().numpy() if captured else np.zeros((0, model.classifier.in_features))


def _set_head(model: GPTForSequenceClassification, coef: np.ndarray, intercept: np.ndarray) -> None:
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(coef.astype(np.float32)))
        model.classifier.bias.copy_(torch.from_numpy(intercept.astype(np.float32)))


def set_probe_head(model: GPTForSequenceClassification, views: Sequence[Sequence[Sequence[int]]],
                   labels: Sequence[int], seed: int, batch_size: int = 64) -> float:  # fmt: skip
    """Linear probing (the LP of LP-FT): fit the `features` regression (C by cross-validation, the scaler folded
    in) on the mean-pooled states `model` gives the labelled examples as it is now, and make it the head.
    Returns C."""
    from plm.finetune.features import fit_logistic

    if model.pooling != "mean":
        raise ValueError("a probe head reads mean-pooled states (pooling='mean')")
    fit = fit_logistic(pooled_features(model, views, batch_size), np.asarray(labels), model.num_labels, seed)
    _set_head(model, fit.coef, fit.intercept)
    return fit.C


class DecoderFeatures:
    """One task's rows read by a frozen decoder (pretrained, or random with a seed), each row once, on first use;
    `fit` runs the `features` strategy on them."""

    def __init__(self, cfg: GPTConfig, decoder_dir: Path | None, seed: int, views: int) -> None:
        self.cfg, self.views = cfg, views
        self.model = features_model(cfg, 2, decoder_dir, seed, views)
        self.rows: dict[int, np.ndarray] = {}

    def pooled(self, rows: Sequence[int], encoded: Callable[[list[int]], list[list[list[int]]]]) -> np.ndarray:
        missing = [i for i in dict.fromkeys(rows) if i not in self.rows]
        if missing:
            self.rows.update(zip(missing, pooled_features(self.model, encoded(missing))))
        return np.stack([self.rows[i] for i in rows])

    def fit(self, train_rows: Sequence[int], test_rows: Sequence[int], labels: Sequence[int],
            encoded: Callable[[list[int]], list[list[list[int]]]], id2label: dict[int, str], ft: FinetuneSpec,
            out_dir: Path | None, bos: int) -> FinetuneResult:  # fmt: skip
        """Cross-validated logistic regression on the pooled train rows, scored on the test rows; with `out_dir`
        the decoder + the fitted linear head are written to `out_dir/model` (`head: mean`)."""
        from plm.finetune.features import classification_metrics, fit_logistic

        if not id2label:
            raise ValueError("finetune.strategy=features fits a classifier: use task_type classification or "
                             "pair_classification (a GPT regressor: strategy full)")  # fmt: skip
        y = np.asarray(labels)
        fit = fit_logistic(self.pooled(train_rows, encoded), y[list(train_rows)], len(id2label), ft.seed)
        metrics = classification_metrics(fit.logits(self.pooled(test_rows, encoded)), y[list(test_rows)].tolist())
        metrics.update({"C": fit.C, "train_examples": float(len(train_rows)), "epochs": 0.0})
        model_dir = Path(out_dir or ".") / "model"
        if out_dir is not None:
            from plm.train.export import save_model_dir

            model = GPTForSequenceClassification(self.cfg, len(id2label), views=self.views, pooling="mean")
            model.transformer.load_state_dict(self.model.transformer.state_dict())  # the decoder that was read
            _set_head(model, fit.coef, fit.intercept)
            config = self.cfg.to_dict() | {"head": "mean", "regression": False, "num_labels": len(id2label),
                                           "id2label": {str(k): v for k, v in sorted(id2label.items())},
                                           "max_seq_len": ft.seq_len, "bos": bos, "strategy": "features",
                                           "views": self.views, "C": fit.C}  # fmt: skip
            save_model_dir(model, config, model_dir)
        return FinetuneResult(metrics=metrics, model_dir=model_dir)


# ---- zero-shot ---------------------------------------------------------------------------------


class ZeroShotScorer:
    """Label verbalisers scored under a pretrained decoder (`GPTLMHeadModel`); nothing trains."""

    def __init__(self, model: nn.Module, tok: Any, template: str, verbalizers: dict[str, str], seq_len: int,
                 calibrate: bool, bos: int | None) -> None:  # fmt: skip
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        unknown = set(fields) - {"text", "text_pair"}
        if "text" not in fields or unknown:
            raise ValueError(f"finetune.zero_shot_template must contain {{text}} (and may contain {{text_pair}}), "
                             f"got {template!r}")  # fmt: skip
        self.model = model.eval()
        self.tok = tok
        self.pieces = [(lit, f) for lit, f, _, _ in string.Formatter().parse(template)]
        self.labels = list(verbalizers)
        self.verbal = [_ids(tok, [v])[0] for v in verbalizers.values()]
        if any(not v for v in self.verbal):
            raise ValueError("finetune.verbalizers: every verbaliser must encode to at least one token")
        self.limit = min(seq_len, model.config.max_position) - max(len(v) for v in self.verbal) - 1
        self.bos = bos
        self.prior = self._scores([ZERO_SHOT_CONTENT_FREE], [ZERO_SHOT_CONTENT_FREE])[0] if calibrate else None

    def _prompt(self, text: str, pair: str | None) -> list[int]:
        lits = [_ids(self.tok, [lit])[0] if lit else [] for lit, _ in self.pieces]
        fields = {"text": _ids(self.tok, [text])[0], "text_pair": _ids(self.tok, [pair or ""])[0]}
        room = self.limit - sum(map(len, lits)) - (self.bos is not None)
        while sum(len(fields[f]) for _, f in self.pieces if f) > room and any(fields.values()):
            longest = max(fields, key=lambda k: len(fields[k]))  # the longer text loses its end first
            fields[longest].pop()
        ids = [self.bos] if self.bos is not None else []
        for lit_ids, (_, f) in zip(lits, self.pieces):
            ids += lit_ids + (fields[f] if f else [])
        return ids

    @torch.no_grad()
    def _scores(self, texts: Sequence[str], pairs: Sequence[str] | None, batch: int = 16) -> np.ndarray:
        """(N, L) summed log-likelihood of each verbaliser after each prompt, `batch` prompts per forward."""
        device = next(self.model.parameters()).device
        L = len(self.verbal)
        out = np.zeros((len(texts), L))
        for s in range(0, len(texts), batch):
            prompts = [self._prompt(t, None if pairs is None else pairs[s + j]) for j, t in enumerate(texts[s : s + batch])]
            seqs = [p + v for p in prompts for v in self.verbal]  # (n L) rows
            x = torch.zeros((len(seqs), max(map(len, seqs))), dtype=torch.long)
            for b, q in enumerate(seqs):
                x[b, : len(q)] = torch.tensor(q)
            h = self.model.transformer(x.to(device))  # (n L, T, C)
            for b, q in enumerate(seqs):
                v = self.verbal[b % L]
                start = len(q) - len(v)  # positions start-1 .. len(q)-2 predict the verbaliser's tokens
                logp = self.model.lm_head(h[b, start - 1 : len(q) - 1]).float().log_softmax(-1)  # (len(v), V)
                out[s + b // L, b % L] = float(logp[torch.arange(len(v)), torch.tensor(v, device=logp.device)].sum())
        return out

    def scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        s = self._scores(texts, pairs)
        return s - self.prior if self.prior is not None else s


def verbalizers_for(ft: FinetuneSpec, label_names: list[str]) -> dict[str, str]:
    """label -> verbaliser in label order; the spec's `verbalizers`, else " <label>" for each label."""
    if ft.verbalizers:
        missing = [n for n in label_names if n not in ft.verbalizers]
        if missing:
            raise ValueError(f"finetune.verbalizers has no verbaliser for labels {missing}")
        return {n: ft.verbalizers[n] for n in label_names}
    return {n: f" {n}" for n in label_names}


def zero_shot(
    pretrained_dir: Path, tokenizer_path: Path, ft: FinetuneSpec, label_names: list[str],
    test_texts: list[str], test_pairs: list[str] | None, test_labels: list[int], out_dir: Path | None,
) -> FinetuneResult:  # fmt: skip
    """Classify the test split with the pretrained decoder's verbaliser likelihoods; `out_dir` gets a servable
    model folder (the pretrained weights unchanged + the zero-shot config)."""
    import shutil

    from plm.tokenizer.specials import SpecialIds
    from plm.tokenizer.train import load_tokenizer
    from plm.train.export import load_model_dir

    if ft.task_type not in ("classification", "pair_classification"):
        raise ValueError(f"finetune.strategy zero_shot classifies; task_type {ft.task_type} has no labels to verbalise")
    model, cfg = load_model_dir(pretrained_dir)
    if not hasattr(model, "lm_head"):
        raise ValueError(f"finetune.strategy zero_shot needs a GPT decoder, {pretrained_dir} holds a BERT")
    tok = load_tokenizer(tokenizer_path)
    verbal = verbalizers_for(ft, label_names)
    scorer = ZeroShotScorer(model, tok, ft.zero_shot_template, verbal, ft.seq_len, ft.zero_shot_calibrate,
                            SpecialIds.from_tokenizer(tok).eos)  # fmt: skip
    scores = torch.from_numpy(scorer.scores(test_texts, test_pairs))
    metrics = {**sequence_metrics(scores, test_labels, False), "epochs": 0.0}
    model_dir = Path(out_dir or ".") / "model"
    if out_dir is not None:
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(pretrained_dir) / WEIGHTS, model_dir / WEIGHTS)
        config = cfg.to_dict() | {"arch": "gpt", "head": "zero_shot", "regression": False,
                                  "num_labels": len(label_names), "max_seq_len": ft.seq_len,
                                  "id2label": {str(i): n for i, n in enumerate(label_names)},
                                  "zero_shot": {"template": ft.zero_shot_template, "verbalizers": verbal,
                                                "calibrate": ft.zero_shot_calibrate}}  # fmt: skip
        (model_dir / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return FinetuneResult(metrics=metrics, model_dir=model_dir)


# ---- serving -----------------------------------------------------------------------------------


class GPTClassifierPipeline:
    """Registered kind `gpt_classifier`: `text` (+ `text_pair` for a pair model) in; `label` + `score` (its
    probability; zero-shot: softmax over the verbaliser scores), or `score` (regression), out."""

    def __init__(self, model_dir: Path, tokenizer_path: Path) -> None:
        from plm.tokenizer.specials import SpecialIds
        from plm.tokenizer.train import load_tokenizer

        self.config = json.loads((Path(model_dir) / CONFIG).read_text(encoding="utf-8"))
        self.tok = load_tokenizer(tokenizer_path)
        self.id2label = {int(k): v for k, v in self.config["id2label"].items()}
        self.pair = bool(json.loads((Path(model_dir) / "task.json").read_text()).get("pair", False)) \
            if (Path(model_dir) / "task.json").is_file() else False  # fmt: skip
        cfg = GPTConfig.from_dict(self.config)
        self.seq_len = int(self.config["max_seq_len"])
        if self.config.get("head") == "zero_shot":
            from plm.train.export import load_model_dir

            zs = self.config["zero_shot"]
            lm, _ = load_model_dir(model_dir)
            self.scorer: ZeroShotScorer | None = ZeroShotScorer(lm, self.tok, zs["template"], zs["verbalizers"],
                                                                self.seq_len, zs["calibrate"],
                                                                SpecialIds.from_tokenizer(self.tok).eos)  # fmt: skip
            self.model = None
        else:
            self.scorer = None
            self.views = int(self.config.get("views", 1))
            self.pooling = "mean" if self.config.get("head") == "mean" else "extract"
            self.model = GPTForSequenceClassification(cfg, int(self.config["num_labels"]), views=self.views,
                                                      pooling=self.pooling)  # fmt: skip
            state = load_file(str(Path(model_dir) / WEIGHTS))
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if [k for k in missing if k != "lm_head.weight"] or unexpected:
                raise ValueError(f"{model_dir}: weights do not match the config (missing {missing}, unexpected {unexpected})")
            self.model.lm_head.weight = self.model.transformer.wte.weight
            self.model.eval()

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> GPTClassifierPipeline:
        return cls(model_dir, tokenizer_path)

    def logits(self, texts: list[str], pairs: list[str] | None) -> torch.Tensor:
        if self.scorer is not None:
            return torch.from_numpy(self.scorer.scores(texts, pairs)).float()
        assert self.model is not None
        if self.pooling == "mean":
            ids = encode_plain(self.tok, texts, pairs, self.seq_len, int(self.config["bos"]))
        else:
            ids = encode_views(self.tok, texts, pairs, self.seq_len, self.model.config.vocab_size,
                               "both" if self.views == 2 else "one")  # fmt: skip
        return gpt_logits(self.model, ids, 64)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        need = ["text", "text_pair"] if self.pair else ["text"]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValueError(f"input needs columns {need} (missing {missing}; got {list(frame.columns)})")
        texts = [str(t) for t in frame["text"]]
        pairs = [str(t) for t in frame["text_pair"]] if self.pair else None
        if not texts:
            return pd.DataFrame({"score": []} if self.config.get("regression") else {"label": [], "score": []})
        logits = self.logits(texts, pairs)
        if self.config.get("regression"):
            return pd.DataFrame({"score": logits.squeeze(-1).tolist()})
        probs = logits.softmax(-1)
        return pd.DataFrame({"label": [self.id2label[i] for i in probs.argmax(-1).tolist()],
                             "score": probs.max(-1).values.tolist()})  # fmt: skip
