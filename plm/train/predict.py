"""Inference for a pretrained GPT decoder (registered kind `decoder`): perplexity of a text and a greedy continuation.

Used by the MLflow pyfunc wrapper (`plm.tracking.PREDICTORS`) and `plm predict`, so both give the same answers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from plm.tokenizer.specials import SpecialIds
from plm.tokenizer.train import load_tokenizer
from plm.train.export import load_model_dir

CONTINUATION_TOKENS = 16


class DecoderPipeline:
    """`text` column in; `perplexity` (per token, the text preceded by <|endoftext|>) and `continuation` out."""

    def __init__(self, model_dir: Path, tokenizer_path: Path, max_new_tokens: int = CONTINUATION_TOKENS) -> None:
        model, cfg = load_model_dir(model_dir)
        if not hasattr(model, "lm_head"):
            raise ValueError(f"{model_dir} holds a {type(model).__name__}, not a GPT decoder")
        self.model = model.eval()
        self.max_position = cfg.max_position
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.bos = SpecialIds.from_tokenizer(self.tokenizer).eos
        self.max_new_tokens = max_new_tokens

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path) -> DecoderPipeline:
        return cls(model_dir, tokenizer_path)

    def _ids(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text).ids
        prefix = [self.bos] if self.bos is not None else []
        return (prefix + ids)[: self.max_position - self.max_new_tokens]

    @torch.no_grad()
    def perplexity(self, text: str) -> float:
        """exp(mean next-token cross-entropy) over the text's tokens; NaN for a text of fewer than 2 tokens."""
        ids = self._ids(text)
        if len(ids) < 2:
            return math.nan
        x = torch.tensor([ids])
        return math.exp(float(self.model(x, labels=x)["loss"]))

    @torch.no_grad()
    def continue_text(self, text: str) -> str:
        """The greedy continuation of `text` (up to `max_new_tokens` tokens, stopping at <|endoftext|>)."""
        ids = self._ids(text)
        if not ids:
            return ""
        new: list[int] = []
        for _ in range(self.max_new_tokens):
            logits = self.model(torch.tensor([ids + new]))["logits"]  # (1, T, V)
            nxt = int(logits[0, -1].argmax())
            if nxt == self.bos:
                break
            new.append(nxt)
        return self.tokenizer.decode(new)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if "text" not in frame.columns:
            raise ValueError(f"input needs a `text` column (got {list(frame.columns)})")
        texts = [str(t) for t in frame["text"]]
        return pd.DataFrame({"perplexity": [self.perplexity(t) for t in texts],
                             "continuation": [self.continue_text(t) for t in texts]})  # fmt: skip
