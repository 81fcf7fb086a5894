"""One function per arrow of the pipeline. The CLI and the Prefect flows both call these.

Each stage computes its fingerprint from its spec slice and its inputs' fingerprints; a finished
output with that fingerprint is reused (and said so), otherwise the stage runs inside a nested
MLflow run and writes its output atomically under `artifacts/<stage>/<fingerprint>/`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plm.artifacts import StageWriter, fingerprint, lookup, stage_dir, write_stage
from plm.config import PipelineSpec
from plm.tracker import NullTracker, Progress, Tracker, no_progress

STAGE_VERSIONS = {"ingest": 1, "tokenizer": 2, "examples": 3, "pretrain": 1, "finetune": 2, "transfer": 1}
"""Bump a stage's version whenever its code changes what it writes: the fingerprint must change with it."""
STAGES = ("ingest", "tokenizer", "examples", "pretrain", "finetune", "register")
PREVIEW_TEXTS = ["a gripping , beautifully acted film .", "dull , tedious and far too long ."]


@dataclass
class StageResult:
    stage: str
    fingerprint: str
    path: Path
    reused: bool
    seconds: float
    counts: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "path": str(self.path),
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
            "inputs": self.inputs,
            "counts": self.counts,
            "metrics": self.metrics,
            **self.extra,
        }


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Pipeline:
    """One pipeline run: the spec, the home directory, the MLflow session and the results so far."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        progress: Progress = no_progress,
        log: Callable[[str], None] = lambda msg: None,
        tracking: bool = True,
        run_name: str | None = None,
    ) -> None:
        self.spec = spec
        self.home = spec.home_dir()
        self.progress = progress
        self.log = log
        self.tracking = tracking
        self.run_name = run_name or spec.name
        self.session: Any = None
        self.results: dict[str, StageResult] = {}

    def __enter__(self) -> Pipeline:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.tracking:
            from plm.tracking import TrackingSession, resolve_tracking_uri

            uri = resolve_tracking_uri(self.spec.tracking.uri, self.home)
            self.session = TrackingSession(
                uri, self.spec.tracking.experiment or self.spec.name, self.home, self.run_name,
                tags={"plm.pipeline": self.spec.name},
            )  # fmt: skip
            self.session.parent.log_params(flatten(self.spec.model_dump(mode="json", exclude={"home"})))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.session is not None:
            tags = {f"plm.fingerprint.{r.stage}": r.fingerprint for r in self.results.values()}
            tags.update({f"plm.reused.{r.stage}": str(r.reused).lower() for r in self.results.values()})
            if exc is not None:
                tags["plm.error"] = f"{exc_type.__name__}: {exc}"[:5000]
            self.session.parent.set_tags(tags)
            self.session.end(exc is None)

    @property
    def run_id(self) -> str | None:
        return self.session.run_id if self.session else None

    @contextmanager
    def _stage_tracker(self, stage: str, tags: dict[str, str]) -> Iterator[Tracker]:
        if self.session is None:
            yield NullTracker()
            return
        tracker = self.session.start_stage(stage, tags)
        ok = False
        try:
            yield tracker
            ok = True
        finally:
            self.session.end_stage(tracker, ok)

    def _run(
        self,
        stage: str,
        spec_slice: dict[str, Any],
        inputs: dict[str, str],
        work: Callable[[StageWriter, Tracker], None],
        resumable: bool = False,
    ) -> StageResult:
        """Reuse the finished output of this fingerprint, or run `work` into a fresh one."""
        fp = fingerprint(stage, STAGE_VERSIONS[stage], spec_slice, inputs)
        start = time.perf_counter()
        ref = lookup(self.home, stage, fp)
        tags = {"plm.fingerprint": fp, **{f"plm.input.{k}": v for k, v in inputs.items()}}
        if ref is not None:
            self.log(f"{stage}: reusing {fp} (finished {ref.manifest.get('created_at')})")
            with self._stage_tracker(stage, {**tags, "plm.reused": "true"}) as tracker:
                tracker.set_tags({"plm.source_run_id": str(ref.manifest.get("run_id"))})
                tracker.log_metrics(ref.manifest.get("metrics", {}))
            result = self._result(stage, fp, ref.path, ref.manifest, True, time.perf_counter() - start, inputs)
        else:
            self.log(f"{stage}: running {fp}")
            with self._stage_tracker(stage, tags) as tracker:
                tracker.log_params(flatten(spec_slice))
                self._log_inputs(tracker, stage, inputs)
                with write_stage(self.home, stage, fp, spec_slice, inputs, resumable=resumable) as writer:
                    work(writer, tracker)
                    writer.extra["run_id"] = getattr(tracker, "run_id", None)
                    tracker.log_metrics(writer.extra.get("metrics", {}))
                manifest = json.loads((stage_dir(self.home, stage, fp) / "manifest.json").read_text())
            result = self._result(stage, fp, stage_dir(self.home, stage, fp), manifest, False,
                                  time.perf_counter() - start, inputs)  # fmt: skip
            self.log(f"{stage}: done in {result.seconds:.1f}s")
        self.results[stage] = result
        return result

    def _log_inputs(self, tracker: Tracker, stage: str, inputs: dict[str, str]) -> None:
        """Upstream outputs as MLflow dataset inputs, digest = sha256 of their manifest (covers every file)."""
        log_input = getattr(tracker, "log_input", None)
        for name in inputs:
            upstream = self.results.get(name)
            if log_input is None or upstream is None:
                continue
            manifest = upstream.path / "manifest.json"
            digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
            # MLflow caps dataset digests at 36 characters: the full sha256 goes into a tag beside it.
            log_input(upstream.path, f"{name}-{upstream.fingerprint}", digest[:32], context=stage)
            tracker.set_tags({f"plm.input_digest.{name}": digest})

    @staticmethod
    def _result(
        stage: str, fp: str, path: Path, manifest: dict[str, Any], reused: bool, seconds: float, inputs: dict[str, str]
    ) -> StageResult:
        return StageResult(
            stage, fp, path, reused, seconds,
            counts=manifest.get("counts", {}), metrics=manifest.get("metrics", {}),
            run_id=manifest.get("run_id"), inputs=inputs, extra=manifest.get("extra", {}),
        )  # fmt: skip


# ---- stage functions ------------------------------------------------------------------------------


def ingest(p: Pipeline) -> StageResult:
    """Raw files -> cleaned, deduplicated documents in the Parquet lake, catalogued in DuckDB."""
    from plm.corpus.ingest import ingest_corpus, resolve_sources

    cfg = p.spec.corpus
    sources = resolve_sources(cfg.paths)
    spec_slice = cfg.model_dump(mode="json", exclude={"paths"})
    inputs = {"sources": fingerprint("sources", 1, {}, {s.sha256: s.format for s in sources})}

    def work(w: StageWriter, tracker: Tracker) -> None:
        result = ingest_corpus(cfg, p.home, sources=sources, progress=p.progress)
        counts = {k: float(v) for k, v in result.counts.items()}
        lake = [str(f.relative_to(p.home)) for f in result.files]
        (w.path / "sources.json").write_text(json.dumps(result.sources, indent=2, default=str))
        w.extra.update(
            counts=counts,
            metrics={**counts, **{f"reason.{k}": float(v) for k, v in result.reasons.items()}},
            extra={"snapshot_id": result.snapshot_id, "lake_files": lake, "reasons": result.reasons},
        )
        tracker.set_tags({"plm.snapshot_id": result.snapshot_id})
        tracker.log_artifact(w.path / "sources.json")

    return p._run("ingest", spec_slice, inputs, work)


def lake_files(p: Pipeline, ingest_result: StageResult) -> list[Path]:
    return [p.home / f for f in ingest_result.extra["lake_files"]]


def tokenizer(p: Pipeline, ingested: StageResult) -> StageResult:
    """Lake sentences -> a trained `tokenizer.json`, evaluated on the validation split."""
    from plm.tokenizer.train import evaluate_tokenizer, fit_tokenizer

    cfg = p.spec.tokenizer

    def work(w: StageWriter, tracker: Tracker) -> None:
        files = lake_files(p, ingested)
        tok, stats = fit_tokenizer(cfg, files, w.path / "tokenizer.json", progress=p.progress)
        if stats.sampled_fraction < 1:
            p.log(f"tokenizer: train split over tokenizer.max_train_bytes, trained on a "
                  f"{stats.sampled_fraction:.1%} hash sample of documents")  # fmt: skip
        metrics = {**evaluate_tokenizer(tok, files, "validation"), **stats.as_metrics()}
        w.extra.update(counts={"vocab_size": float(tok.get_vocab_size())}, metrics=metrics)
        tracker.log_artifact(w.path / "tokenizer.json")

    return p._run("tokenizer", cfg.model_dump(mode="json"), {"ingest": ingested.fingerprint}, work)


def examples(p: Pipeline, ingested: StageResult, tok: StageResult) -> StageResult:
    """Tokenized documents -> example shards per objective, with their realised statistics gated.

    Layout: `encoded/<split>/` (token ids per sentence, word ids/offsets for whole-word masking),
    `mlm/<split>/` (MLM + NSP or SOP), `clm/<split>/`, `skipgram/<split>/` (+ `vocab.parquet`).
    Shards are written atomically into a resumable directory, so a killed run continues shard by shard.
    """
    from plm.tokenizer.specials import SpecialIds
    from plm.tokenizer.train import load_tokenizer

    cfg = p.spec.objectives

    def work(w: StageWriter, tracker: Tracker) -> None:
        tokenizer_ = load_tokenizer(tok.path / "tokenizer.json")
        specials = SpecialIds.from_tokenizer(tokenizer_)
        files = lake_files(p, ingested)
        counts: dict[str, float] = {}
        metrics: dict[str, float] = {}
        docs = _EncodedSplits(tokenizer_, files, cfg.whole_word != "none", p.progress, out=w.path / "encoded")
        if "mlm" in cfg.kinds:
            _bert_examples(p, cfg, docs, tokenizer_.get_vocab_size(), specials, w.path / "mlm", counts, metrics, tracker)
        if "clm" in cfg.kinds:
            _clm_examples(p, cfg, docs, specials, w.path / "clm", counts, metrics)
        if "skipgram" in cfg.kinds:
            _skipgram_examples(p, cfg, files, w.path / "skipgram", counts, metrics)
        w.extra.update(counts=counts, metrics=metrics, extra={"objectives": sorted(cfg.kinds)})

    inputs = {"ingest": ingested.fingerprint, "tokenizer": tok.fingerprint}
    return p._run("examples", cfg.model_dump(mode="json"), inputs, work, resumable=True)


class _EncodedSplits:
    """Each split of the lake encoded once, on first use, shared by the objectives."""

    def __init__(
        self, tokenizer_: Any, files: list[Path], with_words: bool, progress: Progress, out: Path | None = None
    ) -> None:
        self.tokenizer, self.files, self.with_words, self.progress = tokenizer_, files, with_words, progress
        self.out = out
        self.cache: dict[str, list[Any]] = {}

    def __getitem__(self, split: str) -> list[Any]:
        from plm.tokenizer.encode import encode_documents, write_encoded

        if split not in self.cache:
            docs = encode_documents(self.tokenizer, self.files, split, progress=self.progress, with_words=self.with_words)
            if docs and self.out is not None:  # token ids (and word/offset info) kept as Parquet beside the examples
                write_encoded(docs, self.out / split)
            self.cache[split] = docs
        return self.cache[split]


def _split_seed(seed: int, split: str) -> int:
    return seed * 4 + {"train": 0, "validation": 1, "test": 2}[split]


def _bert_examples(
    p: Pipeline, cfg: Any, docs: _EncodedSplits, vocab_size: int, specials: Any, out: Path,
    counts: dict[str, float], metrics: dict[str, float], tracker: Tracker,
) -> None:  # fmt: skip
    from plm.objectives.shards import ExampleStats, check_statistics, write_bert_examples

    if specials.cls is None or specials.mask is None:
        raise ValueError("examples: mlm needs a tokenizer with [CLS]/[SEP]/[MASK]: set tokenizer.family=bert")
    total = ExampleStats()
    for split in ("train", "validation"):
        split_docs = docs[split]
        if split == "train" and len(split_docs) < 2:
            raise ValueError(f"examples: need at least 2 training documents for NSP, got {len(split_docs)}")
        if len(split_docs) < 2:  # too few held-out documents to pair: evaluate on none rather than leak
            counts["validation_examples"] = 0.0
            continue
        stats = write_bert_examples(split_docs, split, cfg, vocab_size, specials, out / split, p.progress)
        counts[f"{split}_examples"] = float(stats.examples)
        counts[f"{split}_tokens"] = float(stats.tokens)
        total.add(stats)
    metrics.update(total.summary())
    failures = check_statistics(metrics, cfg)
    if failures:
        raise ValueError("examples: realised statistics outside tolerance: " + "; ".join(failures))
    _log_histogram(tracker, total.lengths.tolist(), "MLM/NSP sequence length (tokens)", "example_lengths.png")


def _clm_examples(
    p: Pipeline, cfg: Any, docs: _EncodedSplits, specials: Any, out: Path,
    counts: dict[str, float], metrics: dict[str, float],
) -> None:  # fmt: skip
    from plm.objectives.clm import write_clm

    eos = specials.eos if specials.eos is not None else specials.sep  # BERT family: [SEP] ends a document
    if eos is None:
        raise ValueError("examples: clm needs an end-of-text token (tokenizer.family=gpt)")
    for split in ("train", "validation"):
        if not docs[split]:
            continue
        split_cfg = cfg.model_copy(update={"seed": _split_seed(cfg.seed, split)})
        stats = write_clm(docs[split], split, split_cfg, eos, out / split, p.progress)
        counts[f"clm.{split}_sequences"] = float(stats.summary()["sequences"])
        metrics.update({f"clm.{split}.{k}": float(v) for k, v in stats.summary().items()})
    if not counts.get("clm.train_sequences"):
        raise ValueError(f"examples: no CLM sequence of {cfg.seq_len} tokens could be packed from the train split")


def _skipgram_examples(
    p: Pipeline, cfg: Any, files: list[Path], out: Path, counts: dict[str, float], metrics: dict[str, float]
) -> None:
    from plm.objectives.skipgram import build_vocab, check_skipgram, encode_sentences, write_skipgram
    from plm.tokenizer.train import iter_sentences

    sg = cfg.skipgram
    vocab = build_vocab(iter_sentences(files, "train"), sg.min_count, sg.lowercase)
    if not vocab.words:
        raise ValueError(f"examples: no word occurs {sg.min_count} times (objectives.skipgram.min_count)")
    counts["skipgram.vocab_size"] = float(len(vocab.words))
    failures = []
    for split in ("train", "validation"):
        sentences = encode_sentences(iter_sentences(files, split), vocab, sg.lowercase)
        if not sentences:
            continue
        stats = write_skipgram(sentences, vocab, sg, _split_seed(cfg.seed, split), out / split, p.progress,
                               workers=cfg.workers)  # fmt: skip
        summary = stats.summary()
        counts[f"skipgram.{split}_pairs"] = float(summary["pairs"])
        metrics.update({f"skipgram.{split}.{k}": float(v) for k, v in summary.items()})
        if split == "train":
            failures = check_skipgram(stats, sg, cfg.tolerance)
    if failures:
        raise ValueError("examples: skip-gram statistics outside tolerance: " + "; ".join(failures))


def _log_histogram(tracker: Tracker, values: list[int], title: str, name: str) -> None:
    if not values or isinstance(tracker, NullTracker):
        return
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=40)
    ax.set_title(title)
    ax.set_ylabel("examples")
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        fig.savefig(Path(tmp) / name, dpi=100)
        tracker.log_artifact(Path(tmp) / name, "plots")
    plt.close(fig)


def _shards(ex: StageResult, objective: str, split: str) -> list[Path]:
    return sorted((ex.path / objective / split).glob("part-*.parquet"))


def pretrain(p: Pipeline, tok: StageResult, ex: StageResult) -> StageResult:
    """Example shards -> a pretrained BERT-style encoder (checkpoint + safetensors export)."""
    from plm.models.bert import BertConfig
    from plm.tokenizer.train import load_tokenizer
    from plm.train.engine import pretrain_bert

    spec = p.spec
    model_cfg = BertConfig(
        vocab_size=load_tokenizer(tok.path / "tokenizer.json").get_vocab_size(),
        max_position=max(spec.model.max_position, spec.objectives.seq_len),
        dropout=spec.model.dropout,
        attention_dropout=spec.model.attention_dropout,
        **spec.model.dims(),
    )

    if "mlm" not in spec.objectives.kinds:
        raise ValueError("pretrain: model.arch=bert trains on MLM examples: objectives.kinds must include mlm")

    def work(w: StageWriter, tracker: Tracker) -> None:
        result = pretrain_bert(
            model_cfg, spec.train, _shards(ex, "mlm", "train"), _shards(ex, "mlm", "validation"), w.path,
            tracker=tracker, progress=p.progress, masker=_dynamic_masker(p, tok),
        )  # fmt: skip
        shutil.copy(tok.path / "tokenizer.json", result.model_dir / "tokenizer.json")
        w.extra.update(
            counts={"steps": float(spec.train.steps), "tokens": result.metrics.get("tokens", 0.0)},
            metrics=result.metrics,
            extra={"model_dir": str(result.model_dir.relative_to(w.path)), "arch": f"bert-{spec.model.size}"},
        )
        if hasattr(tracker, "log_curves"):
            tracker.log_curves(["loss", "mlm_accuracy", "nsp_accuracy", "lr"], "pretraining", "pretrain_curves.png")

    slice_ = {"model": spec.model.model_dump(mode="json"), "train": spec.train.model_dump(mode="json")}
    return p._run("pretrain", slice_, {"tokenizer": tok.fingerprint, "examples": ex.fingerprint}, work)


def _dynamic_masker(p: Pipeline, tok: StageResult) -> Any:
    """The loader-side masker when `objectives.masking` is dynamic, else None (masks are in the shards)."""
    cfg = p.spec.objectives
    if cfg.masking != "dynamic":
        return None
    from plm.objectives.mlm import DynamicMasker
    from plm.tokenizer.specials import SpecialIds
    from plm.tokenizer.train import load_tokenizer

    tokenizer_ = load_tokenizer(tok.path / "tokenizer.json")
    specials = SpecialIds.from_tokenizer(tokenizer_)
    return DynamicMasker(
        vocab_size=tokenizer_.get_vocab_size(), n_special=specials.n_leading, mask_id=specials.mask,
        special_ids=tuple(sorted(specials.all)), probability=cfg.mlm_probability,
        max_predictions=cfg.max_predictions, mask_fraction=cfg.mask_fraction,
        random_fraction=cfg.random_fraction, mode=cfg.mlm_mode,
    )  # fmt: skip


def finetune(p: Pipeline, tok: StageResult, pre: StageResult) -> StageResult:
    """Labelled task -> a fine-tuned classifier from the pretrained encoder, and the same from scratch."""
    from plm.finetune.engine import finetune_classifier
    from plm.finetune.predict import TASK_FILE
    from plm.train.engine import load_pretrained

    cfg = p.spec.finetune
    pretrained_dir = pre.path / pre.extra["model_dir"]

    def work(w: StageWriter, tracker: Tracker) -> None:
        data, train_idx, test_idx, label_names, ids = _labelled(p, tok)
        label_ids = {name: i for i, name in enumerate(label_names)}
        _, bert_cfg = load_pretrained(pretrained_dir)
        runs = {"pretrained": pretrained_dir, **({"scratch": None} if cfg.compare_scratch else {})}
        metrics: dict[str, float] = {}
        for init, init_from in runs.items():
            result = finetune_classifier(
                bert_cfg, cfg,
                [ids[i] for i in train_idx], [label_ids[data.labels[i]] for i in train_idx],
                [ids[i] for i in test_idx], [label_ids[data.labels[i]] for i in test_idx],
                dict(enumerate(label_names)), w.path / init, init_from,
                tracker=_Prefixed(tracker, f"{init}."), progress=p.progress,
            )  # fmt: skip
            shutil.copy(tok.path / "tokenizer.json", result.model_dir / "tokenizer.json")
            (result.model_dir / TASK_FILE).write_text(json.dumps({"task": cfg.task, "seq_len": cfg.seq_len}))
            metrics.update({f"{init}.{k}": v for k, v in result.metrics.items()})
        if "scratch.test_accuracy" in metrics:
            metrics["gain.test_accuracy"] = metrics["pretrained.test_accuracy"] - metrics["scratch.test_accuracy"]
        w.extra.update(
            counts={"train_examples": float(len(train_idx)), "test_examples": float(len(test_idx)),
                    "skipped_rows": float(data.skipped), "labels": float(len(label_names))},
            metrics=metrics,
            extra={"model_dir": "pretrained/model", "labels": label_names},
        )  # fmt: skip
        if hasattr(tracker, "log_curves"):
            keys = [f"{i}.{k}" for i in runs for k in ("train_loss", "test_accuracy")]
            tracker.log_curves(keys, f"fine-tuning {cfg.task}: pretrained vs scratch", "finetune_curves.png")

    inputs = {"pretrain": pre.fingerprint, "tokenizer": tok.fingerprint}
    return p._run("finetune", cfg.model_dump(mode="json"), inputs, work)


def _labelled(p: Pipeline, tok: StageResult) -> tuple[Any, list[int], list[int], list[str], list[list[int]]]:
    """The labelled task: data, train/test indices, label names and `[CLS] text [SEP]` ids."""
    from plm.finetune.tasks import encode_for_classification, read_labelled, split_by_hash
    from plm.tokenizer.train import load_tokenizer

    cfg = p.spec.finetune
    data = read_labelled(cfg)
    train_idx, test_idx = split_by_hash(data.texts, cfg.test_fraction)
    if not train_idx or not test_idx:
        raise ValueError("finetune: the split left an empty train or test set; adjust finetune.test_fraction")
    ids = encode_for_classification(load_tokenizer(tok.path / "tokenizer.json"), data.texts, cfg.seq_len)
    return data, train_idx, test_idx, sorted(set(data.labels)), ids


def transfer(p: Pipeline, tok: StageResult, pre: StageResult) -> StageResult:
    """How much pretraining buys: strategies x {pretrained, scratch} x labelled fractions, same seed.

    Writes `report.csv` / `report.parquet` (strategy, init, fraction, examples, metric, value, seed)
    and `report.png` (test accuracy vs labelled examples, one line per strategy and init); each
    setting is a nested MLflow run under the stage's run.
    """
    import tempfile

    import numpy as np
    import pandas as pd

    from plm.finetune.engine import finetune_classifier
    from plm.train.engine import load_pretrained

    cfg = p.spec.finetune
    pretrained_dir = pre.path / pre.extra["model_dir"]

    def work(w: StageWriter, tracker: Tracker) -> None:
        data, train_idx, test_idx, label_names, ids = _labelled(p, tok)
        label_ids = {name: i for i, name in enumerate(label_names)}
        _, bert_cfg = load_pretrained(pretrained_dir)
        order = np.random.default_rng(cfg.seed).permutation(len(train_idx))  # nested subsets across fractions
        test = ([ids[i] for i in test_idx], [label_ids[data.labels[i]] for i in test_idx])
        rows: list[dict[str, Any]] = []
        settings = [(s, i, f) for s in cfg.transfer_strategies for i in ("pretrained", "scratch")
                    for f in sorted(cfg.transfer_fractions)]  # fmt: skip
        for k, (strategy, init, fraction) in enumerate(settings):
            subset = [train_idx[j] for j in sorted(order[: max(1, round(fraction * len(train_idx)))])]
            name = f"transfer[{strategy},{init},{fraction:g}]"
            child = p.session.start_stage(name, {"plm.strategy": strategy, "plm.init": init},
                                          parent=tracker.run_id) if p.session else NullTracker()  # type: ignore[attr-defined]  # fmt: skip
            ok = False
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    result = finetune_classifier(
                        bert_cfg, cfg, [ids[i] for i in subset], [label_ids[data.labels[i]] for i in subset],
                        *test, dict(enumerate(label_names)), Path(tmp),
                        pretrained_dir if init == "pretrained" else None, tracker=child, strategy=strategy,
                    )  # fmt: skip
                ok = True
            finally:
                if p.session:
                    p.session.end_stage(child, ok)
            for metric in ("accuracy", "macro_f1"):
                rows.append({"strategy": strategy, "init": init, "fraction": fraction, "examples": len(subset),
                             "metric": metric, "value": result.metrics[f"test_{metric}"], "seed": cfg.seed})  # fmt: skip
            p.progress("transfer", k + 1, len(settings))
        report = pd.DataFrame(rows)
        report.to_csv(w.path / "report.csv", index=False)
        report.to_parquet(w.path / "report.parquet", index=False)
        acc = report[report.metric == "accuracy"].pivot_table(index=["strategy", "fraction"], columns="init", values="value")
        metrics = {f"gain.{s}.{f:g}": float(r["pretrained"] - r["scratch"]) for (s, f), r in acc.iterrows()}
        metrics |= {f"{init}.{s}.{f:g}": float(r[init]) for (s, f), r in acc.iterrows() for init in ("pretrained", "scratch")}
        _plot_transfer(report, w.path / "report.png", cfg.task)
        tracker.log_artifact(w.path / "report.csv")
        tracker.log_artifact(w.path / "report.png", "plots")
        w.extra.update(counts={"settings": float(len(settings)), "train_examples": float(len(train_idx)),
                               "test_examples": float(len(test_idx))},
                       metrics=metrics, extra={"report_path": "report.csv"})  # fmt: skip

    inputs = {"pretrain": pre.fingerprint, "tokenizer": tok.fingerprint}
    return p._run("transfer", cfg.model_dump(mode="json"), inputs, work)


def _plot_transfer(report: Any, out: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = report[report.metric == "accuracy"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for (strategy, init), part in acc.groupby(["strategy", "init"]):
        part = part.sort_values("examples")
        ax.plot(part["examples"], part["value"], marker="o", linestyle="-" if init == "pretrained" else "--",
                label=f"{strategy} ({init})")  # fmt: skip
    ax.set_xlabel("labelled training examples")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{task}: pretrained vs scratch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


class _Prefixed:
    """A tracker view that prefixes metric names (pretrained.* vs scratch.* in one stage run)."""

    def __init__(self, inner: Tracker, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def log_params(self, params: dict[str, Any]) -> None:
        self.inner.log_params({self.prefix + k: v for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics({self.prefix + k: v for k, v in metrics.items()}, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.inner.log_artifact(path, artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.inner.set_tags(tags)


def register(p: Pipeline) -> StageResult:
    """Pretrained encoder and fine-tuned model -> MLflow registry, with lineage tags and aliases.

    A version built from the same fingerprint is reused, so re-runs register nothing new.
    """
    from plm.tracking import find_version, log_pyfunc_model, register_version

    start = time.perf_counter()
    r = p.results
    lineage = {
        "plm.pipeline": p.spec.name,
        "plm.snapshot_id": r["ingest"].extra["snapshot_id"],
        **{f"plm.fingerprint.{s}": r[s].fingerprint for s in ("ingest", "tokenizer", "examples", "pretrain", "finetune")},
        **{f"plm.run_id.{s}": str(r[s].run_id) for s in ("ingest", "tokenizer", "examples", "pretrain", "finetune")},
    }
    targets = [
        (f"{p.spec.name}-encoder", "encoder", r["pretrain"], "val_mlm_accuracy"),
        (f"{p.spec.name}-{p.spec.finetune.task}", "classifier", r["finetune"], "pretrained.test_accuracy"),
    ]
    fp = fingerprint("register", 1, {}, {name: res.fingerprint for name, _, res, _ in targets})
    models: dict[str, Any] = {}
    if p.session is None or not p.spec.tracking.register_models:
        return StageResult("register", fp, p.home, True, 0.0, extra={"models": models})
    tok_path = r["tokenizer"].path / "tokenizer.json"
    with p._stage_tracker("register", {"plm.fingerprint": fp}) as tracker:
        for name, kind, res, metric in targets:
            existing = find_version(p.session.client, name, res.fingerprint)
            if existing is not None:
                p.log(f"register: {name} version {existing.version} already holds {res.fingerprint}")
                models[name] = {"version": int(existing.version), "uri": f"models:/{name}/{existing.version}",
                                "reused": True}  # fmt: skip
                continue
            model_dir = res.path / res.extra["model_dir"]
            uri = log_pyfunc_model(tracker, kind, model_dir, tok_path, PREVIEW_TEXTS)
            value = float(res.metrics.get(metric, float("nan")))
            decision = register_version(p.session, uri, name, {**lineage, "plm.fingerprint": res.fingerprint}, metric, value)
            tracker.log_metrics({f"{name}.{metric}": value})
            tracker.set_tags({f"{name}.promotion": json.dumps(decision)})
            p.log(f"register: {name} v{decision['version']} {metric}={value:.4f} "
                  f"{'promoted to champion' if decision['promoted'] else 'kept as candidate'}")  # fmt: skip
            models[name] = {"version": decision["version"], "uri": f"models:/{name}/{decision['version']}",
                            "reused": False, "promoted": decision["promoted"]}  # fmt: skip
        run_id = getattr(tracker, "run_id", None)
    reused = all(m["reused"] for m in models.values())
    result = StageResult("register", fp, p.home, reused, time.perf_counter() - start, run_id=run_id,
                         extra={"models": models})  # fmt: skip
    r["register"] = result
    return result


def run_all(p: Pipeline) -> list[StageResult]:
    """The whole chain without Prefect (the flow in flows/pipeline.py makes the same calls as tasks)."""
    ing = ingest(p)
    tok = tokenizer(p, ing)
    ex = examples(p, ing, tok)
    pre = pretrain(p, tok, ex)
    finetune(p, tok, pre)
    register(p)
    return list(p.results.values())


def compare_tokenizers(specs: dict[str, PipelineSpec], progress: Progress = no_progress) -> list[dict[str, Any]]:
    """Train (or reuse) each spec's tokenizer and evaluate all of them on the first spec's validation split."""
    from plm.tokenizer.train import compare_tokenizers as compare

    paths: dict[str, Path] = {}
    files: list[Path] = []
    for name, spec in specs.items():
        with Pipeline(spec, progress=progress, tracking=False) as p:
            ing = ingest(p)
            paths[name] = tokenizer(p, ing).path / "tokenizer.json"
            files = files or lake_files(p, ing)
    return compare(paths, files, "validation")
