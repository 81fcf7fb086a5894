"""Labelled task data: read, split deterministically by text hash, encode as `[CLS] text [SEP]`."""

from __future__ import annotations

import csv
import io
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from plm.config import FinetuneSpec
from plm.samples import is_sample, resolve_sample

FASTTEXT_PREFIX = "__label__"


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    source: Path
    skipped: int  # malformed rows (no label or no text), counted and reported, never silent
    encoding: str


def decode_strict(data: bytes, what: str) -> tuple[str, str]:
    """UTF-8 (BOM allowed), else the encoding charset-normalizer detects; never replaces bytes."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise ValueError(f"{what}: not UTF-8 and no encoding could be detected")
    try:
        return data.decode(best.encoding), best.encoding
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: undecodable as {best.encoding}: {exc}") from None


def data_path(cfg: FinetuneSpec) -> Path:
    return resolve_sample(cfg.data)[0] if is_sample(cfg.data) else Path(cfg.data)


def read_labelled(cfg: FinetuneSpec) -> LabelledData:
    """Rows of (text, label) from a fastText, CSV or JSONL file."""
    path = data_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"finetune.data: {path} not found")
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0

    def add(text: object, label: object) -> None:
        nonlocal skipped
        if text is None or label is None or not str(text).strip() or str(label) == "":
            skipped += 1
            return
        texts.append(" ".join(str(text).split()))
        labels.append(str(label))

    content, encoding = decode_strict(path.read_bytes(), f"finetune.data {path}")
    f = io.StringIO(content, newline=None)
    if cfg.format == "fasttext":
        for line in f:
            head, _, rest = line.strip().partition(" ")
            add(rest, head.removeprefix(FASTTEXT_PREFIX) if head.startswith(FASTTEXT_PREFIX) else None)
    elif cfg.format == "csv":
        for row in csv.DictReader(f):
            add(row.get(cfg.text_column), row.get(cfg.label_column))
    else:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            add(row.get(cfg.text_column), row.get(cfg.label_column))
    if not texts:
        raise ValueError(f"finetune.data: no labelled rows in {path} (format {cfg.format})")
    return LabelledData(texts, labels, path, skipped, encoding)


def split_by_hash(texts: list[str], test_fraction: float) -> tuple[list[int], list[int]]:
    """Train and test indices; a text's side depends only on its hash, so the split is stable."""
    train, test = [], []
    for i, text in enumerate(texts):
        bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (test if bucket < test_fraction else train).append(i)
    return train, test


def encode_for_classification(tok: Tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """`[CLS] text [SEP]` ids truncated to `seq_len` (the tokenizer's post-processor adds the specials)."""
    tok = Tokenizer.from_str(tok.to_str())  # a private copy: truncation is tokenizer state
    tok.enable_truncation(max_length=seq_len)
    tok.no_padding()
    return [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=True)]
