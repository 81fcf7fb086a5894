"""Encode the lake to token ids: per document, one int32 array per sentence (document boundaries kept).

Encoding is batched (`encode_batch`, parallel in Rust threads) over Arrow record batches, so memory
stays bounded by one batch. With `with_words`, each token also keeps its pre-tokenizer word index
and the character offset where it starts, which whole-word (and Korean morpheme) masking needs.

Encoded documents can be stored as Parquet shards (`write_encoded` / `read_encoded`):
doc_id string, lang string, input_ids list<list<int32>>, and, when words were kept,
word_ids / starts list<list<int32>> and texts list<string> (null otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Encoding, Tokenizer

from plm.tokenizer.train import lake_batches
from plm.tokenizer.wordcache import WordCacheEncoder
from plm.tracker import Progress, no_progress

DOCS_PER_BATCH = 4096  # documents per Arrow batch: one parallel encode_batch call each


@dataclass
class EncodedDoc:
    doc_id: str
    sentences: list[np.ndarray]
    """int32 token ids per sentence, no special tokens."""
    word_ids: list[np.ndarray] | None = None
    """Per sentence, int32 pre-tokenizer word index of each token (with_words only)."""
    starts: list[np.ndarray] | None = None
    """Per sentence, int32 character offset where each token's text starts, past a leading space (with_words only)."""
    texts: list[str] | None = None
    """The sentences themselves (with_words only)."""
    lang: str = ""
    """Document language from the lake (`ko`, `en`), empty when unknown."""


def encode_texts(tok: Tokenizer, texts: list[str], fast: WordCacheEncoder | None = None) -> list[np.ndarray]:
    """Token ids per text, no special tokens: through `fast` (BERT-style tokenizers) or batched in Rust threads."""
    if fast is not None:
        return fast.encode(texts)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets computed: faster
    return [np.asarray(e.ids, dtype=np.int32) for e in encode(texts, add_special_tokens=False)]


