"""Labelled task data: read through the corpus readers (bad rows quarantined with reasons), split by hash, encode.

Single texts become `[CLS] text [SEP]`, pairs `[CLS] A [SEP] B [SEP]` with segment ids 0/1 (the
NSP-shaped input, longer side truncated first). SQuAD JSON for extractive QA lives in plm.finetune.qa.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

from plm.config import CorpusSpec, FinetuneSpec
from plm.samples import FETCHED, LABELLED_DEFAULTS, is_sample, resolve_fetched, resolve_sample

if TYPE_CHECKING:
    from plm.corpus.readers import RawRecord

FASTTEXT_PREFIX = "__label__"


LABELLED_REASONS = ("missing_text", "missing_label", "missing_pair", "bad_label")
"""Why a row the corpus readers decoded is still not a labelled example (beside their own reasons,
`undecodable:<encoding>`, `invalid_json`, `too_large`, `bad_columns`, `nul_bytes`, ...): blank or absent
text, label or second text; a `regression` label that is not a finite number."""
EXCERPT_CHARS = 200
"""Characters of a quarantined row kept in its report (bad bytes shown as \\xNN)."""


@dataclass(frozen=True)
class QuarantinedRow:
    """A row of the labelled file that is not an example: where it is and why."""

    position: int
    """The row's index in the file, from 0: non-blank lines (fastText, JSONL) or data rows after the header (CSV, Parquet)."""
    reason: str
    excerpt: str


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    source: Path
    quarantine: list[QuarantinedRow]
    """Every row read that is not an example, with its reason: rows_read = len(texts) + len(quarantine)."""
    encoding: str
    rows_read: int
    pairs: list[str] | None = None
    """Second text of each row for pair tasks, else None."""
    splits: list[str] | None = None
    """Each row's value of `finetune.split_column` (`test` = held out), when the spec names one."""

    @property
    def skipped(self) -> int:
        """Rows read but not kept (the quarantine's length)."""
        return len(self.quarantine)

    def reasons(self) -> dict[str, int]:
        """Quarantined rows per reason, most frequent first."""
        return dict(Counter(row.reason for row in self.quarantine).most_common())

    def summary(self) -> str:
        """One line: rows read, kept and quarantined by reason."""
        why = ", ".join(f"{r} {n}" for r, n in self.reasons().items())
        return (f"{self.source.name}: {self.rows_read} rows read, {len(self.texts)} kept, {self.skipped} quarantined"
                + (f" ({why})" if why else ""))

    def quarantine_table(self) -> dict[str, list[Any]]:
        """The quarantine as columns (position, reason, excerpt), for a tracking table."""
        return {"position": [r.position for r in self.quarantine], "reason": [r.reason for r in self.quarantine],
                "excerpt": [r.excerpt for r in self.quarantine]}

    def split_keys(self) -> list[str]:
        """What the hash split looks at: the text, or both texts of a pair."""
        return self.texts if self.pairs is None else [f"{a}\n{b}" for a, b in zip(self.texts, self.pairs)]


def uses_pairs(cfg: FinetuneSpec) -> bool:
    """Pair classification always reads two texts; regression does when `text_pair_column` is set."""
    return cfg.task_type == "pair_classification" or (cfg.task_type == "regression" and bool(cfg.text_pair_column))


