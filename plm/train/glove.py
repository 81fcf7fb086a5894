"""Training GloVe on the co-occurrence parts of the examples stage, and its files.

Each epoch visits every non-zero entry once in a fresh seeded order (GloVe shuffles its entries too),
`cfg.batch_size` entries per AdaGrad update (`plm.models.glove.GloVe.adagrad_step`).

Formats: GloVe's text output (`word v1 ... vD` per line, no header: what
`KeyedVectors.load_word2vec_format(path, binary=False, no_header=True)` reads) of w + c, and plm's
folder (`vectors.safetensors` with `in_embed` = w + c and the four raw tables, `vocab.parquet`,
`config.json` with `arch: glove`) that the registry, the predictor and the `embeddings` strategy load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from plm.config import GloveSpec
from plm.models.glove import GloVe
from plm.objectives.skipgram import VOCAB_FILE, Vocab
from plm.tracker import NullTracker, Progress, Tracker, no_progress
from plm.train.word2vec import CONFIG_FILE, VECTORS_FILE


@dataclass
class GloveResult:
    words: list[str]
    vectors: np.ndarray  # (V, D) float32, w + c
    model: GloVe
    metrics: dict[str, float] = field(default_factory=dict)


def train_glove(
    cfg: GloveSpec, vocab: Vocab, i: np.ndarray, j: np.ndarray, x: np.ndarray, seed: int = 1234,
    tracker: Tracker | None = None, progress: Progress = no_progress,
) -> GloveResult:  # fmt: skip
    """AdaGrad on GloVe's loss over the entries (i, j, X_ij) for `cfg.epochs` epochs."""
    tracker = tracker or NullTracker()
    if not len(x):
        raise ValueError("train_glove: no co-occurrence entries")
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        model = GloVe(len(vocab), cfg.dim, cfg.initial_accumulator)
        model.reset_parameters(torch.Generator().manual_seed(seed))
        ti, tj, tx = torch.from_numpy(i), torch.from_numpy(j), torch.from_numpy(x.astype(np.float32))
        rng = np.random.default_rng([seed, 13])
        tracker.log_params({"glove.vocab_size": len(vocab), "glove.entries": len(x)})
        n, step, start = len(x), 0, time.perf_counter()
        epoch_loss = float("nan")
        window_start, window_entries = start, 0
        for epoch in range(1, cfg.epochs + 1):
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for lo in range(0, n, cfg.batch_size):
                idx = order[lo : lo + cfg.batch_size]
                total += model.adagrad_step(ti[idx], tj[idx], tx[idx], cfg.lr, cfg.x_max, cfg.alpha)
                step += 1
                window_entries += len(idx)
                if step % cfg.log_every == 0:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    tracker.log_metrics({"loss": total / min(n, lo + len(idx)), "epoch": epoch,
                                         "entries_per_s": window_entries / elapsed}, step)  # fmt: skip
                    window_start, window_entries = time.perf_counter(), 0
            epoch_loss = total / n
            if not np.isfinite(epoch_loss):
                raise FloatingPointError(f"glove: non-finite loss in epoch {epoch} (model.lr too high?)")
            tracker.log_metrics({"epoch_loss": epoch_loss}, step)
            progress("glove", epoch, cfg.epochs)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    metrics = {"train_loss": epoch_loss, "entries": float(n), "updates": float(step), "seconds": seconds,
               "entries_per_s": n * cfg.epochs / seconds, "epochs": float(cfg.epochs)}  # fmt: skip
    return GloveResult(list(vocab.words), model.vectors().numpy().copy(), model, metrics)


def save_glove_text(path: Path, words: Sequence[str], vectors: np.ndarray) -> Path:
    """GloVe's text format: per line the word and its D values (`%.9g`, exact for float32); no header."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words for {len(vectors)} vectors")
    if any(not w or any(c.isspace() for c in w) for w in words):
        raise ValueError("GloVe's text format cannot hold empty words or words with whitespace")
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for word, row in zip(words, vectors.tolist(), strict=True):
            f.write(word + " " + " ".join(f"{v:.9g}" for v in row) + "\n")
    os.replace(tmp, path)
    return path


def save_glove_folder(model_dir: Path, model: GloVe, vocab: Vocab, lowercase: bool) -> Path:
    """`vectors.safetensors` (in_embed = w + c, word, context, biases) + `vocab.parquet` + `config.json`."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=model_dir.name + ".", suffix=".tmp", dir=model_dir.parent))
    try:
        tensors = {"in_embed": model.vectors().contiguous(),
                   **{k: v.detach().contiguous() for k, v in model.state_dict().items()}}  # fmt: skip
        save_file(tensors, str(tmp / VECTORS_FILE), metadata={"format": "pt"})
        vocab.save(tmp / VOCAB_FILE)
        config = {"arch": "glove", "vocab_size": len(vocab), "dim": model.dim, "lowercase": lowercase}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir
