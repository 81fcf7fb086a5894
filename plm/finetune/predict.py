"""Inference from exported model folders: text in, labels or embeddings out.

Used by the MLflow pyfunc wrappers and `plm predict`, so both give the same answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from plm.finetune.engine import TextClassifier
from plm.finetune.tasks import encode_for_classification, encode_pairs
from plm.tokenizer.train import PAD_ID, load_tokenizer
from plm.train.engine import load_pretrained

TASK_FILE = "task.json"  # written beside a fine-tuned model: task name, task_type, pair, seq_len

PAIR_EXAMPLE = {"text": ["a gripping , beautifully acted film .", "the plot is thin ."],
                "text_pair": ["a gripping and beautifully acted movie .", "dull , tedious and far too long ."]}  # fmt: skip
QA_EXAMPLE = {"question": ["Who wrote the report?"],
              "context": ["The report was written by the committee in 2004 and published a year later."]}  # fmt: skip
TEXT_EXAMPLE = ["a gripping , beautifully acted film .", "dull , tedious and far too long ."]


def input_example(kind: str, pair: bool = False) -> pd.DataFrame | list[str]:
    """The pyfunc input example (and so the signature's columns) of a model kind."""
    if kind == "qa":
        return pd.DataFrame(QA_EXAMPLE)
    if kind == "pair_classifier" or pair:
        return pd.DataFrame(PAIR_EXAMPLE)
    return TEXT_EXAMPLE


def example_for(kind: str, model_dir: Path, default: list[str]) -> pd.DataFrame | list[str]:
    """The input example of a registered model: pair/QA columns for those kinds, else `default` texts."""
    if kind in ("pair_classifier", "regressor", "qa", "embeddings_classifier", "gpt_classifier"):
        return input_example(kind, bool(_task(model_dir).get("pair", False)))
    return default


def _columns(frame: pd.DataFrame, *names: str) -> list[list[str]]:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"input needs columns {list(names)} (missing {missing}; got {list(frame.columns)})")
    return [[str(t) for t in frame[n]] for n in names]


def _task(model_dir: Path) -> dict:
    task = Path(model_dir) / TASK_FILE
    return json.loads(task.read_text()) if task.is_file() else {}


def _text_column(frame: pd.DataFrame) -> list[str]:
    if "text" not in frame.columns:
        raise ValueError(f"input needs a 'text' column (got {list(frame.columns)})")
    return [str(t) for t in frame["text"]]


def _seq_len(model_dir: Path, default: int) -> int:
    task = model_dir / TASK_FILE
    return int(json.loads(task.read_text()).get("seq_len", default)) if task.is_file() else default


