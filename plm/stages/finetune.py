"""finetune: labelled task -> fine-tuned candidates, one per pretrained family (`model`, and `word_vectors`
when set), each with its strategy, and the same from scratch (`compare_scratch`).

Every `finetune.task_type` (classification, pair_classification, regression, qa); a word-vector parent
gives the `embeddings` or `features` classifier. Trains on `finetune.train_labels` examples of the
train split (all when unset), scores on the whole test split. The parsed task is kept as
`task.parquet`; each model is `[<family>/]<init>/model` with the tokenizer and `task.json` beside it.
The register stage offers every candidate to the registry gate, which picks the champion.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from plm.artifacts import StageWriter
from plm.config import WORD_VECTOR_ARCHS, PipelineSpec, output_slice
from plm.families import FAMILIES, STRATEGIES, family_of
from plm.stages.runtime import Done, Pipeline, Stage, StageResult
from plm.stages.tokenizer import path_of
from plm.tracker import Prefixed, Tracker

# 5: labelled rows read through the corpus readers (CSV rows with extra columns are bad_columns, strict decoding
# per row, blank lines are not rows) and quarantined with reasons (counts rows_read, quarantine.<reason>);
# fastText parents give unseen words their n-gram vectors (test_unseen_rate)
# 6: a classifier of a pretrained fastText parent keeps its n-gram rows (subwords.safetensors, config `subwords`) so
# words first met when served get their training vectors; word2vec / GloVe / scratch classifiers are byte-identical
# 7: `features` applies to a GPT decoder (frozen decoder's mean states + a CV logistic regression), so a GPT pipeline
# whose finetune.strategy (or first transfer strategy) is `features` now gets a decoder `features` candidate
NAME, VERSION = "finetune", 7


class Candidate(BaseModel):
    """One fine-tuned model the registry gate may promote."""

    family: str
    strategy: str
    kind: str
    model_dir: str
    metric: str
    parent: dict[str, str] | None = None
    """Lineage tags of the registered model it was fine-tuned from (`finetune.init`), set on its version."""


class Output(BaseModel):
    model_dir: str
    """The first candidate's model folder."""
    labels: list[Any]
    kind: str
    task_type: str
    strategy: str
    metric: str
    task_table: str = "task.parquet"
    candidates: list[Candidate]


def spec_slice(spec: PipelineSpec) -> dict[str, Any]:
    return output_slice(spec.finetune)


def finetune_positions(cfg: Any, n_train: int) -> list[int]:
    """Rows of the train split the finetune stage trains on: all, or `train_labels` of them drawn as the
    transfer report's first seed draws its subsets (so the candidate equals that report cell's fit)."""
    import numpy as np

    if cfg.train_labels is None or cfg.train_labels >= n_train:
        return list(range(n_train))
    return sorted(np.random.default_rng([cfg.seed, 11]).permutation(n_train)[: cfg.train_labels].tolist())


def _family_strategy(cfg: Any, task: Any) -> str:
    """The first of `finetune.strategy`, then `finetune.transfer_strategies`, that applies to the task's family."""
    wanted = [cfg.strategy, *cfg.transfer_strategies, "full", "embeddings"]
    usable = set(task.strategies(list(STRATEGIES)))
    return next(s for s in wanted if s in usable)


