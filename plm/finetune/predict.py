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
from plm.finetune.tasks import encode_for_classification
from plm.tokenizer.train import PAD_ID, load_tokenizer
from plm.train.engine import load_pretrained

TASK_FILE = "task.json"  # written beside a fine-tuned model: seq_len and task name


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