def read_document(path: Path, encoding: str = "auto") -> tuple[str, str]:
    """A whole document (SQuAD JSON is parsed whole) through the corpus readers' streams and sniffing:
    decompressed under the bomb caps, its codec sniffed on a bounded prefix (or `encoding`), decoded strictly."""
    from plm.corpus.readers import Limits, Rejected, detect_encoding, open_binary

    limits = Limits()
    codec = detect_encoding(path, "json", encoding, limits)
    try:
        with open_binary(path, limits) as f:
            data = f.read()
        return data.decode(codec).removeprefix("\ufeff"), codec
    except Rejected as exc:
        raise ValueError(f"finetune.data {path}: {exc.reason}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"finetune.data {path}: undecodable as {codec}: {exc}") from None


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


_READ_AS = {"fasttext": "txt", "csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def _reader_spec(cfg: FinetuneSpec, path: Path, pairs: bool) -> CorpusSpec:
    """How the corpus readers read the labelled file: one record per line or row, the text column as the
    text, label / second text / split column as metadata; CSV comma-separated. `path` was checked against
    the allowed roots by `data_path` (named samples are exempt there), so the reader checks it against itself."""
    fields = [cfg.label_column, *([cfg.text_pair_column] if pairs else []), *([cfg.split_column] if cfg.split_column else [])]
    return CorpusSpec(text_unit="line", jsonl_text_field=cfg.text_column, metadata_fields=list(dict.fromkeys(fields)),
                      csv_delimiter=",", encoding=cfg.encoding, allowed_roots=[str(path)])  # fmt: skip


def _excerpt(raw: str | bytes) -> str:
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")
    return text[:EXCERPT_CHARS]


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v) or not str(v).strip()


def _labelled_rows(cfg: FinetuneSpec, path: Path, pairs: bool) -> Iterator[tuple[RawRecord, str | None, dict[str, Any]]]:
    """(record, text, fields) per row the corpus readers yield (quarantined ones included, text None): the
    fastText line split into label and text, or the record's text and metadata columns."""
    from plm.corpus.readers import read_records

    if cfg.format == "fasttext" and pairs:
        raise ValueError("finetune.format fasttext holds one text per line: use csv, jsonl or parquet for pairs")
    try:
        for rec in read_records(path, _READ_AS[cfg.format], _reader_spec(cfg, path, pairs)):
            if rec.reason is not None:
                yield rec, None, {}
            elif cfg.format == "fasttext":
                head, _, rest = rec.raw.strip().partition(" ")  # type: ignore[union-attr]
                label = head.removeprefix(FASTTEXT_PREFIX) if head.startswith(FASTTEXT_PREFIX) else None
                yield rec, rest, {cfg.label_column: label}
            else:
                yield rec, rec.raw, rec.metadata or {}  # type: ignore[misc]
    except ValueError as exc:  # a missing text column: name the finetune key, not the corpus one
        raise ValueError(f"finetune.data: {exc}".replace("corpus.jsonl_text_field", "finetune.text_column")) from None


def read_labelled(cfg: FinetuneSpec) -> LabelledData:
    """Rows of (text[, text_pair], label) from a fastText, CSV, JSONL or Parquet file (compressed too).

    Read through the corpus readers, streaming: the allowed-roots check before the file is opened,
    decompression under the bomb caps, the bounded line reader, strict decoding. A row that is not an
    example is quarantined with its reason (the readers' own, or LABELLED_REASONS), never dropped silently.
    """
    from plm.corpus.readers import detect_encoding

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
    quarantine: list[QuarantinedRow] = []
    rows_read = 0
    for rec, text, fields in _labelled_rows(cfg, path, pairs):
        rows_read += 1
        label, second = fields.get(cfg.label_column), fields.get(cfg.text_pair_column) if pairs else None
        reason = rec.reason or _why_not(cfg, text, label, second, pairs)
        if reason is not None:
            if reason == "missing_field":  # the corpus readers' name for a record without a string text
                reason = "missing_text"
            quarantine.append(QuarantinedRow(rec.position, reason, _excerpt(rec.raw)))
            continue
        texts.append(" ".join(str(text).split()))
        labels.append(str(label).strip())
        if pairs:
            seconds.append(" ".join(str(second).split()))
        if cfg.split_column:
            split = fields.get(cfg.split_column)
            splits.append(str(split).strip() if split is not None else "")
    encoding = "parquet" if cfg.format == "parquet" else detect_encoding(path, "txt", cfg.encoding)
    data = LabelledData(texts, labels, path, quarantine, encoding, rows_read, seconds if pairs else None,
                        splits if cfg.split_column else None)  # fmt: skip
    assert data.rows_read == len(data.texts) + data.skipped, "labelled rows lost between reading and quarantine"
    if not texts:
        raise ValueError(f"finetune.data: no labelled rows in {path} (format {cfg.format}): {data.summary()}")
    if cfg.split_column and "test" not in splits:
        raise ValueError(f"finetune.split_column: no row of {path} has {cfg.split_column}=test")
    return data


def _why_not(cfg: FinetuneSpec, text: object, label: object, second: object, pairs: bool) -> str | None:
    """The LABELLED_REASONS reason a decoded row is not an example, or None."""
    if _blank(text):
        return "missing_text"
    if _blank(label):
        return "missing_label"
    if pairs and _blank(second):
        return "missing_pair"
    if cfg.task_type == "regression":
        try:
            value = float(str(label))
        except ValueError:
            return "bad_label"
        if value != value or value in (float("inf"), float("-inf")):
            return "bad_label"
    return None


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
