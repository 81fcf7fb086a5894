"""Training word2vec (SGNS / CBOW) with hand-written sparse SGD, and its file formats.

Data: epoch 1 replays the example shards the examples stage wrote and gated (when given); every
later epoch draws fresh subsampling, windows and negatives from the same vectorised generator
(`plm.objectives.skipgram.skipgram_shard`) with its own seed, as gensim re-samples each epoch
(`Word2VecSpec.regenerate=False` replays the shards instead). Examples are shuffled within each
chunk of about `objectives.skipgram.shard_size` examples, so a batch mixes topics.

Update: `Word2Vec.sgd_step`, the analytic batch gradient scattered with `index_add_` (no autograd,
no optimizer state, no dense gradient), learning rate decaying linearly from `lr` to `min_lr` over
all words of all epochs, as word2vec does.

Formats: the word2vec C text and binary formats (what `gensim.models.KeyedVectors
.load_word2vec_format` reads), and plm's own folder (`vectors.safetensors` + `vocab.parquet` +
`config.json`) that the registry, the predictor and the fine-tune `embeddings` strategy load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from plm.config import WORD_VECTOR_ARCHS, SkipgramSpec, Word2VecSpec
from plm.models.word2vec import Word2Vec
from plm.objectives.skipgram import (
    OBJECTIVE_CODE, VOCAB_FILE, NegativeSampler, Vocab, flatten, keep_probability, noise_distribution, plan_shards,
    read_shard_stats, skipgram_shard, split_words_batch,
)  # fmt: skip
from plm.tracker import NullTracker, Progress, Tracker, no_progress

VECTORS_FILE = "vectors.safetensors"
CONFIG_FILE = "config.json"
LOSS_EVERY = 10
EPOCH_SEED = 1000  # epoch e >= 2 draws from default_rng([seed, 7, EPOCH_SEED + e, chunk]), not a shard stream


@dataclass
class Batches:
    """One chunk of examples as int64 tensors (CBOW: `inputs` flat contexts with `offsets`)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    negatives: torch.Tensor
    offsets: torch.Tensor | None
    words: int  # raw corpus words this chunk covers (for the learning-rate schedule and words/s)

    def __len__(self) -> int:
        return len(self.targets)

    def slice(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Examples lo:hi as (inputs, targets, negatives, offsets)."""
        if self.offsets is None:
            return self.inputs[lo:hi], self.targets[lo:hi], self.negatives[lo:hi], None
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        return self.inputs[a:b], self.targets[lo:hi], self.negatives[lo:hi], self.offsets[lo : hi + 1] - a


@dataclass
class Word2VecResult:
    words: list[str]
    vectors: np.ndarray  # (V, D) float32, the input embeddings
    model: Word2Vec
    metrics: dict[str, float] = field(default_factory=dict)
    """train_loss (mean per example, last log window), words, pairs, updates, words_per_s, pairs_per_s, seconds."""
    model_dir: Path | None = None


# ---- examples -------------------------------------------------------------------------------------


def _as_batches(
    center: np.ndarray, context: np.ndarray, negatives: np.ndarray, offsets: np.ndarray | None, words: int,
    rng: np.random.Generator | None, grouped: bool = False,
) -> Batches:  # fmt: skip
    """Skip-gram: inputs = centers, targets = contexts; CBOW: inputs = contexts, targets = centers. Shuffled by rng.

    `grouped` (skip-gram): runs of pairs with the same center (a center's window, in generation order)
    are shuffled as wholes and stay together, so a batch holds few distinct centers (fastText's
    n-gram expansion is paid once per center, not once per pair).
    """
    n = len(center)
    if grouped and offsets is None and rng is not None and n:
        starts = np.flatnonzero(np.r_[True, center[1:] != center[:-1]])
        lengths = np.diff(np.r_[starts, n])
        perm = rng.permutation(len(starts))
        firsts = np.cumsum(lengths[perm]) - lengths[perm]
        order = np.repeat(starts[perm] - firsts, lengths[perm]) + np.arange(n)
    else:
        order = rng.permutation(n) if rng is not None else np.arange(n)
    if offsets is None:
        inputs, targets, offs = center[order], context[order], None
    else:
        lengths = np.diff(offsets)[order]
        offs = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offs[1:])
        # Position of every context word of the permuted rows in the original flat array.
        gather = np.repeat(offsets[:-1][order] - offs[:-1], lengths) + np.arange(offs[-1])
        inputs, targets = context[gather], center[order]
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return Batches(to(inputs), to(targets), to(negatives[order]), None if offs is None else to(offs), words)


def read_shard(path: Path, rng: np.random.Generator | None = None, grouped: bool = False) -> Batches:
    """One example shard of the examples stage (skip-gram or CBOW), its raw word count from its metadata."""
    table = pq.read_table(path)
    center = table.column("center").to_numpy()
    negatives = table.column("negatives").combine_chunks().flatten().to_numpy().reshape(len(center), -1)
    ctx_col = table.column("context").combine_chunks()
    if hasattr(ctx_col, "offsets"):  # CBOW: list<int32>
        offsets = ctx_col.offsets.to_numpy().astype(np.int64)
        context, offsets = ctx_col.flatten().to_numpy(), offsets - offsets[0]
    else:
        context, offsets = ctx_col.to_numpy(), None
    return _as_batches(center, context, negatives, offsets, read_shard_stats(path).tokens, rng, grouped)


def generate_chunks(
    sentences: Sequence[np.ndarray], vocab: Vocab, sg: SkipgramSpec, seed: int, epoch: int, grouped: bool = False
) -> Iterator[Batches]:
    """A fresh epoch of examples from encoded sentences, chunk by chunk (about `sg.shard_size` each)."""
    keep_prob = keep_probability(vocab.counts, sg.subsample)
    sampler = NegativeSampler(noise_distribution(vocab.counts))
    ids, offsets = flatten(sentences)
    bounds = plan_shards(ids, offsets, keep_prob, sg)
    for chunk in range(len(bounds) - 1):
        first, last = bounds[chunk], bounds[chunk + 1]
        if first == last:
            continue
        rng = np.random.default_rng([seed, OBJECTIVE_CODE, EPOCH_SEED + epoch, chunk])
        ex = skipgram_shard(ids[offsets[first] : offsets[last]], np.diff(offsets[first : last + 1]), keep_prob,
                            sampler, sg, rng)  # fmt: skip
        yield _as_batches(ex.center, ex.context, ex.negatives,
                          None if ex.context_offsets is None else ex.context_offsets.astype(np.int64),
                          ex.stats.tokens, rng, grouped)  # fmt: skip


# ---- training -------------------------------------------------------------------------------------


def train_word2vec(
    cfg: Word2VecSpec,
    sg: SkipgramSpec,
    vocab: Vocab,
    sentences: Sequence[np.ndarray] | None = None,
    shards: Sequence[Path] = (),
    seed: int = 1234,
    tracker: Tracker | None = None,
    progress: Progress = no_progress,
    model: Any = None,
) -> Word2VecResult:
    """Train SGNS (or CBOW when `sg.cbow`) for `cfg.epochs` epochs; see the module docstring for the data.

    Epoch 1 uses `shards` when given, else examples generated from `sentences`; later epochs are
    generated from `sentences` (`cfg.regenerate`) or replay `shards`. Same seed, same vectors.
    `model`: another model with the same `sgd_step` (fastText: `plm.models.fasttext.FastText`, whose
    skip-gram batches keep each center's pairs together); its `word_vectors()` are the result's vectors.
    """
    tracker = tracker or NullTracker()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, sg, vocab, sentences, shards, seed, tracker, progress, model)
    finally:
        torch.set_num_threads(threads)


def _train(
    cfg: Word2VecSpec, sg: SkipgramSpec, vocab: Vocab, sentences: Sequence[np.ndarray] | None, shards: Sequence[Path],
    seed: int, tracker: Tracker, progress: Progress, model: Any = None,
) -> Word2VecResult:  # fmt: skip
    if not shards and sentences is None:
        raise ValueError("train_word2vec needs example shards or encoded sentences")
    if cfg.epochs > 1 and cfg.regenerate and sentences is None:
        raise ValueError("model.regenerate=true needs the encoded sentences to draw fresh epochs from")
    generator = torch.Generator().manual_seed(seed)
    grouped = model is not None and hasattr(model, "word_vectors")
    name = "fasttext" if grouped else "word2vec"
    model = model if model is not None else Word2Vec(len(vocab), cfg.dim, cbow=sg.cbow)
    model.reset_parameters(generator)
    corpus_words = int(sum(len(s) for s in sentences)) if sentences is not None else None
    shard_words = sum(read_shard_stats(p).tokens for p in shards)
    epoch_words = corpus_words if corpus_words is not None else shard_words
    total_words = max(epoch_words * cfg.epochs, 1)
    tracker.log_params({f"{name}.vocab_size": len(vocab), f"{name}.epoch_words": epoch_words,
                        f"{name}.mode": "cbow" if sg.cbow else "skipgram"})  # fmt: skip

    def epoch_chunks(epoch: int) -> Iterator[Batches]:
        shuffle = np.random.default_rng([seed, OBJECTIVE_CODE, EPOCH_SEED, epoch])
        if shards and (epoch == 1 or not cfg.regenerate):
            for path in shards:
                yield read_shard(path, shuffle, grouped)
        else:
            yield from generate_chunks(sentences, vocab, sg, seed, epoch, grouped)  # type: ignore[arg-type]

    words_done, pairs_done, step = 0, 0, 0
    window_loss, window_examples, window_words, window_pairs = 0.0, 0, 0, 0
    window_start = start = time.perf_counter()
    last_loss = float("nan")
    # The next chunk is drawn (or read) on a second thread while this one trains: numpy and torch release the
    # GIL, and each chunk's draws have their own seed, so the overlap changes the timing, never the result.
    chunks = ((epoch, chunk) for epoch in range(1, cfg.epochs + 1) for chunk in epoch_chunks(epoch))
    for epoch, chunk in _prefetch(chunks):
        n = len(chunk)
        for lo in range(0, n, cfg.batch_size):
            hi = min(n, lo + cfg.batch_size)
            # Words of this chunk done so far, pro rata: word2vec's schedule is over words, not pairs.
            done = words_done + chunk.words * lo / n
            lr = max(cfg.min_lr, cfg.lr - (cfg.lr - cfg.min_lr) * done / total_words)
            inputs, targets, negatives, offsets = chunk.slice(lo, hi)
            # The loss costs about a tenth of an update: measured on every LOSS_EVERY-th one.
            measure = step % LOSS_EVERY == 0
            loss = model.sgd_step(inputs, targets, negatives, lr, offsets=offsets, with_loss=measure)
            if measure:
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{name}: non-finite loss at update {step} (model.lr too high?)")
                window_loss += loss
                window_examples += hi - lo
            step += 1
            window_pairs += hi - lo
            if step % cfg.log_every == 0:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                words_now = words_done + chunk.words * hi / n
                last_loss = window_loss / max(window_examples, 1)
                tracker.log_metrics({"loss": last_loss, "lr": lr, "epoch": epoch,
                                     "words_per_s": (words_now - window_words) / elapsed,
                                     "pairs_per_s": window_pairs / elapsed}, step)  # fmt: skip
                window_loss, window_examples, window_pairs = 0.0, 0, 0
                window_words, window_start = words_now, time.perf_counter()
        words_done += chunk.words
        pairs_done += n
        progress(name, words_done, total_words)
    seconds = time.perf_counter() - start
    if window_examples:
        last_loss = window_loss / window_examples
    metrics = {"train_loss": last_loss, "words": float(words_done), "pairs": float(pairs_done), "updates": float(step),
               "words_per_s": words_done / seconds, "pairs_per_s": pairs_done / seconds, "seconds": seconds,
               "epochs": float(cfg.epochs)}  # fmt: skip
    vectors = (model.word_vectors() if grouped else model.in_embed.weight).detach().numpy().copy()
    return Word2VecResult(list(vocab.words), vectors, model, metrics)


def train_word2vec_compiled(
    cfg: Word2VecSpec,
    sg: SkipgramSpec,
    vocab: Vocab,
    sentences: Sequence[np.ndarray] | None,
    seed: int = 1234,
    tracker: Tracker | None = None,
    progress: Progress = no_progress,
) -> Word2VecResult:
    """word2vec with the compiled per-pair loop (`plm.train.sgns`) over the encoded corpus: the C tool's
    updates, fresh subsampling, windows and negatives every epoch, `model.threads` lock-free threads."""
    from plm.train.sgns import corpus_arrays, train_sgns

    tracker = tracker or NullTracker()
    if not sentences:
        raise ValueError("train_word2vec: the compiled engine needs the encoded sentences (none in the train split)")
    ids, offsets = corpus_arrays(sentences)
    threads = cfg.threads or (os.cpu_count() or 1)
    tracker.log_params({"word2vec.vocab_size": len(vocab), "word2vec.epoch_words": int(offsets[-1]),
                        "word2vec.mode": "cbow" if sg.cbow else "skipgram", "word2vec.engine": "compiled",
                        "word2vec.threads": threads})  # fmt: skip

    def on_epoch(epoch: int, m: dict[str, float]) -> None:
        tracker.log_metrics({"loss": m["train_loss"], "words_per_s": m["words_per_s"], "epoch": float(epoch),
                             "lr": max(cfg.min_lr, cfg.lr - (cfg.lr - cfg.min_lr) * epoch / cfg.epochs)}, epoch)  # fmt: skip
        progress("word2vec", epoch, cfg.epochs)

    syn0, syn1, m = train_sgns(
        ids, offsets, vocab.counts, keep_probability(vocab.counts, sg.subsample), cfg.dim, window=sg.window,
        negatives=sg.negatives, cbow=sg.cbow, contexts=sg.contexts, epochs=cfg.epochs, lr=cfg.lr, min_lr=cfg.min_lr,
        seed=seed, threads=threads, on_epoch=on_epoch,
    )  # fmt: skip
    model = Word2Vec(len(vocab), cfg.dim, cbow=sg.cbow)
    with torch.no_grad():
        model.in_embed.weight.copy_(torch.from_numpy(syn0))
        model.out_embed.weight.copy_(torch.from_numpy(syn1))
    metrics = {"train_loss": m["train_loss"], "words": m["words"], "pairs": m["updates"], "updates": m["updates"],
               "words_per_s": m["words_per_s"], "pairs_per_s": m["updates"] / max(m["seconds"], 1e-9),
               "seconds": m["seconds"], "epochs": float(cfg.epochs), "threads": float(threads)}  # fmt: skip
    return Word2VecResult(list(vocab.words), syn0.copy(), model, metrics)


def _prefetch(items: Iterator[Any]) -> Iterator[Any]:
    """`items`, each produced on a worker thread while the caller works on the previous one."""
    done = object()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(next, items, done)
        while (item := future.result()) is not done:
            future = pool.submit(next, items, done)
            yield item


@torch.no_grad()
def evaluate_loss(model: Word2Vec, shards: Sequence[Path], batch_size: int = 65_536) -> float:
    """Mean negative-sampling loss per example on held-out shards (their fixed negatives); nan without any."""
    total, examples = 0.0, 0
    for path in shards:
        chunk = read_shard(path)
        for lo in range(0, len(chunk), batch_size):
            inputs, targets, negatives, offsets = chunk.slice(lo, min(len(chunk), lo + batch_size))
            total += float(model(inputs, targets, negatives, offsets))
            examples += len(targets)
    return total / examples if examples else float("nan")


# ---- word2vec C formats ---------------------------------------------------------------------------


def save_word2vec(path: Path, words: Sequence[str], vectors: np.ndarray, binary: bool) -> Path:
    """The word2vec C format: header `V D`, then per word its name and D float32s (text: `%.9g`, exact)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words for {len(vectors)} vectors")
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise ValueError(f"word2vec format cannot hold words with whitespace or empty words: {bad[:3]}")
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        little = vectors.astype("<f4", copy=False)
        for word, row in zip(words, little, strict=True):
            if binary:
                f.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
            else:
                f.write((word + " " + " ".join(f"{x:.9g}" for x in row.tolist()) + "\n").encode("utf-8"))
    os.replace(tmp, path)
    return path


def load_word2vec(path: Path, binary: bool) -> tuple[list[str], np.ndarray]:
    """Read the word2vec C text or binary format (as written by `save_word2vec`, gensim or the C tool)."""
    data = Path(path).read_bytes()
    header, _, body = data.partition(b"\n")
    count, dim = map(int, header.split())
    words: list[str] = []
    vectors = np.empty((count, dim), dtype=np.float32)
    if binary:
        pos = 0
        for i in range(count):
            space = body.index(b" ", pos)
            words.append(body[pos:space].decode("utf-8").lstrip("\n"))
            start = space + 1
            vectors[i] = np.frombuffer(body, dtype="<f4", count=dim, offset=start)
            pos = start + 4 * dim
    else:
        lines = body.decode("utf-8").splitlines()
        for i, line in enumerate(lines[:count]):
            word, *values = line.rstrip().split(" ")
            words.append(word)
            vectors[i] = np.array(values, dtype=np.float32)
    return words, vectors


# ---- plm's model folder ---------------------------------------------------------------------------


def save_word_vectors(
    model_dir: Path, model: Word2Vec, vocab: Vocab, lowercase: bool, word_unit: str = "eojeol"
) -> Path:
    """`vectors.safetensors` (in_embed, out_embed) + `vocab.parquet` + `config.json`, atomically."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=model_dir.name + ".", suffix=".tmp", dir=model_dir.parent))
    try:
        tensors = {"in_embed": model.in_embed.weight.detach().contiguous(),
                   "out_embed": model.out_embed.weight.detach().contiguous()}  # fmt: skip
        save_file(tensors, str(tmp / VECTORS_FILE), metadata={"format": "pt"})
        vocab.save(tmp / VOCAB_FILE)
        config = {"arch": "word2vec", "vocab_size": len(vocab), "dim": model.dim, "cbow": model.cbow,
                  "lowercase": lowercase, "word_unit": word_unit}  # fmt: skip
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


def load_word_vectors(model_dir: Path) -> tuple[list[str], np.ndarray]:
    """Words (most frequent first) and their vectors (V, D) float32 from a folder of `save_word_vectors`."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    if config.get("arch") not in WORD_VECTOR_ARCHS:  # fastText and GloVe folders hold their word vectors as in_embed
        raise ValueError(f"{model_dir}: not a word-vector model (arch={config.get('arch')!r})")
    vectors = load_file(str(model_dir / VECTORS_FILE))["in_embed"].numpy()
    words = Vocab.load(model_dir / VOCAB_FILE).words
    if len(words) != len(vectors):
        raise ValueError(f"{model_dir}: {len(words)} words but {len(vectors)} vectors")
    return words, vectors


def load_word2vec_model(model_dir: Path) -> tuple[Word2Vec, Vocab, dict[str, Any]]:
    """The full model (both tables), its vocabulary and config, e.g. to continue training or score pairs."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    model = Word2Vec(config["vocab_size"], config["dim"], cbow=config["cbow"])
    weights = load_file(str(model_dir / VECTORS_FILE))
    model.in_embed.weight.data.copy_(weights["in_embed"])
    model.out_embed.weight.data.copy_(weights["out_embed"])
    return model, Vocab.load(model_dir / VOCAB_FILE), config


class Word2VecPredictor:
    """Serving: `text` in; the mean word vector (`embedding`) and the out-of-vocabulary rate per row out."""

    def __init__(self, model_dir: Path) -> None:
        words, self.vectors = load_word_vectors(model_dir)
        self.index = {w: i for i, w in enumerate(words)}
        config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
        self.lowercase, self.word_unit = bool(config.get("lowercase", True)), config.get("word_unit", "eojeol")

    @classmethod
    def load(cls, model_dir: Path, tokenizer_path: Path | None = None) -> Word2VecPredictor:
        """word2vec splits words itself (`\\w+`, as the vocabulary was built): the tokenizer is not used."""
        return cls(model_dir)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) mean vectors of the known words (zeros when none is known) and (N,) OOV rates (0 for no words)."""
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        oov = np.zeros(len(texts))
        for row, tokens in enumerate(split_words_batch(texts, self.lowercase, self.word_unit)):
            ids = [i for i in map(self.index.get, tokens) if i is not None]
            if ids:
                out[row] = self.vectors[ids].mean(axis=0)
            oov[row] = 1 - len(ids) / len(tokens) if tokens else 0.0
        return out, oov

    def predict_frame(self, frame: Any) -> Any:
        """DataFrame with `text` -> DataFrame with `embedding` (list of floats) and `oov_rate`."""
        import pandas as pd

        texts = [str(t) for t in frame["text"].tolist()]
        vectors, oov = self.embed(texts)
        return pd.DataFrame({"embedding": [v.tolist() for v in vectors], "oov_rate": oov})