def run(p: Pipeline, tokenizer: StageResult, pretrain: StageResult, word_vectors: StageResult | None = None) -> StageResult:
    from plm.finetune.predict import TASK_FILE

    cfg = p.spec.finetune

    def work(w: StageWriter, tracker: Tracker) -> Done:
        import pyarrow.parquet as pq

        families = pretrained_families(p, tokenizer, pretrain, word_vectors)
        task0 = families[0][1]
        pq.write_table(task0.table, w.path / "task.parquet")
        positions = finetune_positions(cfg, len(task0.train_idx))
        metrics: dict[str, float] = {}
        candidates: list[Candidate] = []
        curves: list[str] = []
        key = f"test_{task0.primary}"
        for family, task in families:
            strategy = _family_strategy(cfg, task)
            main = "scratch" if strategy == "scratch" else "pretrained"
            if task.init_dir is not None and strategy not in ("scratch", "zero_shot"):
                main = "registered"  # finetune.init: the candidate starts from the registered parent
            runs = [main] + (["scratch"] if cfg.compare_scratch and main != "scratch" and strategy != "zero_shot" else [])
            prefix = "" if len(families) == 1 else f"{family}/"
            mprefix = "" if len(families) == 1 else f"{family}."
            for init in runs:
                result = task.fit(positions, w.path / f"{prefix}{init}", init == "pretrained", strategy,
                                  tracker=Prefixed(tracker, f"{mprefix}{init}."), progress=p.progress,
                                  registered=init == "registered")  # fmt: skip
                if FAMILIES[task.arch].tokenizer_in_model:
                    shutil.copy(path_of(tokenizer), result.model_dir / "tokenizer.json")
                (result.model_dir / TASK_FILE).write_text(task.task_file())
                metrics.update({f"{mprefix}{init}.{k}": v for k, v in result.metrics.items()})
                curves += [f"{mprefix}{init}.{k}" for k in ("train_loss", key)]
            if "scratch" in runs and main != "scratch":
                metrics[f"{mprefix}gain.{key}"] = metrics[f"{mprefix}{main}.{key}"] - metrics[f"{mprefix}scratch.{key}"]
            candidates.append(Candidate(family=family, strategy=strategy, kind=task.kind,
                                        model_dir=f"{prefix}{main}/model", metric=f"{mprefix}{main}.{key}",
                                        parent=_parent_tags(p, tokenizer) if main == "registered" else None))  # fmt: skip
        if cfg.task_type in ("classification", "pair_classification") and len(positions) > 0:
            metrics["majority_baseline"] = _majority(task0._labels(), task0.train_idx, task0.test_idx, positions)
        first = candidates[0]
        quarantine = report_quarantine(task0.data, tracker, p.log)
        tracker.log_curves(curves, f"fine-tuning {cfg.task}: pretrained vs scratch", "finetune_curves.png")
        counts = {"train_examples": float(len(positions)), "train_split": float(len(task0.train_idx)),
                  "test_examples": float(len(task0.test_idx)), "skipped_rows": float(task0.skipped),
                  "labels": float(len(task0.label_names)), **quarantine}  # fmt: skip
        output = Output(model_dir=first.model_dir, labels=task0.label_names, kind=first.kind, task_type=cfg.task_type,
                        strategy=first.strategy, metric=first.metric, candidates=candidates)  # fmt: skip
        return Done(counts, metrics, output)

    return p.run(STAGE, spec_slice(p.spec), labelled_inputs(p, tokenizer, pretrain, word_vectors), work)


def report_quarantine(data: Any, tracker: Tracker, log: Callable[[str], None]) -> dict[str, float]:
    """Labelled rows that are not examples, where a user finds them: the MLflow table `labelled_quarantine.json`
    (position, reason, excerpt), one summary line, and the counts `rows_read` and `quarantine.<reason>`.
    QA data (`QAData`) counts its unusable questions in `skipped_rows` only."""
    from plm.finetune.tasks import LabelledData

    if not isinstance(data, LabelledData):
        if data.skipped:
            log(f"finetune: skipped {data.skipped} unusable questions of {data.source}")
        return {}
    if data.quarantine:
        tracker.log_table(data.quarantine_table(), "labelled_quarantine.json")
        log(f"finetune: {data.summary()}; rows in the run's labelled_quarantine.json")
    return {"rows_read": float(data.rows_read), **{f"quarantine.{k}": float(v) for k, v in data.reasons().items()}}


def labelled_inputs(p: Pipeline, tokenizer: StageResult, pretrain: StageResult,
                    word_vectors: StageResult | None) -> dict[str, str]:  # fmt: skip
    """What a stage over the labelled task reads: the pretrained families, the tokenizer, the data file's digest
    and the registered parent of `finetune.init` (a re-pointed alias is new input)."""
    got = registered_init(p, tokenizer)
    return {"pretrain": pretrain.fingerprint, "tokenizer": tokenizer.fingerprint,
            "task_data": _task_data_digest(p.spec),
            **({"word_vectors": word_vectors.fingerprint} if word_vectors is not None else {}),
            **({} if got is None else {"init": f"{got['name']}/{got['version']}:{got['fingerprint']}"})}  # fmt: skip


