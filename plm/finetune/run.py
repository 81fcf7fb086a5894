"""One labelled task, prepared once and fitted many times (the finetune stage and every transfer setting).

`prepare_task` reads the data of `finetune.task_type` (through the corpus readers, bad rows quarantined
with reasons), splits it deterministically, encodes it for the pretrained model's family (BERT ids + segments, QA windows,
or word2vec words) and returns a `PreparedTask` whose `fit` trains one (strategy, init, subset).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plm.config import FinetuneSpec
from plm.finetune.engine import FinetuneResult, finetune_classifier
from plm.finetune.strategies import Strategy
from plm.tracker import NullTracker, Progress, Tracker, no_progress

PRIMARY = {"classification": "accuracy", "pair_classification": "accuracy", "regression": "pearson", "qa": "f1"}
"""The held-out metric that ranks models (registry gate, transfer plot) per task type."""
REPORTED = {
    "classification": ("accuracy", "macro_f1"), "pair_classification": ("accuracy", "macro_f1"),
    "regression": ("pearson", "spearman"), "qa": ("exact_match", "f1"),
}  # fmt: skip
KINDS = {"classification": "classifier", "pair_classification": "pair_classifier", "regression": "regressor", "qa": "qa"}


@dataclass
class PreparedTask:
    ft: FinetuneSpec
    arch: str
    """`bert` (an encoder model dir), `gpt` (a decoder model dir) or `word2vec` (a vectors folder)."""
    pretrained_dir: Path
    tokenizer_path: Path
    train_idx: list[int]
    test_idx: list[int]
    skipped: int
    label_names: list[str]
    table: Any
    """The parsed task as a pyarrow Table with a `split` column (written beside the model: the task's lake copy)."""
    data: Any
    encoded: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    """BERT (ids, segment ids), or GPT (views, []), per row, encoded on first use: a transfer report touches a few thousand of 50k rows."""
    features: dict[Any, Any] = field(default_factory=dict)
    """`WordVectorFeatures` of a word2vec task per vector table (pretrained, registered parent), or a GPT task's
    `DecoderFeatures` per decoder (pretrained, registered, or random per seed), built on the first `features` fit
    and reused by every later one."""
    init_dir: Path | None = None
    """A registered model's folder (`finetune.init`) that `fit(..., registered=True)` starts from."""

    def for_family(self, arch: str, pretrained_dir: Path) -> PreparedTask:
        """The same rows and split for another pretrained family (a BERT pipeline's companion word vectors)."""
        task = PreparedTask(self.ft, arch, pretrained_dir, self.tokenizer_path, self.train_idx, self.test_idx,
                            self.skipped, self.label_names, self.table, self.data)  # fmt: skip
        if arch == "bert":
            task.encoded = self.encoded
        return task

    def bert_rows(self, rows: list[int]) -> tuple[list[list[int]], list[list[int]]]:
        """Token and segment ids of `rows`, encoding (once) those not encoded yet."""
        missing = [i for i in dict.fromkeys(rows) if i not in self.encoded]
        if missing:
            from plm.finetune.tasks import encode_pairs
            from plm.tokenizer.train import load_tokenizer

            pairs = None if self.data.pairs is None else [self.data.pairs[i] for i in missing]
            ids, types = encode_pairs(load_tokenizer(self.tokenizer_path), [self.data.texts[i] for i in missing], pairs,
                                      self.ft.seq_len)  # fmt: skip
            self.encoded.update(zip(missing, zip(ids, types)))
        return [self.encoded[i][0] for i in rows], [self.encoded[i][1] for i in rows]

    @property
    def kind(self) -> str:
        """Registry/pyfunc model kind (plm.tracking.PREDICTORS)."""
        if self.arch == "gpt":
            return "gpt_classifier"
        return "embeddings_classifier" if self.arch == "word2vec" else KINDS[self.ft.task_type]

    @property
    def primary(self) -> str:
        return PRIMARY[self.ft.task_type]

    @property
    def pair(self) -> bool:
        return getattr(self.data, "pairs", None) is not None

    def strategies(self, wanted: list[str]) -> list[Strategy]:
        """The strategies that apply to this model family, in the given order."""
        from plm.families import FAMILIES

        usable = set(FAMILIES[self.arch].strategies)
        if self.ft.task_type == "regression":
            usable = usable - {"zero_shot"}
        chosen = [s for s in wanted if s in usable]
        if not chosen:
            raise ValueError(f"finetune strategies {wanted} do not apply to model.arch={self.arch} "
                             f"(usable: {sorted(usable)})")  # fmt: skip
        return chosen  # type: ignore[return-value]

    def fit(
        self,
        train_positions: list[int],
        out_dir: Path,
        pretrained: bool,
        strategy: Strategy,
        tracker: Tracker = NullTracker(),
        progress: Progress = no_progress,
        seed: int | None = None,
        save: bool = True,
        eval_each_epoch: bool | None = None,
        registered: bool = False,
    ) -> FinetuneResult:
        """Train on the training rows at `train_positions` (indices into `train_idx`), evaluate on the test split.

        `seed` replaces `finetune.seed` (initialisation, data order, CV folds); `save=False` lets the
        `features` strategy skip writing its model (the transfer report's many fits need only metrics).
        """
        train = [self.train_idx[j] for j in train_positions]
        test = self.test_idx
        update = {k: v for k, v in (("seed", seed), ("eval_each_epoch", eval_each_epoch)) if v is not None}
        ft = self.ft.model_copy(update=update) if update else self.ft
        pretrained = pretrained and strategy != "scratch"
        init_from = self.pretrained_dir if pretrained else None
        if registered:
            if self.init_dir is None or strategy in ("scratch", "zero_shot"):
                raise ValueError(f"finetune: a registered init needs finetune.init and a training strategy, not {strategy}")
            init_from, pretrained = self.init_dir, True
        vectors_dir = init_from or self.pretrained_dir  # a word-vector family: the pretrained or the registered table
        if self.arch == "word2vec" and strategy == "features":
            from plm.finetune.features import WordVectorFeatures

            if vectors_dir not in self.features:
                self.features[vectors_dir] = WordVectorFeatures(vectors_dir, self.data.texts, self.data.pairs,
                                                                ft.max_words or ft.seq_len, ft.subword_oov,
                                                                ft.subword_table)  # fmt: skip
            labels = self._labels()
            return self.features[vectors_dir].fit(train, test, labels, dict(enumerate(self.label_names)), pretrained,
                                                  ft.seed, out_dir if save else None)  # fmt: skip
        if self.arch == "word2vec":
            from plm.finetune.embeddings import finetune_embeddings

            d = self.data
            pick = (lambda rows, idx: None if rows is None else [rows[i] for i in idx])  # noqa: E731
            labels = self._labels()
            return finetune_embeddings(
                ft, vectors_dir,
                ([d.texts[i] for i in train], pick(d.pairs, train), [labels[i] for i in train]),
                ([d.texts[i] for i in test], pick(d.pairs, test), [labels[i] for i in test]),
                dict(enumerate(self.label_names)), out_dir, pretrained, tracker, progress, save,
            )  # fmt: skip
        if self.arch == "gpt":
            return self._fit_gpt(train, test, ft, init_from, strategy, out_dir if save else None, tracker, progress)
        from plm.train.engine import load_pretrained

        _, bert_cfg = load_pretrained(self.pretrained_dir)
        if ft.task_type == "qa":
            from plm.finetune.qa import finetune_qa
            from plm.tokenizer.train import load_tokenizer

            ex = self.data.examples
            return finetune_qa(
                bert_cfg, ft, load_tokenizer(self.tokenizer_path), [ex[i] for i in train], [ex[i] for i in test],
                out_dir, init_from, tracker=tracker, progress=progress, strategy=strategy,
            )  # fmt: skip
        train_ids, train_types = self.bert_rows(train)
        test_ids, test_types = self.bert_rows(test)
        labels = self._labels()
        return finetune_classifier(
            bert_cfg, ft, train_ids, [labels[i] for i in train], test_ids, [labels[i] for i in test],
            dict(enumerate(self.label_names)), out_dir, init_from, tracker=tracker, progress=progress,
            strategy=strategy, train_types=train_types, test_types=test_types,
        )  # fmt: skip

    def _fit_gpt(self, train: list[int], test: list[int], ft: FinetuneSpec, init_from: Path | None, strategy: Strategy,
                 out_dir: Path | None, tracker: Tracker, progress: Progress) -> FinetuneResult:  # fmt: skip
        """GPT-1 fine-tuning on the task-token inputs, or zero-shot verbaliser scoring (plm.finetune.gpt)."""
        from plm.finetune.gpt import finetune_gpt, zero_shot
        from plm.models.gpt import GPTConfig

        labels = self._labels()
        d = self.data
        if strategy == "zero_shot":
            return zero_shot(self.pretrained_dir, self.tokenizer_path, ft, self.label_names, [d.texts[i] for i in test],
                             None if d.pairs is None else [d.pairs[i] for i in test], [labels[i] for i in test],  # type: ignore[misc]
                             out_dir)  # fmt: skip
        cfg = GPTConfig.from_dict(json.loads((self.pretrained_dir / "config.json").read_text(encoding="utf-8")))
        if ft.seq_len > cfg.max_position:
            raise ValueError(f"finetune.seq_len {ft.seq_len} exceeds the decoder's max_position {cfg.max_position}")
        if strategy == "features":
            return self._gpt_features(cfg, train, test, labels, ft, init_from, out_dir)  # type: ignore[arg-type]
        bos = None
        if ft.head_init == "probe":  # LP-FT reads the `features` input: `<|endoftext|> text`, mean-pooled
            bos, encoded = self._plain_rows(ft, "finetune.head_init probe")
            ids = encoded(train + test)
        else:
            ids = self.gpt_rows(train + test, cfg.vocab_size)
        return finetune_gpt(cfg, ft, ids[: len(train)], [labels[i] for i in train], ids[len(train) :],
                            [labels[i] for i in test], dict(enumerate(self.label_names)), out_dir, init_from,
                            strategy, tracker, progress, bos=bos)  # fmt: skip

    def _plain_rows(self, ft: FinetuneSpec, what: str) -> tuple[int, Callable[[list[int]], list[list[list[int]]]]]:
        """The `<|endoftext|>` id and an encoder of rows as `<|endoftext|> text` views (`encode_plain`)."""
        from plm.finetune.gpt import encode_plain
        from plm.tokenizer.specials import SpecialIds
        from plm.tokenizer.train import load_tokenizer

        tok = load_tokenizer(self.tokenizer_path)
        bos = SpecialIds.from_tokenizer(tok).eos
        if bos is None:
            raise ValueError(f"{what} on a GPT decoder needs the tokenizer's <|endoftext|>")
        d = self.data

        def encoded(rows: list[int]) -> list[list[list[int]]]:
            return encode_plain(tok, [d.texts[i] for i in rows], None if d.pairs is None else [d.pairs[i] for i in rows],
                                ft.seq_len, bos)  # fmt: skip

        return bos, encoded

    def _gpt_features(self, cfg: Any, train: list[int], test: list[int], labels: list[int], ft: FinetuneSpec,
                      init_from: Path | None, out_dir: Path | None) -> FinetuneResult:  # fmt: skip
        """`features` on a decoder: its pooled states (pretrained or `init_from`, or a random decoder seeded by
        `ft.seed`), read once per row and decoder, + a cross-validated logistic regression."""
        from plm.finetune.gpt import DecoderFeatures

        bos, encoded = self._plain_rows(ft, "finetune.strategy=features")
        key = ("gpt-features", init_from) if init_from is not None else ("gpt-features-scratch", ft.seed)
        if key not in self.features:
            self.features[key] = DecoderFeatures(cfg, init_from, ft.seed, 1 if self.data.pairs is None else 2)
        return self.features[key].fit(train, test, labels, encoded, dict(enumerate(self.label_names)), ft, out_dir, bos)

    def gpt_rows(self, rows: list[int], vocab_size: int) -> list[list[list[int]]]:
        """GPT-1 inputs (each example's views of `<start> A [<delim> B] <extract>`) of `rows`, encoding (once)
        those not encoded yet."""
        missing = [i for i in dict.fromkeys(rows) if i not in self.encoded]
        if missing:
            from plm.finetune.gpt import encode_views
            from plm.tokenizer.train import load_tokenizer

            pairs = None if self.data.pairs is None else [self.data.pairs[i] for i in missing]
            ids = encode_views(load_tokenizer(self.tokenizer_path), [self.data.texts[i] for i in missing], pairs,
                               self.ft.seq_len, vocab_size, self.ft.pair_orderings)  # fmt: skip
            self.encoded.update((i, (x, [])) for i, x in zip(missing, ids))
        return [self.encoded[i][0] for i in rows]

    def _labels(self) -> list[int] | list[float]:
        if self.ft.task_type == "regression":
            return [float(v) for v in self.data.labels]
        index = {name: i for i, name in enumerate(self.label_names)}
        return [index[v] for v in self.data.labels]

    def task_file(self) -> str:
        """task.json written beside a fine-tuned model (read by the predictors)."""
        return json.dumps({"task": self.ft.task, "task_type": self.ft.task_type, "pair": self.pair,
                           "seq_len": self.ft.seq_len, "kind": self.kind})  # fmt: skip


def prepare_task(ft: FinetuneSpec, pretrained_dir: Path, tokenizer_path: Path, arch: str) -> PreparedTask:
    """Read, split and encode the labelled data of `ft` for a pretrained model of family `arch`."""
    import pyarrow as pa

    from plm.config import WORD_VECTOR_ARCHS
    from plm.finetune.tasks import read_labelled, split_rows, with_sample_defaults

    ft = with_sample_defaults(ft)

    if arch in WORD_VECTOR_ARCHS:  # fastText and GloVe folders hold word vectors as word2vec's do
        arch = "word2vec"
    if arch not in ("bert", "word2vec", "gpt"):
        raise ValueError(f"finetune: model.arch={arch} has no fine-tuning heads (bert, gpt, or word2vec via embeddings)")
    if ft.task_type == "qa":
        if arch != "bert":
            raise ValueError(f"finetune: task_type qa needs a BERT encoder ({arch} has no span head)")
        from plm.finetune.qa import read_squad, split_by_context

        qa = read_squad(ft)
        train_idx, test_idx = split_by_context(qa.examples, ft.test_fraction)
        split = _split_column(len(qa.examples), test_idx)
        table = pa.table({
            "id": [e.id for e in qa.examples], "question": [e.question for e in qa.examples],
            "context": [e.context for e in qa.examples],
            "answers": [json.dumps(e.answers, ensure_ascii=False) for e in qa.examples], "split": split,
        })  # fmt: skip
        task = PreparedTask(ft, arch, pretrained_dir, tokenizer_path, train_idx, test_idx, qa.skipped, [], table, qa)
    else:
        data = read_labelled(ft)
        train_idx, test_idx = split_rows(data, ft.test_fraction)
        labels = [] if ft.task_type == "regression" else sorted(set(data.labels))
        columns = {"text": data.texts, **({"text_pair": data.pairs} if data.pairs is not None else {}),
                   "label": data.labels, "split": _split_column(len(data.texts), test_idx)}  # fmt: skip
        task = PreparedTask(ft, arch, pretrained_dir, tokenizer_path, train_idx, test_idx, data.skipped, labels,
                            pa.table(columns), data)  # fmt: skip
    if not task.train_idx or not task.test_idx:
        raise ValueError("finetune: the split left an empty train or test set; adjust finetune.test_fraction")
    return task


def _split_column(n: int, test_idx: list[int]) -> list[str]:
    test = set(test_idx)
    return ["test" if i in test else "train" for i in range(n)]
