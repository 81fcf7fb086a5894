"""Extractive QA: SQuAD JSON in, sliding windows over long contexts, best span across windows, EM/F1 out.

A question and a context become `[CLS] question [SEP] context-window [SEP]` (segments 0 and 1).
Contexts longer than one window are cut into windows starting every `doc_stride` tokens (BERT's
run_squad); a window that does not hold the whole answer is labelled with [CLS] (position 0), as in
HF's QA fine-tuning. At prediction every window proposes spans (start <= end, inside its context,
at most `max_answer_len` tokens); the highest start + end logit over all windows wins and is mapped
back to characters of the original context through the tokenizer's offsets.
"""

from __future__ import annotations

import collections
import json
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from plm.config import FinetuneSpec
from plm.finetune.engine import FinetuneResult, _batches, collate, load_encoder, resolve_strategy, strategy_epoch, train_loop
from plm.finetune.heads import BertForQuestionAnswering
from plm.finetune.strategies import Strategy, build_strategy_optimizer
from plm.finetune.tasks import data_path, read_document
from plm.models.bert import BertConfig
from plm.tracker import NullTracker, Progress, Tracker, no_progress
from plm.train.engine import CONFIG, WEIGHTS, autocast, resolve_device, save_model_dir

WEIGHT_DECAY = 0.01
N_BEST = 20


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    """(text, answer_start in characters of `context`); several gold answers allowed, as in SQuAD dev."""


@dataclass
class QAData:
    examples: list[QAExample]
    source: Path
    skipped: int
    encoding: str


@dataclass
class Window:
    example: int
    """Index of its example."""
    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    """Character span in the context per token; None for question and special tokens."""
    start: int = 0
    end: int = 0
    """Labels: token positions of the answer in this window, 0 ([CLS]) when it is not inside."""


@dataclass
class QAFeatures:
    windows: list[Window] = field(default_factory=list)


def read_squad(cfg: FinetuneSpec) -> QAData:
    """SQuAD-format JSON (`data` -> `paragraphs` -> `context`, `qas` -> `question`, `answers`), strictly decoded
    (compressed too) by `read_document`.

    A question without a usable answer (missing, or `answer_start` not pointing at its text) is skipped and counted.
    """
    path = data_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"finetune.data: {path} not found")
    content, encoding = read_document(path, cfg.encoding)
    try:
        doc = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"finetune.data {path}: not valid JSON ({exc})") from None
    examples: list[QAExample] = []
    skipped = 0
    for article in doc.get("data", []) if isinstance(doc, dict) else []:
        for para in article.get("paragraphs", []):
            context = para.get("context")
            for qa in para.get("qas", []):
                answers = [
                    (a["text"], int(a["answer_start"])) for a in qa.get("answers", [])
                    if isinstance(context, str) and isinstance(a.get("text"), str) and a["text"]
                    and context[int(a.get("answer_start", -1)) :].startswith(a["text"])
                ]  # fmt: skip
                if not answers or not str(qa.get("question", "")).strip():
                    skipped += 1
                    continue
                qid = str(qa.get("id") or f"q{len(examples) + skipped}")
                examples.append(QAExample(qid, str(qa["question"]).strip(), context, answers))
    if not examples:
        raise ValueError(f"finetune.data: no answerable questions in {path} (SQuAD format expected)")
    return QAData(examples, path, skipped, encoding)


def split_by_context(examples: list[QAExample], test_fraction: float) -> tuple[list[int], list[int]]:
    """Train/test indices by context hash: questions on one paragraph stay on one side."""
    from plm.finetune.tasks import split_by_hash

    return split_by_hash([ex.context for ex in examples], test_fraction)


