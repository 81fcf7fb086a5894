"""Train a WordPiece tokenizer with HF `tokenizers`, streaming sentences from the lake's Arrow batches.

Accents are never stripped: `BertNormalizer(strip_accents=None)` follows `lowercase` and would
decompose Hangul syllables into jamo, so `strip_accents=False` is set explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from plm.config import TokenizerSpec
from plm.tracker import Progress, no_progress

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))


def build_tokenizer(cfg: TokenizerSpec) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer and its trainer for `cfg.kind`."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    unicode_form = normalizers.NFC() if cfg.normalization == "NFC" else normalizers.NFKC()
    tok.normalizer = normalizers.Sequence(
        [
            unicode_form,
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=cfg.lowercase
            ),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    return tok, trainer


def _with_post_processor(tok: Tokenizer) -> Tokenizer:
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def iter_sentences(files: list[Path], split: str = "train", batch_size: int = 2048) -> Iterator[list[str]]:
    """Batches of sentences of one split, straight from the lake's Parquet row groups."""
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["sentences", "split"]):
            kept = batch.filter(pc.equal(batch.column("split"), split))
            if kept.num_rows:
                yield pc.list_flatten(kept.column("sentences")).to_pylist()


def train_tokenizer(
    cfg: TokenizerSpec, files: list[Path], out_path: Path, progress: Progress = no_progress
) -> Tokenizer:
    """Train on the train split of the lake files and save `tokenizer.json` to `out_path`."""
    tok, trainer = build_tokenizer(cfg)
    done = 0

    def batches() -> Iterator[list[str]]:
        nonlocal done
        for batch in iter_sentences(files, "train"):
            done += len(batch)
            progress("tokenizer: sentences read", done, None)
            yield batch

    tok.train_from_iterator(batches(), trainer=trainer)
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ValueError("tokenizer training produced no vocabulary: is the train split empty?")
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:
            raise AssertionError(f"special token {token} must have id {i}")
    tok = _with_post_processor(tok)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_path))
    return tok


def evaluate_tokenizer(tok: Tokenizer, files: list[Path], split: str = "validation") -> dict[str, float]:
    """Fertility (tokens per whitespace word), unknown-token rate and bytes per token on one split."""
    words = tokens = unknown = nbytes = 0
    for batch in iter_sentences(files, split):
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            tokens += len(enc.ids)
            unknown += enc.ids.count(UNK_ID)
        words += sum(len(s.split()) for s in batch)
        nbytes += sum(len(s.encode()) for s in batch)
    if tokens == 0:
        return {"vocab_size": float(tok.get_vocab_size())}
    return {
        "vocab_size": float(tok.get_vocab_size()),
        "fertility": tokens / max(words, 1),
        "unk_rate": unknown / tokens,
        "bytes_per_token": nbytes / tokens,
        f"{split}_tokens": float(tokens),
    }


def load_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))
