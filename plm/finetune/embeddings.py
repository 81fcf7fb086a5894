"""The `embeddings` strategy: word2vec vectors as the embedding layer of a small classifier.

The feature-based approach of word embeddings: words of a text (the word splitter of the skip-gram
examples, `split_words`, with the vectors' own lowercasing) are looked up in the word2vec table,
mean-pooled over the known words, and an MLP (one hidden ReLU layer) predicts the label; pairs are
combined as [u, v, |u - v|, u * v]. The vectors stay fixed unless `finetune.embeddings_trainable`.
A fastText parent gives every word of the task's texts outside its vocabulary its n-gram vector
(fastText's `get_word_vector`): those words join the table as extra rows, and only words without any
n-gram vector stay unknown; `test_oov_rate` counts those, `test_unseen_rate` every word outside the
pretrained vocabulary. The classifier keeps that rule beside its table (`subwords.safetensors`: the parent's
n-gram bucket rows, with minn / maxn / buckets / subword in its config; `finetune.subword_table`), so a word
first met when served gets the vector it would have had at train time. Those rows are the parent's even with
`finetune.embeddings_trainable` (only the table of words is tuned): an unseen word's vector is the parent's.
The `scratch` baseline is the same model (same vocabulary, seed, budget) with a random table, which
always trains (a fixed random table would be a random-features baseline, not training from scratch).
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections import ChainMap, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plm.config import FinetuneSpec
from plm.finetune.engine import FinetuneResult, _batches, sequence_metrics, train_loop
from plm.finetune.features import unit_rows
from plm.finetune.heads import EmbeddingBagClassifier
from plm.objectives.skipgram import split_words_batch
from plm.tracker import NullTracker, Progress, Tracker, no_progress
from plm.train.engine import resolve_device
from plm.train.fasttext import NgramVectors
from plm.train.optim import build_optimizer

WEIGHTS, CONFIG, VOCAB, SUBWORDS = "model.safetensors", "config.json", "vocab.json", "subwords.safetensors"
PAD, UNK, OFFSET = 0, 1, 2
WEIGHT_DECAY = 0.0  # decaying word vectors towards zero would erase what pretraining put there
DROPOUT = 0.1


class WordIndex:
    """Text -> word ids of a word2vec vocabulary (`OFFSET` + rank; `UNK` for unknown words).

    With `oov_vector` (a fastText parent), an unknown word that has a vector (its n-grams') is added as a
    new word, id `OFFSET + len(words)`, its vector kept in `extra`: `table(vectors)` appends them.
    """

    def __init__(
        self, words: Sequence[str], lowercase: bool, max_words: int, word_unit: str = "eojeol",
        oov_vector: Callable[[str], np.ndarray | None] | None = None,
    ) -> None:  # fmt: skip
        self.words = list(words)
        self.pretrained_size = len(self.words)
        self.lowercase, self.max_words, self.word_unit = lowercase, max_words, word_unit
        self.index = {w: i + OFFSET for i, w in enumerate(self.words)}
        self.oov_vector = oov_vector
        self.extra: list[np.ndarray] = []
        self.no_vector: set[str] = set()

    def _id(self, word: str) -> int:
        i = self.index.get(word)
        if i is not None:
            return i
        if self.oov_vector is None or word in self.no_vector:
            return UNK
        vector = self.oov_vector(word)
        if vector is None:
            self.no_vector.add(word)
            return UNK
        i = self.index[word] = len(self.words) + OFFSET
        self.words.append(word)
        self.extra.append(np.asarray(vector, dtype=np.float32))
        return i

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Word ids per text, cut to `max_words`; an empty text is one UNK (so pooling has a token)."""
        out = []
        for words in split_words_batch(texts, self.lowercase, self.word_unit):
            ids = [self._id(w) for w in words[: self.max_words]]
            out.append(ids or [UNK])
        return out

    def fork(self) -> WordIndex:
        """A copy whose added words (a served call's unseen words, their n-gram vectors in `extra`) leave this
        index as it is: serving keeps the classifier's table fixed."""
        other = copy.copy(self)
        other.index = ChainMap({}, self.index)  # new words go to the front map only
        other.words, other.extra, other.no_vector = list(self.words), [], set(self.no_vector)
        return other

    def table(self, vectors: np.ndarray) -> np.ndarray:
        """The pretrained vectors (one per pretrained word) with the rows of the words added since."""
        if not self.extra:
            return vectors
        return np.concatenate([vectors, np.stack(self.extra).astype(vectors.dtype)])

    def oov_rate(self, encoded: list[list[int]]) -> float:
        """Share of words without a vector (UNK)."""
        flat = [i for ids in encoded for i in ids]
        return float(np.mean([i == UNK for i in flat])) if flat else math.nan

    def unseen_rate(self, encoded: list[list[int]]) -> float:
        """Share of words outside the pretrained vocabulary (UNK or an added n-gram vector)."""
        flat = [i for ids in encoded for i in ids]
        return float(np.mean([i == UNK or i >= self.pretrained_size + OFFSET for i in flat])) if flat else math.nan


def _pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


SUBWORD_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class SubwordTable:
    """A fastText parent's rule for a word outside the table, as a classifier keeps it: the mean of the word's
    n-gram rows (`NgramVectors`), scaled to unit length `unit` times (the `features` strategy's table is of unit
    rows; a classifier fine-tuned from such a classifier scales its rows once more)."""

    ngrams: NgramVectors
    unit: int = 0
    cache_size: int = 65_536
    """Words whose vectors (or the absence of one) are remembered, least recently used first out: a served
    classifier meets the same unseen words call after call, and hashing their n-grams in Python is the cost."""
    _cache: OrderedDict[str, np.ndarray | None] = field(default_factory=OrderedDict, init=False, repr=False,
                                                         compare=False)  # fmt: skip
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def vector(self, word: str) -> np.ndarray | None:
        with self._lock:
            if word in self._cache:
                self._cache.move_to_end(word)
                return self._cache[word]
        v = self.ngrams.vector(word)
        if v is not None:
            for _ in range(self.unit):
                v = unit_rows(v[None])[0]
            v.flags.writeable = False  # shared by every caller of the cache
        with self._lock:
            self._cache[word] = v
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return v

    def normalized(self) -> SubwordTable:
        """The rule of a table whose rows are all scaled to unit length (`features`)."""
        return replace(self, unit=self.unit + 1)

    def stored(self, dtype: str) -> SubwordTable:
        """The rule with its rows as `finetune.subword_table` keeps them (float16: rounded), used from the start of
        training on, so the vectors a classifier is trained with are the ones it serves."""
        want = SUBWORD_DTYPES[dtype]
        if self.ngrams.ngrams.dtype == want:
            return self
        return replace(self, ngrams=replace(self.ngrams, ngrams=self.ngrams.ngrams.astype(want)))

    def save(self, model_dir: Path) -> dict[str, Any]:
        """Write `subwords.safetensors`; returns the classifier config's `subwords` entry."""
        from safetensors.numpy import save_file as save_numpy

        g = self.ngrams
        save_numpy({"ngrams": np.ascontiguousarray(g.ngrams)}, str(Path(model_dir) / SUBWORDS))
        return {"file": SUBWORDS, "minn": g.minn, "maxn": g.maxn, "buckets": len(g.ngrams), "subword": g.subword,
                "unit": self.unit, "dtype": str(g.ngrams.dtype)}  # fmt: skip

    @classmethod
    def load(cls, model_dir: Path, entry: dict[str, Any]) -> SubwordTable:
        from safetensors.numpy import load_file as load_numpy

        path = Path(model_dir) / SUBWORDS
        if not path.is_file():
            raise ValueError(f"{model_dir}: its config names n-gram rows ({SUBWORDS}) but the file is missing")
        ngrams = load_numpy(str(path))["ngrams"]
        if ngrams.shape[0] != int(entry["buckets"]) or ngrams.dtype not in SUBWORD_DTYPES.values():
            raise ValueError(f"{path}: {ngrams.shape[0]} {ngrams.dtype} rows, its config says {entry['buckets']}")
        g = NgramVectors(ngrams, int(entry["minn"]), int(entry["maxn"]), str(entry.get("subword", "char")))
        return cls(g, int(entry.get("unit", 0)))


@dataclass
class ParentVectors:
    """A word-vector parent as fine-tuning reads it: words, vectors, how text was split, OOV rule."""

    words: list[str]
    vectors: np.ndarray
    lowercase: bool
    word_unit: str
    subwords: SubwordTable | None  # fastText (or a classifier that kept its rows): unseen words' n-gram vectors

    @property
    def oov_vector(self) -> Callable[[str], np.ndarray | None] | None:
        return None if self.subwords is None else self.subwords.vector

    def index(self, max_words: int) -> WordIndex:
        return WordIndex(self.words, self.lowercase, max_words, self.word_unit, self.oov_vector)


def _load_vectors(vectors_dir: Path, subword_oov: bool = True, subword_table: str = "float32") -> ParentVectors:
    """The word vectors of a pretrained word-vector folder, or of a fine-tuned word-vector classifier (a
    registered `finetune.init` parent: its vocabulary, its, possibly fine-tuned, embedding table and the n-gram
    rows it kept). With `subword_oov`, a fastText parent's n-gram rule as `subword_table` stores it (float16:
    rounded, so training sees what serving will); `subword_table: none` still gives the task's words theirs."""
    from plm.train.word2vec import load_word_vectors

    config = json.loads((Path(vectors_dir) / CONFIG).read_text())
    lowercase, word_unit = bool(config.get("lowercase", True)), config.get("word_unit", "eojeol")
    subwords = None
    if config.get("arch") == "embeddings":
        words = json.loads((Path(vectors_dir) / VOCAB).read_text(encoding="utf-8"))
        table = load_file(str(Path(vectors_dir) / WEIGHTS))["embeddings.weight"]
        if len(table) != len(words) + OFFSET:
            raise ValueError(f"{vectors_dir}: {len(words)} words but {len(table) - OFFSET} vectors")
        if subword_oov and config.get("subwords"):
            subwords = SubwordTable.load(vectors_dir, config["subwords"])
        vectors = table[OFFSET:].numpy()
    else:
        words, vectors = load_word_vectors(vectors_dir)
        if subword_oov and config.get("arch") == "fasttext":
            from plm.train.fasttext import SubwordVectors

            subwords = SubwordTable(SubwordVectors(vectors_dir).ngrams)
    if subwords is not None and subword_table != "none":
        subwords = subwords.stored(subword_table)
    return ParentVectors(words, vectors, lowercase, word_unit, subwords)


def save_subwords(subwords: SubwordTable | None, subword_table: str, model_dir: Path) -> dict[str, Any]:
    """The classifier config entry of its n-gram rows (written beside it), or nothing: no rule, or `none`."""
    if subwords is None or subword_table == "none":
        return {}
    return {"subwords": subwords.save(model_dir)}


def is_classifier(model_dir: Path) -> bool:
    """Whether `model_dir` is a fine-tuned word-vector classifier (a registered parent), not pretrained vectors."""
    return json.loads((Path(model_dir) / CONFIG).read_text()).get("arch") == "embeddings"


def carry_head(model: EmbeddingBagClassifier, parent_dir: Path, id2label: dict[int, str], regression: bool) -> list[str]:
    """Task-to-task transfer from a registered word-vector classifier: when its layer layout (`hidden`, single
    or pair input) is `model`'s, copy its hidden layer, and its output layer only when both predict the same
    labels (else that head is replaced, as a new task's must be). Returns the names of the copied tensors."""
    config = json.loads((Path(parent_dir) / CONFIG).read_text())
    state = load_file(str(Path(parent_dir) / WEIGHTS))
    same_labels = bool(config.get("regression")) == regression and (
        regression or {int(k): v for k, v in config.get("id2label", {}).items()} == id2label)
    last = f"mlp.{len(model.mlp) - 1}."
    mine = model.state_dict()
    carried: list[str] = []
    hidden = model.mlp[0].out_features if len(model.mlp) > 1 else 0
    if int(config.get("hidden", 0)) != hidden or bool(config.get("pair")) != model.pair:
        return carried  # another layer layout: a layer of one shape may play another role (hidden vs output)
    with torch.no_grad():
        for name, value in state.items():
            if not name.startswith("mlp.") or name not in mine or mine[name].shape != value.shape:
                continue
            if name.startswith(last) and not same_labels:
                continue
            mine[name].copy_(value)
            carried.append(name)
    return carried


def build_model(
    words: list[str], vectors: np.ndarray, ft: FinetuneSpec, num_labels: int, pair: bool, pretrained: bool
) -> EmbeddingBagClassifier:
    """The classifier with the word2vec table copied in (`pretrained`) or a seeded random one."""
    torch.manual_seed(ft.seed)  # same MLP init and dropout for pretrained and scratch
    model = EmbeddingBagClassifier(len(words) + OFFSET, vectors.shape[1], ft.embeddings_hidden, num_labels, pair, DROPOUT)
    with torch.no_grad():
        table = model.embeddings.weight
        if pretrained:
            table[OFFSET:] = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
            table[UNK] = 0.0  # unknown words add nothing rather than noise
        else:  # the scale of trained vectors, so the MLP sees inputs of the same size
            table.normal_(0.0, float(np.std(vectors)) or 0.1)
        table[PAD] = 0.0
    model.embeddings.weight.requires_grad = ft.embeddings_trainable or not pretrained
    return model


def finetune_embeddings(
    ft: FinetuneSpec,
    vectors_dir: Path,
    train: tuple[list[str], list[str] | None, list[int] | list[float]],
    test: tuple[list[str], list[str] | None, list[int] | list[float]],
    id2label: dict[int, str],
    out_dir: Path,
    pretrained: bool,
    tracker: Tracker = NullTracker(),
    progress: Progress = no_progress,
    save: bool = True,
) -> FinetuneResult:
    """Train the word-vector classifier (or regressor: empty `id2label`) on (texts, pairs or None, labels).

    Metrics as `finetune_classifier` (test_accuracy/test_macro_f1 or test_pearson/test_spearman/test_mse)
    plus `test_oov_rate`. The model dir holds model.safetensors, config.json and vocab.json, and for a
    pretrained fastText parent `subwords.safetensors` (`finetune.subword_table`); `save=False` writes nothing
    (the transfer report's fits need only metrics; model_dir is then empty).
    """
    (tr_texts, tr_pairs, tr_labels), (te_texts, te_pairs, te_labels) = train, test
    if not tr_texts:
        raise ValueError("no training examples")
    regression = not id2label
    num_labels = 1 if regression else len(id2label)
    parent = _load_vectors(vectors_dir, ft.subword_oov, ft.subword_table)
    index = parent.index(ft.max_words or ft.seq_len)
    pair = tr_pairs is not None
    tr_a, te_a = index.encode(tr_texts), index.encode(te_texts)
    tr_b = index.encode(tr_pairs) if tr_pairs is not None else None
    te_b = index.encode(te_pairs) if te_pairs is not None else None
    words, vectors, lowercase = index.words, index.table(parent.vectors), parent.lowercase
    device = resolve_device("auto")
    model = build_model(words, vectors, ft, num_labels, pair, pretrained)
    registered = pretrained and is_classifier(vectors_dir)
    carried = carry_head(model, vectors_dir, id2label, regression) if registered else []
    model = model.to(device)
    optimizer = build_optimizer(model, ft.lr, WEIGHT_DECAY)
    dtype = torch.float if regression else torch.long
    tracker.log_params({"init": "registered" if registered else "pretrained" if pretrained else "scratch",
                        "strategy": "embeddings", "embeddings_trainable": model.embeddings.weight.requires_grad,
                        "vocab_size": len(words), **({"carried_layers": ",".join(carried) or "none",
                                                      "head": "kept" if f"mlp.{len(model.mlp) - 1}.weight" in carried
                                                      else "new"} if registered else {})})  # fmt: skip

    def batch_of(a: list[list[int]], b: list[list[int]] | None, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = {"input_ids": _pad([a[i] for i in idx])}
        if b is not None:
            batch["pair_ids"] = _pad([b[i] for i in idx])
        return batch

    def make_batch(idx: list[int]) -> dict[str, torch.Tensor]:
        return batch_of(tr_a, tr_b, idx) | {"labels": torch.tensor([tr_labels[i] for i in idx], dtype=dtype)}

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        logits = [model(**{k: v.to(device) for k, v in batch_of(te_a, te_b, idx).items()})["logits"].float().cpu()
                  for idx in _batches(len(te_a), 256)]  # fmt: skip
        model.train()
        stacked = torch.cat(logits) if logits else torch.zeros(0, num_labels)
        return sequence_metrics(stacked, te_labels, regression)

    scores, train_loss = train_loop(model, ft, optimizer, len(tr_a), make_batch, evaluate, tracker, progress)
    metrics = {**scores, "test_oov_rate": index.oov_rate(te_a), "test_unseen_rate": index.unseen_rate(te_a),
               "train_loss": train_loss, "epochs": float(ft.epochs)}  # fmt: skip
    if not save:
        return FinetuneResult(metrics, Path())
    model_dir = Path(out_dir) / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(model_dir / WEIGHTS), metadata={"format": "pt"})
    config = {
        "arch": "embeddings", "dim": int(vectors.shape[1]), "hidden": ft.embeddings_hidden, "num_labels": num_labels,
        "id2label": {str(k): v for k, v in sorted(id2label.items())}, "pair": pair, "regression": regression,
        "lowercase": lowercase, "max_words": ft.max_words or ft.seq_len, "word_unit": parent.word_unit,
        # a scratch table is random: the parent's n-gram rows would not match it, its unseen words stay unknown
        **save_subwords(parent.subwords if pretrained else None, ft.subword_table, model_dir),
    }  # fmt: skip
    (model_dir / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    (model_dir / VOCAB).write_text(json.dumps(words, ensure_ascii=False))
    return FinetuneResult(metrics, model_dir)


class EmbeddingsModel:
    """Inference with a model dir of `finetune_embeddings` (or `features`): a word outside its table gets the
    n-gram vector the parent's rule gives it (`subwords.safetensors`, when kept), as it would have in training."""

    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        self.config = json.loads((model_dir / CONFIG).read_text())
        words = json.loads((model_dir / VOCAB).read_text())
        c = self.config
        self.subwords = SubwordTable.load(model_dir, c["subwords"]) if c.get("subwords") else None
        oov = None if self.subwords is None else self.subwords.vector
        self.index = WordIndex(words, c["lowercase"], c["max_words"], c.get("word_unit", "eojeol"), oov)
        self.id2label = {int(k): v for k, v in c["id2label"].items()}
        self.model = EmbeddingBagClassifier(len(words) + OFFSET, c["dim"], c["hidden"], c["num_labels"], c["pair"], DROPOUT)
        self.model.load_state_dict(load_file(str(model_dir / WEIGHTS)), strict=True)
        self.model.eval()

    @torch.no_grad()
    def logits(self, texts: list[str], pairs: list[str] | None = None) -> torch.Tensor:
        """(N, num_labels) logits; `pairs` is required by a pair model."""
        if not texts:
            return torch.zeros(0, self.config["num_labels"])
        index = self.index.fork()  # this call's unseen words get ids past the table, their vectors `extra`
        batch = {"input_ids": _pad(index.encode(texts))}
        if self.config["pair"]:
            if pairs is None:
                raise ValueError("this model scores pairs: input needs `text` and `text_pair`")
            batch["pair_ids"] = _pad(index.encode(pairs))
        added = torch.from_numpy(np.stack(index.extra)) if index.extra else None
        return self.model(**batch, extra=added)["logits"].float()
