"""Shared small assets for the fine-tuning tests: a WordPiece tokenizer trained on the Lee corpus, a
random debug-size BERT model dir matching it, and a word2vec folder in plm's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plm.config import TokenizerSpec
from plm.models.bert import BertConfig, BertForPreTraining
from plm.train.engine import save_model_dir

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "tasks"
SQUAD = ASSETS / "lee_squad.json"
PAIRS = ASSETS / "lee_pairs.csv"


def lee_lines() -> list[str]:
    from plm.samples import resolve_sample

    return resolve_sample("sample:lee")[0].read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    from plm.tokenizer.train import _with_post_processor, build_tokenizer

    tok, trainer = build_tokenizer(TokenizerSpec(vocab_size=1500, lowercase=True))
    extra = ["zebra codeword what is the"] * 300  # the synthetic QA words are whole tokens
    tok.train_from_iterator(lee_lines() + extra, trainer=trainer)
    tok = _with_post_processor(tok)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def tiny_config(vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                      max_position=64)  # fmt: skip


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, tokenizer_path) -> Path:
    from plm.tokenizer.train import load_tokenizer

    cfg = tiny_config(load_tokenizer(tokenizer_path).get_vocab_size())
    torch.manual_seed(5)
    return save_model_dir(BertForPreTraining(cfg), cfg.to_dict(), tmp_path_factory.mktemp("bert") / "model")


def write_word2vec(out: Path, words: list[str], vectors: np.ndarray) -> Path:
    """A word2vec folder through part C's writer (vectors.safetensors + vocab.parquet + config.json)."""
    from plm.models.word2vec import Word2Vec
    from plm.objectives.skipgram import Vocab
    from plm.train.word2vec import save_word_vectors

    model = Word2Vec(len(words), vectors.shape[1])
    with torch.no_grad():
        model.in_embed.weight.copy_(torch.from_numpy(vectors))
    vocab = Vocab(words, np.arange(len(words), 0, -1, dtype=np.int64))
    return save_word_vectors(out, model, vocab, lowercase=True)


def write_split_jsonl(path: Path, rows: list[dict]) -> Path:
    """Labelled jsonl rows with a `split` column: every fourth row is a test row."""
    import json

    with path.open("w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({**row, "split": "test" if i % 4 == 0 else "train"}) + "\n")
    return path


def stood_in_upstream(tmp_path: Path, tokenizer: Path, model_dir: Path, arch: str, kind: str) -> tuple:
    """(tokenizer, pretrain, ingest) StageResults standing in for upstream stages around a ready model folder;
    each has a manifest, since upstream outputs are logged as MLflow inputs by their manifest."""
    import shutil

    from plm import stages

    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    shutil.copy(tokenizer, tok_dir / "tokenizer.json")
    tok = stages.StageResult("tokenizer", "t0", tok_dir, False, 0.0)
    pre = stages.StageResult("pretrain", "p0", model_dir.parent, False, 0.0,
                             output=stages.pretrain.Output(model_dir=model_dir.name, arch=arch, kind=kind))
    ing = stages.StageResult("ingest", "i0", tmp_path / "ing", False, 0.0, output=stages.ingest.Output(
        snapshot_id="s0", lake_files=[], reasons={}, reason_table={}, processed_sources=0))
    for stood_in in (tok, pre, ing):
        stood_in.path.mkdir(exist_ok=True)
        if not (stood_in.path / "manifest.json").exists():
            (stood_in.path / "manifest.json").write_text("{}")
    return tok, pre, ing
