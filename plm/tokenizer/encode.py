"""Encode the lake to token ids: per document, one int32 array per sentence (document boundaries kept)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from plm.tracker import Progress, no_progress


@dataclass
class EncodedDoc:
    doc_id: str
    sentences: list[np.ndarray]  # int32 token ids per sentence, no special tokens


def encode_texts(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Batched, parallel (Rust threads) encoding without special tokens."""
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    return [np.asarray(e.ids, dtype=np.int32) for e in encode(texts, add_special_tokens=False)]


def encode_documents(
    tok: Tokenizer, files: list[Path], split: str, progress: Progress = no_progress
) -> list[EncodedDoc]:
    """All documents of one split, in lake order, with empty sentences dropped."""
    docs: list[EncodedDoc] = []
    for path in files:
        table = pq.read_table(path, columns=["doc_id", "sentences", "split"])
        table = table.filter(pc.equal(table.column("split"), split))
        if not table.num_rows:
            continue
        lengths = pc.list_value_length(table.column("sentences")).to_numpy(zero_copy_only=False)
        flat = encode_texts(tok, pc.list_flatten(table.column("sentences")).to_pylist())
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for i, doc_id in enumerate(table.column("doc_id").to_pylist()):
            sents = [s for s in flat[offsets[i] : offsets[i + 1]] if len(s)]
            if sents:
                docs.append(EncodedDoc(doc_id, sents))
        progress(f"encode {split}", len(docs), None)
    return docs
