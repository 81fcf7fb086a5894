"""Training fastText (skip-gram / CBOW over words + hashed character n-grams) and its file formats.

Training is word2vec's loop (`plm.train.word2vec.train_word2vec`: the same example shards, fresh
draws per later epoch, linear learning-rate decay over words) with `plm.models.fasttext.FastText`
as the model; skip-gram batches keep each center's pairs together so its n-grams are expanded once.

Formats:
  * `.bin`: fastText's own binary model (version 12: args, dictionary, input matrix of V + buckets
    rows, output matrix), what `fasttext.load_model` and `gensim.models.fasttext.load_facebook_model`
    read; both recompute the n-gram ids from minn/maxn/bucket with the same hash, so the rows line up.
    A `subword="jamo"` model writes its words jamo-decomposed (`export_words`): fastText's tools then
    take the n-grams of the same jamo strings, so the file stays faithful for words given in that form.
  * `.vec`: the word2vec text format of the vocabulary's word vectors (fastText's `.vec`).
  * plm's folder: `vectors.safetensors` (`in_embed` = word vectors, `input` = the whole input matrix,
    `out_embed`), `vocab.parquet` and `config.json` (`arch: fasttext`, minn, maxn, buckets, subword, word_unit).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plm.config import FastTextSpec, SkipgramSpec
from plm.models.fasttext import FastText
from plm.objectives.skipgram import VOCAB_FILE, Vocab, split_words_batch
from plm.objectives.subwords import ngram_buckets, subword_form, subword_table
from plm.tracker import Progress, Tracker, no_progress
from plm.train.word2vec import CONFIG_FILE, VECTORS_FILE, Word2VecPredictor, Word2VecResult, train_word2vec

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
LOSS_NS, MODEL_CBOW, MODEL_SG = 2, 1, 2  # fastText's enums (args.h: loss_name, model_name)
LR_UPDATE_RATE = 100  # fastText's default; stored, not used by the loaders


def build_fasttext(cfg: FastTextSpec, words: Sequence[str], cbow: bool) -> FastText:
    """The model with the subword table of `words` (n-grams hashed into `cfg.buckets` buckets)."""
    maxn = cfg.maxn if cfg.buckets > 0 else 0
    ids, offsets = subword_table(words, cfg.minn, maxn, cfg.buckets, cfg.subword)
    return FastText(len(words), cfg.buckets, cfg.dim, torch.from_numpy(ids), torch.from_numpy(offsets), cbow=cbow)


def train_fasttext(
    cfg: FastTextSpec,
    sg: SkipgramSpec,
    vocab: Vocab,
    sentences: Sequence[np.ndarray] | None = None,
    shards: Sequence[Path] = (),
    seed: int = 1234,
    tracker: Tracker | None = None,
    progress: Progress = no_progress,
) -> Word2VecResult:
    """fastText for `cfg.epochs` epochs on the skip-gram (or CBOW, `sg.cbow`) examples; vectors = word vectors."""
    model = build_fasttext(cfg, vocab.words, sg.cbow)
    return train_word2vec(cfg, sg, vocab, sentences, shards, seed, tracker, progress, model=model)  # type: ignore[arg-type]


# ---- fastText's binary format ---------------------------------------------------------------------


def export_words(words: Sequence[str], subword: str) -> list[str]:
    """The words as the `.bin` / `.vec` hold them: themselves (`char`) or jamo-decomposed (`jamo`), one each."""
    out = [subword_form(w, subword) for w in words]
    if len(set(out)) != len(out):
        raise ValueError(f"fastText export: two words have the same {subword} form")
    return out


@dataclass
class FastTextBin:
    """What a fastText `.bin` holds (unsupervised models)."""

    words: list[str]
    counts: np.ndarray  # int64
    input: np.ndarray  # (V + buckets, D) float32
    output: np.ndarray  # (V, D) float32
    args: dict[str, Any]


def save_fasttext_bin(
    path: Path, words: Sequence[str], counts: np.ndarray, input_matrix: np.ndarray, output_matrix: np.ndarray,
    *, minn: int, maxn: int, buckets: int, window: int, epochs: int, min_count: int, negatives: int,
    subsample: float, cbow: bool,
) -> Path:  # fmt: skip
    """Write fastText's binary model (`FastText::saveModel`, version 12), atomically."""
    inp = np.ascontiguousarray(input_matrix, dtype="<f4")
    out = np.ascontiguousarray(output_matrix, dtype="<f4")
    if inp.shape[0] != len(words) + buckets or out.shape[0] != len(words) or inp.shape[1] != out.shape[1]:
        raise ValueError(f"fastText .bin: input {inp.shape} / output {out.shape} for {len(words)} words + {buckets}")
    if any(not w or "\0" in w or any(c.isspace() for c in w) for w in words):
        raise ValueError("fastText .bin cannot hold empty words or words with whitespace / NUL")
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    dim = inp.shape[1]
    with open(tmp, "wb") as f:
        f.write(struct.pack("<2i", FASTTEXT_MAGIC, FASTTEXT_VERSION))
        f.write(struct.pack("<12i", dim, window, epochs, min_count, negatives, 1, LOSS_NS,
                            MODEL_CBOW if cbow else MODEL_SG, buckets, minn, maxn, LR_UPDATE_RATE))  # fmt: skip
        f.write(struct.pack("<d", subsample))
        counts = np.asarray(counts, dtype=np.int64)
        f.write(struct.pack("<3i", len(words), len(words), 0))  # size, nwords, nlabels
        f.write(struct.pack("<2q", int(counts.sum()), -1))  # ntokens, pruneidx_size (-1: never pruned)
        for word, count in zip(words, counts.tolist(), strict=True):
            f.write(word.encode("utf-8") + b"\0" + struct.pack("<qb", count, 0))  # type 0 = word
        f.write(struct.pack("<?", False))  # quant_
        f.write(struct.pack("<2q", *inp.shape))
        f.write(inp.tobytes())
        f.write(struct.pack("<?", False))  # qout
        f.write(struct.pack("<2q", *out.shape))
        f.write(out.tobytes())
    os.replace(tmp, path)
    return path