def _words_and_starts(encs: list[Encoding], texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per sentence, each token's word index and start offset, a start on a leading space moved past it.

    Byte-level (" fox", or a bare " " before "fox") and Metaspace ("▁fox", "▁") tokens carry the
    space before their word; kiwipiepy's morpheme starts point at the first letter, so the start
    moves onto that letter. Done once per batch over the joined text (no per-sentence numpy work).
    """
    words = [np.asarray(e.word_ids, dtype=np.int32) for e in encs]
    starts = [np.asarray(e.offsets, dtype=np.int32).reshape(-1, 2)[:, 0] for e in encs]
    if not starts:
        return words, starts
    flat = np.concatenate(starts)
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))  # +1: the joiner
    base = np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), [len(s) for s in starts])
    is_space = np.frombuffer("\n".join(texts).encode("utf-32-le"), dtype=np.uint32) == ord(" ")
    flat = flat + is_space[np.minimum(base + flat, len(is_space) - 1)].astype(np.int32) if len(is_space) else flat
    return words, np.split(flat, np.cumsum([len(s) for s in starts])[:-1])


def encode_documents(
    tok: Tokenizer,
    files: list[Path],
    split: str,
    progress: Progress = no_progress,
    with_words: bool = False,
) -> list[EncodedDoc]:
    """All documents of one split, in lake order, with empty sentences dropped.

    `with_words` also fills `word_ids`, `starts` and `texts` (needed by whole-word masking).
    """
    docs: list[EncodedDoc] = []
    fast = None if with_words else WordCacheEncoder.for_tokenizer(tok)
    for batch in lake_batches(files, split, ["doc_id", "sentences", "lang"], DOCS_PER_BATCH):
        sentences = batch.column("sentences")
        lengths = pc.list_value_length(sentences).fill_null(0).to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        texts = pc.list_flatten(sentences).to_pylist()
        langs = batch.column("lang").to_pylist() if "lang" in batch.schema.names else [""] * batch.num_rows
        doc_ids = batch.column("doc_id").to_pylist()
        if with_words:
            encs = tok.encode_batch(texts, add_special_tokens=False)
            all_words, all_starts = _words_and_starts(encs, texts)
            all_ids = [np.asarray(e.ids, dtype=np.int32) for e in encs]
            for i, doc_id in enumerate(doc_ids):
                keep = [j for j in range(offsets[i], offsets[i + 1]) if len(all_ids[j])]
                if keep:
                    docs.append(
                        EncodedDoc(
                            doc_id,
                            [all_ids[j] for j in keep],
                            word_ids=[all_words[j] for j in keep],
                            starts=[all_starts[j] for j in keep],
                            texts=[texts[j] for j in keep],
                            lang=langs[i] or "",
                        )
                    )
        else:
            flat = encode_texts(tok, texts, fast)
            for i, doc_id in enumerate(doc_ids):
                sents = [s for s in flat[offsets[i] : offsets[i + 1]] if len(s)]
                if sents:
                    docs.append(EncodedDoc(doc_id, sents, lang=langs[i] or ""))
        progress(f"encode {split}", len(docs), None)
    return docs


# ---- Parquet shards -----------------------------------------------------------------------------

ENCODED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("lang", pa.string()),
        ("input_ids", pa.list_(pa.list_(pa.int32()))),
        ("word_ids", pa.list_(pa.list_(pa.int32()))),
        ("starts", pa.list_(pa.list_(pa.int32()))),
        ("texts", pa.list_(pa.string())),
    ]
)


def _offsets(lengths: Sequence[int]) -> pa.Array:
    out = np.zeros(len(lengths) + 1, dtype=np.int32)
    out[1:] = np.cumsum(lengths, dtype=np.int64)
    return pa.array(out)


def _nested_ints(rows: list[list[np.ndarray] | None]) -> pa.ListArray:
    """list<list<int32>> built from offsets and one concatenated buffer (no per-token Python)."""
    present = [r if r is not None else [] for r in rows]
    inner = [a for r in present for a in r]
    values = np.concatenate(inner).astype(np.int32) if inner else np.zeros(0, dtype=np.int32)
    sentences = pa.ListArray.from_arrays(_offsets([len(a) for a in inner]), pa.array(values, pa.int32()))
    mask = pa.array([r is None for r in rows]) if any(r is None for r in rows) else None
    return pa.ListArray.from_arrays(_offsets([len(r) for r in present]), sentences, mask=mask)


def _encoded_table(docs: Sequence[EncodedDoc]) -> pa.Table:
    rows = list(docs)
    texts = pa.array([d.texts for d in rows], pa.list_(pa.string()))
    columns = [
        pa.array([d.doc_id for d in rows], pa.string()),
        pa.array([d.lang for d in rows], pa.string()),
        _nested_ints([d.sentences for d in rows]),
        _nested_ints([d.word_ids for d in rows]),
        _nested_ints([d.starts for d in rows]),
        texts,
    ]
    return pa.Table.from_arrays(columns, schema=ENCODED_SCHEMA)


def write_encoded(docs: Sequence[EncodedDoc], out_dir: Path, rows_per_shard: int = 10_000) -> list[Path]:
    """Write documents as `part-00000.parquet`, ... of `rows_per_shard` documents each (atomic per file)."""
    if rows_per_shard < 1:
        raise ValueError("rows_per_shard must be >= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard, begin in enumerate(range(0, len(docs), rows_per_shard)):
        path = out_dir / f"part-{shard:05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(_encoded_table(docs[begin : begin + rows_per_shard]), tmp)
        os.replace(tmp, path)  # a shard present is a shard complete
        paths.append(path)
    return paths


def _split_nested(column: pa.ChunkedArray) -> list[list[np.ndarray] | None]:
    array = column.combine_chunks()
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    doc_offsets = array.offsets.to_numpy()
    inner = array.values
    sent_offsets = inner.offsets.to_numpy()
    values = inner.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    # `.offsets` index the unsliced `.values`; slices stay views into one buffer.
    sentences = [values[sent_offsets[j] : sent_offsets[j + 1]] for j in range(len(sent_offsets) - 1)]
    return [sentences[doc_offsets[i] : doc_offsets[i + 1]] if valid[i] else None for i in range(len(array))]


def read_encoded(paths: Sequence[Path]) -> list[EncodedDoc]:
    """Documents written by `write_encoded`, in file order."""
    docs: list[EncodedDoc] = []
    for path in paths:
        table = pq.read_table(path)
        ids = _split_nested(table.column("input_ids"))
        words = _split_nested(table.column("word_ids"))
        starts = _split_nested(table.column("starts"))
        texts = table.column("texts").to_pylist()
        for i, (doc_id, lang) in enumerate(
            zip(table.column("doc_id").to_pylist(), table.column("lang").to_pylist(), strict=True)
        ):
            docs.append(EncodedDoc(doc_id, ids[i] or [], words[i], starts[i], texts[i], lang or ""))
    return docs


def encode_file(path: Path, work: dict[str, object]) -> list[EncodedDoc]:
    """One lake file's documents of `work["split"]`, encoded: a shard job (`plm.objectives.shardrun`) run where
    the tokenizer is not at hand, so `work` carries it as JSON. In file order, the concatenation over the
    lake's files equals `encode_documents` over all of them."""
    tok = Tokenizer.from_str(work["tokenizer"])  # type: ignore[arg-type]
    return encode_documents(tok, [path], work["split"], with_words=bool(work["with_words"]))  # type: ignore[arg-type]