def make_windows(tok: Tokenizer, examples: Sequence[QAExample], ft: FinetuneSpec) -> QAFeatures:
    """Every example as one or more windows of at most `ft.seq_len` tokens, with answer labels."""
    tok = Tokenizer.from_str(tok.to_str())
    tok.no_truncation()
    tok.no_padding()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError("qa needs a tokenizer with [CLS] and [SEP] (tokenizer.family=bert)")
    feats = QAFeatures()
    questions = tok.encode_batch([e.question for e in examples], add_special_tokens=False)
    contexts = tok.encode_batch([e.context for e in examples], add_special_tokens=False)
    for n, (ex, q, c) in enumerate(zip(examples, questions, contexts, strict=True)):
        q_ids = q.ids[: ft.max_query_len]
        room = ft.seq_len - len(q_ids) - 3
        text, start_char = ex.answers[0]
        end_char = start_char + len(text)
        # answer tokens: the first token ending after the start, the last token starting before the end
        tok_start = next((i for i, (_, e) in enumerate(c.offsets) if e > start_char), None)
        tok_end = next((i for i in range(len(c.offsets) - 1, -1, -1) if c.offsets[i][0] < end_char), None)
        begin = 0
        while True:
            span = range(begin, min(begin + room, len(c.ids)))
            ids = [cls_id, *q_ids, sep_id, *(c.ids[i] for i in span), sep_id]
            type_ids = [0] * (len(q_ids) + 2) + [1] * (len(span) + 1)
            offsets: list[tuple[int, int] | None] = [None] * (len(q_ids) + 2)
            offsets += [tuple(c.offsets[i]) for i in span] + [None]  # type: ignore[misc]
            w = Window(n, ids, type_ids, offsets)
            first = len(q_ids) + 2
            if tok_start is not None and tok_end is not None and span.start <= tok_start and tok_end < span.stop:
                w.start, w.end = first + tok_start - span.start, first + tok_end - span.start
            feats.windows.append(w)
            if span.stop >= len(c.ids):
                break
            begin += ft.doc_stride
    return feats


@torch.no_grad()
def _window_logits(
    model: BertForQuestionAnswering, windows: list[Window], batch_size: int, device: torch.device
) -> list[tuple[np.ndarray, np.ndarray]]:
    was_training = model.training
    model.eval()
    out = []
    for idx in _batches(len(windows), batch_size):
        ws = [windows[i] for i in idx]
        batch = {k: v.to(device) for k, v in collate([w.ids for w in ws], type_ids=[w.type_ids for w in ws]).items()}
        with autocast(device):
            res = model(**batch)
        s, e = res["start_logits"].float().cpu().numpy(), res["end_logits"].float().cpu().numpy()
        out += [(s[b, : len(w.ids)], e[b, : len(w.ids)]) for b, w in enumerate(ws)]
    model.train(was_training)
    return out


def best_spans(
    examples: Sequence[QAExample],
    windows: list[Window],
    logits: list[tuple[np.ndarray, np.ndarray]],
    max_answer_len: int,
) -> list[tuple[str, float, int, int]]:
    """Per example: (answer text, score, start char, end char) of the best valid span over all its windows."""
    best: dict[int, tuple[float, int, int]] = {}
    for w, (s, e) in zip(windows, logits, strict=True):
        starts = np.argsort(s)[::-1][:N_BEST]
        ends = np.argsort(e)[::-1][:N_BEST]
        for i in starts:
            for j in ends:
                if w.offsets[i] is None or w.offsets[j] is None or j < i or j - i + 1 > max_answer_len:
                    continue
                score = float(s[i] + e[j])
                if w.example not in best or score > best[w.example][0]:
                    best[w.example] = (score, w.offsets[i][0], w.offsets[j][1])  # type: ignore[index]
    out = []
    for n, ex in enumerate(examples):
        if n not in best:
            out.append(("", -math.inf, 0, 0))
            continue
        score, a, b = best[n]
        out.append((ex.context[a:b], score, a, b))
    return out


# ---- SQuAD v1.1 evaluation (normalisation as in the official script) ---------------------------


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop articles (a, an, the), collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """test_exact_match and test_f1 (max over gold answers, averaged over questions, in [0, 1])."""
    if not predictions:
        return {"test_exact_match": math.nan, "test_f1": math.nan}
    em = [max(float(normalize_answer(p) == normalize_answer(g)) for g in gs) for p, gs in zip(predictions, golds)]
    f1 = [max(f1_score(p, g) for g in gs) for p, gs in zip(predictions, golds)]
    return {"test_exact_match": float(np.mean(em)), "test_f1": float(np.mean(f1))}


