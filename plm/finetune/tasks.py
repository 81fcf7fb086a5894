"""Labelled task data: read (strict decoding, skipped rows counted), split by text hash, encode.

Single texts become `[CLS] text [SEP]`, pairs `[CLS] A [SEP] B [SEP]` with segment ids 0/1 (the
NSP-shaped input, longer side truncated first). SQuAD JSON for extractive QA lives in plm.finetune.qa.
"""

from __future__ import annotations

import csv
import io
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from plm.config import FinetuneSpec
from plm.samples import FETCHED, LABELLED_DEFAULTS, is_sample, resolve_fetched, resolve_sample

FASTTEXT_PREFIX = "__label__"


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    source: Path
    skipped: int  # malformed rows (no label or no text), counted and reported, never silent
    encoding: str
    pairs: list[str] | None = None
    """Second text of each row for pair tasks, else None."""
    splits: list[str] | None = None
    """Each row's value of `finetune.split_column` (`test` = held out), when the spec names one."""

    def split_keys(self) -> list[str]:
        """What the hash split looks at: the text, or both texts of a pair."""
        return self.texts if self.pairs is None else [f"{a}\n{b}" for a, b in zip(self.texts, self.pairs)]


def uses_pairs(cfg: FinetuneSpec) -> bool:
    """Pair classification always reads two texts; regression does when `text_pair_column` is set."""
    return cfg.task_type == "pair_classification" or (cfg.task_type == "regression" and bool(cfg.text_pair_column))


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
    """The labelled file: a named sample's (fetched ones: their `labelled` file), else `finetune.data`
    resolved (symlinks followed) and checked against `corpus.allowed_roots` before anything opens it."""
    if is_sample(cfg.data):
        key = cfg.data.removeprefix("sample:")
        return resolve_fetched(key, "labelled") if key in FETCHED else resolve_sample(cfg.data)[0]
    from plm.corpus.readers import check_allowed

    return check_allowed(cfg.data, cfg._data_roots, key="finetune.data")


def with_sample_defaults(cfg: FinetuneSpec) -> FinetuneSpec:
    """A fetched labelled sample implies its format, columns and split column unless the spec sets them."""
    key = cfg.data.removeprefix("sample:") if is_sample(cfg.data) else None
    defaults = {k: v for k, v in LABELLED_DEFAULTS.get(key or "", {}).items() if k not in cfg.model_fields_set}
    return cfg.model_copy(update=defaults) if defaults else cfg


def read_labelled(cfg: FinetuneSpec) -> LabelledData:
    """Rows of (text[, text_pair], label) from a fastText, CSV, JSONL or Parquet file.

    Rows missing a text or a label (or with a non-numeric label for `regression`) are skipped and counted.
    """
    cfg = with_sample_defaults(cfg)
    path = data_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"finetune.data: {path} not found")
    if cfg.format == "squad":
        raise ValueError("finetune.format squad is read by plm.finetune.qa.read_squad (task_type qa)")
    pairs = uses_pairs(cfg)
    texts: list[str] = []
    seconds: list[str] = []
    labels: list[str] = []
    splits: list[str] = []
    skipped = 0

    def blank(v: object) -> bool:
        return v is None or (isinstance(v, float) and v != v) or not str(v).strip()

    def add(text: object, label: object, second: object = None, split: object = None) -> None:
        nonlocal skipped
        if blank(text) or blank(label) or (pairs and blank(second)):
            skipped += 1
            return
        if cfg.task_type == "regression":
            try:
                value = float(str(label))
            except ValueError:
                skipped += 1
                return
            if value != value or value in (float("inf"), float("-inf")):
                skipped += 1
                return
        texts.append(" ".join(str(text).split()))
        labels.append(str(label).strip())
        if pairs:
            seconds.append(" ".join(str(second).split()))
        if cfg.split_column:
            splits.append(str(split).strip() if split is not None else "")

    def row_of(row: dict) -> None:
        add(row.get(cfg.text_column), row.get(cfg.label_column), row.get(cfg.text_pair_column) if pairs else None,
            row.get(cfg.split_column) if cfg.split_column else None)

    encoding = "parquet"
    if cfg.format == "parquet":
        import pyarrow.parquet as pq

        for row in pq.read_table(path).to_pylist():
            row_of(row)
    else:
        content, encoding = decode_strict(path.read_bytes(), f"finetune.data {path}")
        f = io.StringIO(content, newline=None)
        if cfg.format == "fasttext":
            if pairs:
                raise ValueError("finetune.format fasttext holds one text per line: use csv, jsonl or parquet for pairs")
            for line in f:
                head, _, rest = line.strip().partition(" ")
                add(rest, head.removeprefix(FASTTEXT_PREFIX) if head.startswith(FASTTEXT_PREFIX) else None)
        elif cfg.format == "csv":
            for row in csv.DictReader(f):
                row_of(row)
        else:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    skipped += 1
                    continue
                if isinstance(row, dict):
                    row_of(row)
                else:
                    skipped += 1
    if not texts:
        raise ValueError(f"finetune.data: no labelled rows in {path} (format {cfg.format})")
    if cfg.split_column and "test" not in splits:
        raise ValueError(f"finetune.split_column: no row of {path} has {cfg.split_column}=test")
    return LabelledData(texts, labels, path, skipped, encoding, seconds if pairs else None,
                        splits if cfg.split_column else None)  # fmt: skip


def split_rows(data: LabelledData, test_fraction: float) -> tuple[list[int], list[int]]:
    """Train and test indices: the data's own split column when it has one, else the hash split."""
    if data.splits is not None:
        test = [i for i, s in enumerate(data.splits) if s == "test"]
        train = [i for i, s in enumerate(data.splits) if s != "test"]
        return train, test
    return split_by_hash(data.split_keys(), test_fraction)


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


def encode_pairs(
    tok: Tokenizer, texts: list[str], pairs: list[str] | None, seq_len: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and segment ids: `[CLS] A [SEP]` (all 0) or `[CLS] A [SEP] B [SEP]` (B and its [SEP] are 1).

    Pairs over `seq_len` lose tokens from the longer side first (BERT's `_truncate_seq_pair`).
    """
    tok = Tokenizer.from_str(tok.to_str())
    tok.enable_truncation(max_length=seq_len, strategy="longest_first")
    tok.no_padding()
    if pairs is None:
        encs = tok.encode_batch(texts, add_special_tokens=True)
    else:
        encs = tok.encode_batch(list(zip(texts, pairs)), add_special_tokens=True)
    return [e.ids for e in encs], [e.type_ids for e in encs]