class ClassifierPipeline:
    def __init__(self, classifier: TextClassifier, tokenizer_path: Path, seq_len: int) -> None:
        self.classifier = classifier
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.seq_len = seq_len

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> ClassifierPipeline:
        return cls(TextClassifier.load(model_dir), tokenizer_path, _seq_len(model_dir, 128))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`text` column in; `label` and `score` (its probability) out."""
        labels, scores = self.predict(_text_column(frame))
        return pd.DataFrame({"label": labels, "score": scores})

    def predict(self, texts: list[str]) -> tuple[list[str], list[float]]:
        """Predicted label and its probability per text."""
        if not texts:
            return [], []
        ids = encode_for_classification(self.tokenizer, texts, self.seq_len)
        labels, probs = self.classifier.predict_ids(ids)
        return labels, [float(max(p)) for p in probs]


class EncoderPipeline:
    def __init__(self, model_dir: Path, tokenizer_path: Path) -> None:
        model, config = load_pretrained(model_dir)
        self.bert = model.bert.eval()
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.seq_len = min(config.max_position, 512)

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> EncoderPipeline:
        return cls(model_dir, tokenizer_path)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`text` column in; one mean-pooled `embedding` per row out."""
        return pd.DataFrame({"embedding": list(self.embed(_text_column(frame)))})

    @torch.no_grad()
    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled last hidden states over real tokens, one row per text."""
        ids = encode_for_classification(self.tokenizer, texts, self.seq_len)
        width = max(len(r) for r in ids)
        input_ids = torch.full((len(ids), width), PAD_ID, dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row)
        mask = input_ids != PAD_ID
        hidden, _ = self.bert(input_ids, torch.zeros_like(input_ids), mask)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return pooled.float().numpy()


class PairClassifierPipeline:
    """`text` + `text_pair` in (`[CLS] A [SEP] B [SEP]`); `label` and `score` (its probability) out."""

    def __init__(self, classifier: TextClassifier, tokenizer_path: Path, seq_len: int) -> None:
        self.classifier = classifier
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.seq_len = seq_len

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> PairClassifierPipeline:
        return cls(TextClassifier.load(model_dir), tokenizer_path, _seq_len(model_dir, 128))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        texts, pairs = _columns(frame, "text", "text_pair")
        if not texts:
            return pd.DataFrame({"label": [], "score": []})
        ids, types = encode_pairs(self.tokenizer, texts, pairs, self.seq_len)
        labels, probs = self.classifier.predict_ids(ids, type_ids=types)
        return pd.DataFrame({"label": labels, "score": [float(max(p)) for p in probs]})


class RegressorPipeline:
    """`text` (+ `text_pair` for a pair regressor) in; the predicted value `score` out."""

    def __init__(self, classifier: TextClassifier, tokenizer_path: Path, seq_len: int, pair: bool) -> None:
        self.classifier = classifier
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.seq_len = seq_len
        self.pair = pair

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> RegressorPipeline:
        pair = bool(_task(model_dir).get("pair", True))
        return cls(TextClassifier.load(model_dir), tokenizer_path, _seq_len(model_dir, 128), pair)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = _columns(frame, "text", "text_pair") if self.pair else _columns(frame, "text")
        if not cols[0]:
            return pd.DataFrame({"score": []})
        ids, types = encode_pairs(self.tokenizer, cols[0], cols[1] if self.pair else None, self.seq_len)
        return pd.DataFrame({"score": self.classifier.predict_values(ids, type_ids=types)})


class QAPipeline:
    """`question` + `context` in; `answer` (a span of the context), `score`, `start`, `end` (characters) out."""

    def __init__(self, answerer: object) -> None:
        self.answerer = answerer

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> QAPipeline:
        from plm.finetune.qa import QuestionAnswerer

        return cls(QuestionAnswerer.load(model_dir, tokenizer_path))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        questions, contexts = _columns(frame, "question", "context")
        spans = self.answerer.answer(questions, contexts)  # type: ignore[attr-defined]
        return pd.DataFrame({
            "answer": [s[0] for s in spans], "score": [float(s[1]) for s in spans],
            "start": [int(s[2]) for s in spans], "end": [int(s[3]) for s in spans],
        })  # fmt: skip


class EmbeddingsPipeline:
    """The word2vec-feature classifier: `text` (+ `text_pair`) in; `label` + `score`, or `score` (regression) out."""

    def __init__(self, model_dir: Path) -> None:
        from plm.finetune.embeddings import EmbeddingsModel

        self.model = EmbeddingsModel(model_dir)

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path | None = None) -> EmbeddingsPipeline:
        return cls(model_dir)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        pair = self.model.config["pair"]
        cols = _columns(frame, "text", "text_pair") if pair else _columns(frame, "text")
        logits = self.model.logits(cols[0], cols[1] if pair else None)
        if self.model.config["regression"]:
            return pd.DataFrame({"score": logits.squeeze(-1).tolist()})
        probs = logits.softmax(-1)
        return pd.DataFrame({"label": [self.model.id2label[i] for i in probs.argmax(-1).tolist()],
                             "score": probs.max(-1).values.tolist()})  # fmt: skip
