"""One labelled task, prepared once and fitted many times (the finetune stage and every transfer setting).

`prepare_task` reads the data of `finetune.task_type` (strict decoding, skipped rows counted), splits
it deterministically, encodes it for the pretrained model's family (BERT ids + segments, QA windows,
or word2vec words) and returns a `PreparedTask` whose `fit` trains one (strategy, init, subset).
"""

from __future__ import annotations

import json
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
    """`bert` (an encoder model dir) or `word2vec` (a vectors folder)."""
    pretrained_dir: Path
    tokenizer_path: Path
    train_idx: list[int]
    test_idx: list[int]
    skipped: int
    label_names: list[str]
    table: Any
    """The parsed task as a pyarrow Table with a `split` column (written beside the model: the task's lake copy)."""
    data: Any
    encoded: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Registry/pyfunc model kind (plm.tracking.PREDICTORS)."""
        return "embeddings_classifier" if self.arch == "word2vec" else KINDS[self.ft.task_type]

    @property
    def primary(self) -> str:
        return PRIMARY[self.ft.task_type]

    @property
    def pair(self) -> bool:
        return getattr(self.data, "pairs", None) is not None

    def strategies(self, wanted: list[str]) -> list[Strategy]:
        """The strategies that apply to this model family, in the given order."""
        usable = {"embeddings", "scratch"} if self.arch == "word2vec" else {"full", "frozen", "discriminative", "scratch"}
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
    ) -> FinetuneResult:
        """Train on the training rows at `train_positions` (indices into `train_idx`), evaluate on the test split."""
        train = [self.train_idx[j] for j in train_positions]
        test = self.test_idx
        ft = self.ft
        pretrained = pretrained and strategy != "scratch"
        init_from = self.pretrained_dir if pretrained else None
        if self.arch == "word2vec":
            from plm.finetune.embeddings import finetune_embeddings

            d = self.data
            pick = (lambda rows, idx: None if rows is None else [rows[i] for i in idx])  # noqa: E731
            labels = self._labels()
            return finetune_embeddings(
                ft, self.pretrained_dir,
                ([d.texts[i] for i in train], pick(d.pairs, train), [labels[i] for i in train]),
                ([d.texts[i] for i in test], pick(d.pairs, test), [labels[i] for i in test]),
                dict(enumerate(self.label_names)), out_dir, pretrained, tracker, progress,
            )  # fmt: skip
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
        ids, types = self.encoded["ids"], self.encoded["types"]
        labels = self._labels()
        return finetune_classifier(
            bert_cfg, ft, [ids[i] for i in train], [labels[i] for i in train],
            [ids[i] for i in test], [labels[i] for i in test], dict(enumerate(self.label_names)), out_dir,
            init_from, tracker=tracker, progress=progress, strategy=strategy,
            train_types=[types[i] for i in train], test_types=[types[i] for i in test],
        )  # fmt: skip

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
    from plm.finetune.tasks import encode_pairs, read_labelled, split_by_hash

    if arch in WORD_VECTOR_ARCHS:  # fastText and GloVe folders hold word vectors as word2vec's do
        arch = "word2vec"
    if arch not in ("bert", "word2vec"):
        raise ValueError(f"finetune: model.arch={arch} has no fine-tuning heads (bert, or word2vec via embeddings)")
    if ft.task_type == "qa":
        if arch != "bert":
            raise ValueError("finetune: task_type qa needs a BERT encoder (word2vec has no span head)")
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
        train_idx, test_idx = split_by_hash(data.split_keys(), ft.test_fraction)
        labels = [] if ft.task_type == "regression" else sorted(set(data.labels))
        columns = {"text": data.texts, **({"text_pair": data.pairs} if data.pairs is not None else {}),
                   "label": data.labels, "split": _split_column(len(data.texts), test_idx)}  # fmt: skip
        task = PreparedTask(ft, arch, pretrained_dir, tokenizer_path, train_idx, test_idx, data.skipped, labels,
                            pa.table(columns), data)  # fmt: skip
        if arch == "bert":
            from plm.tokenizer.train import load_tokenizer

            ids, types = encode_pairs(load_tokenizer(tokenizer_path), data.texts, data.pairs, ft.seq_len)
            task.encoded = {"ids": ids, "types": types}
    if not task.train_idx or not task.test_idx:
        raise ValueError("finetune: the split left an empty train or test set; adjust finetune.test_fraction")
    return task


def _split_column(n: int, test_idx: list[int]) -> list[str]:
    test = set(test_idx)
    return ["test" if i in test else "train" for i in range(n)]