def load_fasttext_bin(path: Path) -> FastTextBin:
    """Read a `.bin` of `save_fasttext_bin` (or fastText's own, unsupervised and unquantised)."""
    data = Path(path).read_bytes()
    magic, version = struct.unpack_from("<2i", data, 0)
    if magic != FASTTEXT_MAGIC or version > FASTTEXT_VERSION:
        raise ValueError(f"{path}: not a fastText .bin (magic {magic}, version {version})")
    names = ("dim", "ws", "epoch", "min_count", "neg", "word_ngrams", "loss", "model", "bucket", "minn", "maxn",
             "lr_update_rate")  # fmt: skip
    args = dict(zip(names, struct.unpack_from("<12i", data, 8), strict=True))
    args["t"] = struct.unpack_from("<d", data, 56)[0]
    size, nwords, nlabels = struct.unpack_from("<3i", data, 64)
    _, pruneidx = struct.unpack_from("<2q", data, 76)
    if nlabels:
        raise ValueError(f"{path}: a supervised fastText model")
    pos, words, counts = 92, [], []
    for _ in range(size):
        end = data.index(b"\0", pos)
        words.append(data[pos:end].decode("utf-8"))
        count, _kind = struct.unpack_from("<qb", data, end + 1)
        counts.append(count)
        pos = end + 10
    pos += 8 * max(pruneidx, 0)
    matrices = []
    for _ in range(2):
        (quant,) = struct.unpack_from("<?", data, pos)
        if quant:
            raise ValueError(f"{path}: quantised fastText models are not supported")
        rows, dim = struct.unpack_from("<2q", data, pos + 1)
        pos += 17
        matrices.append(np.frombuffer(data, dtype="<f4", count=rows * dim, offset=pos).reshape(rows, dim).copy())
        pos += 4 * rows * dim
    return FastTextBin(words, np.asarray(counts, dtype=np.int64), matrices[0], matrices[1], args)


# ---- plm's model folder ---------------------------------------------------------------------------