# ---- training and inference --------------------------------------------------------------------


def finetune_qa(
    cfg: BertConfig,
    ft: FinetuneSpec,
    tok: Tokenizer,
    train: Sequence[QAExample],
    test: Sequence[QAExample],
    out_dir: Path,
    init_from: Path | None,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    strategy: Strategy | None = None,
) -> FinetuneResult:
    """Train a span-extraction head on windows of `train`; evaluate EM/F1 on `test` each epoch."""
    if not train:
        raise ValueError("no training examples")
    device = resolve_device("auto")
    train_w = make_windows(tok, train, ft).windows
    test_w = make_windows(tok, test, ft).windows
    torch.manual_seed(ft.seed)
    model = BertForQuestionAnswering(cfg)
    if init_from is not None:
        load_encoder(model, init_from)  # type: ignore[arg-type]
    model.to(device).train()
    strategy = resolve_strategy(strategy or ft.strategy, init_from is not None)
    optimizer = build_strategy_optimizer(model, strategy, ft.lr, WEIGHT_DECAY, ft.layer_decay, cfg.num_layers)
    tracker.log_params({"init": "pretrained" if init_from else "scratch", "strategy": strategy,
                        "train_windows": len(train_w), "test_windows": len(test_w)})  # fmt: skip

    def make_batch(idx: list[int]) -> dict[str, torch.Tensor]:
        ws = [train_w[i] for i in idx]
        batch = collate([w.ids for w in ws], type_ids=[w.type_ids for w in ws])
        batch["start_positions"] = torch.tensor([w.start for w in ws])
        batch["end_positions"] = torch.tensor([w.end for w in ws])
        return batch

    def evaluate() -> dict[str, float]:
        spans = best_spans(test, test_w, _window_logits(model, test_w, ft.batch_size * 4, device), ft.max_answer_len)
        return squad_metrics([s[0] for s in spans], [[a for a, _ in ex.answers] for ex in test])

    scores, train_loss = train_loop(
        model, ft, optimizer, len(train_w), make_batch, evaluate, tracker, progress,
        on_epoch=lambda epoch: strategy_epoch(model, strategy, ft, epoch, cfg.num_layers),
    )  # fmt: skip
    config = cfg.to_dict() | {
        "task_type": "qa", "max_seq_len": ft.seq_len, "doc_stride": ft.doc_stride,
        "max_query_len": ft.max_query_len, "max_answer_len": ft.max_answer_len,
    }  # fmt: skip
    model_dir = save_model_dir(model, config, Path(out_dir) / "model")
    return FinetuneResult({**scores, "train_loss": train_loss, "epochs": float(ft.epochs)}, model_dir)


class QuestionAnswerer:
    """Inference with a fine-tuned QA model dir: (question, context) pairs in, answer spans out."""

    def __init__(self, model: BertForQuestionAnswering, tok: Tokenizer, ft: FinetuneSpec) -> None:
        self.model = model.eval()
        self.tok = tok
        self.ft = ft
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> QuestionAnswerer:
        config = json.loads((Path(model_dir) / CONFIG).read_text())
        model = BertForQuestionAnswering(BertConfig.from_dict(config))
        model.load_state_dict(load_file(str(Path(model_dir) / WEIGHTS)), strict=True)
        ft = FinetuneSpec(
            task_type="qa", format="squad", seq_len=config["max_seq_len"], doc_stride=config["doc_stride"],
            max_query_len=config["max_query_len"], max_answer_len=config["max_answer_len"],
        )  # fmt: skip
        return cls(model, Tokenizer.from_file(str(tokenizer_path)), ft)

    def answer(self, questions: list[str], contexts: list[str]) -> list[tuple[str, float, int, int]]:
        """(answer, score, start char, end char) per question."""
        if not questions:
            return []
        examples = [QAExample(str(i), q, c, [("", 0)]) for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
        windows = make_windows(self.tok, examples, self.ft).windows
        logits = _window_logits(self.model, windows, 32, self.device)
        return best_spans(examples, windows, logits, self.ft.max_answer_len)