def registered_init(p: Pipeline, tokenizer: StageResult) -> dict[str, Any] | None:
    """The registered model of `finetune.init`, downloaded once per run (plm.tracking.fetch_registered), its
    tokenizer checked against this pipeline's (the ids must mean the same tokens); None when unset."""
    init = p.spec.finetune.init
    if not init:
        return None
    key = ("init", init)
    if key not in p.memo:
        import hashlib
        import json

        from plm.artifacts import sha256_file
        from plm.tracking import fetch_registered, resolve_tracking_uri

        uri = resolve_tracking_uri(p.spec.tracking.uri, p.home)
        dest = p.home / "registered" / hashlib.sha256(init.encode()).hexdigest()[:16]
        shutil.rmtree(dest, ignore_errors=True)  # an alias may point at a newer version than last time
        got = fetch_registered(uri, init, dest)
        arch = json.loads((got["model_dir"] / "config.json").read_text()).get("arch", "bert")
        if arch == "embeddings":  # a word-vector classifier: words and its table, no token ids to agree on
            if p.spec.model.arch not in WORD_VECTOR_ARCHS and p.spec.word_vectors is None:
                raise ValueError(f"finetune.init {init} is a word-vector classifier; this pipeline has no word-vector "
                                 "family to start from it (set word_vectors, or model.arch word2vec/fasttext/glove)")  # fmt: skip
        elif sha256_file(got["tokenizer_path"]) != sha256_file(path_of(tokenizer)):
            raise ValueError(f"finetune.init {init}: its tokenizer differs from this pipeline's (train both on the same "
                             "tokenizer stage: same corpus and tokenizer spec)")  # fmt: skip
        elif arch != p.spec.model.arch:
            raise ValueError(f"finetune.init {init} is a {arch} model; this pipeline's model.arch is {p.spec.model.arch}")
        got["word_vectors"] = arch == "embeddings"
        p.memo[key] = got
    return p.memo[key]


def _parent_tags(p: Pipeline, tokenizer: StageResult) -> dict[str, str]:
    """Lineage of a version fine-tuned from `finetune.init`: the parent's name, version, URI and fingerprint."""
    got = registered_init(p, tokenizer)
    assert got is not None
    return {"plm.parent.model": got["name"], "plm.parent.version": str(got["version"]),
            "plm.parent.uri": f"models:/{got['name']}/{got['version']}", "plm.parent.init": str(p.spec.finetune.init),
            "plm.parent.fingerprint": got["fingerprint"]}  # fmt: skip


def _majority(labels: list[Any], train_idx: list[int], test_idx: list[int], positions: list[int]) -> float:
    """Test accuracy of always answering the most frequent training label (the floor every model must clear)."""
    from collections import Counter

    top = Counter(labels[train_idx[j]] for j in positions).most_common(1)[0][0]
    return sum(labels[i] == top for i in test_idx) / max(len(test_idx), 1)


def _task_data_digest(spec: PipelineSpec) -> str:
    """sha256 of the labelled data file: an edited file at the same path is new input, so the stage re-runs."""
    from plm.artifacts import sha256_file
    from plm.finetune.tasks import data_path

    path = data_path(spec.finetune)
    if not path.is_file():
        raise FileNotFoundError(f"finetune.data: {path} not found")
    return sha256_file(path)[:16]


def _labelled(p: Pipeline, tokenizer: StageResult, pretrain: StageResult) -> Any:
    """The labelled task of `finetune.task_type`, read, split and encoded for the pretrained model's family;
    prepared once per pipeline run (the finetune and transfer stages share it, and its encodings)."""
    from plm.finetune.run import prepare_task

    key = ("labelled", tokenizer.fingerprint, pretrain.fingerprint)
    if key not in p.memo:
        p.memo[key] = prepare_task(p.spec.finetune, pretrain.path / pretrain.output.model_dir, path_of(tokenizer),
                                   p.spec.model.arch)  # fmt: skip
    return p.memo[key]


def pretrained_families(p: Pipeline, tokenizer: StageResult, pretrain: StageResult,
                        word_vectors: StageResult | None) -> list[tuple[str, Any]]:  # fmt: skip
    """(family label, prepared task) per pretrained family of the pipeline: `model`, then its `word_vectors`."""
    task = _labelled(p, tokenizer, pretrain)
    families = [(pretrain.output.family_label, task)]
    if word_vectors is not None:
        key = ("word_vectors", word_vectors.fingerprint, pretrain.fingerprint)
        if key not in p.memo:
            p.memo[key] = task.for_family("word2vec", word_vectors.path / word_vectors.output.model_dir)
        families.append((word_vectors.output.family_label, p.memo[key]))
    got = registered_init(p, tokenizer)
    for _, t in families:  # the parent starts the family it belongs to: a word-vector classifier, word vectors
        t.init_dir = None if got is None or got["word_vectors"] != (t.arch == "word2vec") else got["model_dir"]
    return families


STAGE = Stage(NAME, VERSION, needs=("tokenizer", "pretrain"), uses=("word_vectors",), output=Output, run=run, command=True,
              label=lambda p: p.spec.finetune.task, applies=lambda spec: family_of(spec).finetunes)  # fmt: skip