def save_fasttext_folder(
    model_dir: Path, model: FastText, vocab: Vocab, cfg: FastTextSpec, lowercase: bool, word_unit: str = "eojeol"
) -> Path:
    """`vectors.safetensors` (in_embed = word vectors, input, out_embed) + `vocab.parquet` + `config.json`."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=model_dir.name + ".", suffix=".tmp", dir=model_dir.parent))
    try:
        tensors = {"in_embed": model.word_vectors().contiguous(), "input": model.in_embed.weight.detach().contiguous(),
                   "out_embed": model.out_embed.weight.detach().contiguous()}  # fmt: skip
        save_file(tensors, str(tmp / VECTORS_FILE), metadata={"format": "pt"})
        vocab.save(tmp / VOCAB_FILE)
        config = {"arch": "fasttext", "vocab_size": len(vocab), "dim": model.dim, "cbow": model.cbow,
                  "lowercase": lowercase, "minn": cfg.minn, "maxn": cfg.maxn if cfg.buckets > 0 else 0,
                  "buckets": cfg.buckets, "subword": cfg.subword, "word_unit": word_unit}  # fmt: skip
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


@dataclass
class NgramVectors:
    """fastText's out-of-vocabulary rule on its own: the n-gram bucket rows (`buckets`, D) and how a word is cut
    into n-grams (minn, maxn, the `<` `>` markers and FNV-1a hashing of `plm.objectives.subwords`, over the word
    itself or its jamo). A fine-tuned word-vector classifier keeps one to give served words their vectors."""

    ngrams: np.ndarray  # (buckets, D), float32 (or float16: rows are widened to float32 before the mean)
    minn: int
    maxn: int
    subword: str = "char"

    def vector(self, word: str) -> np.ndarray | None:
        """The mean of the word's n-gram rows (float32); None when it has none (maxn 0, or no buckets)."""
        buckets = ngram_buckets(word, self.minn, self.maxn, len(self.ngrams), self.subword)
        if not buckets:
            return None
        return self.ngrams[np.asarray(buckets)].astype(np.float32, copy=False).mean(axis=0)


class SubwordVectors:
    """Word vectors with fastText's out-of-vocabulary rule: an unseen word is the mean of its n-gram rows."""

    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        self.config = json.loads((model_dir / CONFIG_FILE).read_text())
        if self.config.get("arch") != "fasttext":
            raise ValueError(f"{model_dir}: not a fastText model (arch={self.config.get('arch')!r})")
        weights = load_file(str(model_dir / VECTORS_FILE))
        self.vectors, self.input = weights["in_embed"].numpy(), weights["input"].numpy()
        self.words = Vocab.load(model_dir / VOCAB_FILE).words
        self.index = {w: i for i, w in enumerate(self.words)}
        self.lowercase = bool(self.config.get("lowercase", True))
        self.word_unit = self.config.get("word_unit", "eojeol")
        c = self.config
        if len(self.input) != len(self.words) + c["buckets"]:
            raise ValueError(f"{model_dir}: input has {len(self.input)} rows for {len(self.words)} words + {c['buckets']} buckets")
        self.ngrams = NgramVectors(self.input[len(self.words) :], c["minn"], c["maxn"], c.get("subword", "char"))

    def vector(self, word: str) -> np.ndarray | None:
        """The word's vector; None for an unseen word without n-grams (maxn 0, or no buckets)."""
        i = self.index.get(word)
        if i is not None:
            return self.vectors[i]
        return self.ngrams.vector(word)


class FastTextPredictor(Word2VecPredictor):
    """Serving: `text` in; the mean word vector (`embedding`, unseen words from their n-grams) and the rate
    of words outside the vocabulary (`oov_rate`) out."""

    def __init__(self, model_dir: Path) -> None:
        self.sub = SubwordVectors(model_dir)
        self.vectors, self.index, self.lowercase = self.sub.vectors, self.sub.index, self.sub.lowercase
        self.word_unit = self.sub.word_unit

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path | None = None) -> FastTextPredictor:
        return cls(model_dir)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        oov = np.zeros(len(texts))
        for row, tokens in enumerate(split_words_batch(texts, self.lowercase, self.word_unit)):
            found = [v for v in map(self.sub.vector, tokens) if v is not None]
            if found:
                out[row] = np.mean(found, axis=0)
            oov[row] = sum(t not in self.index for t in tokens) / len(tokens) if tokens else 0.0
        return out, oov
