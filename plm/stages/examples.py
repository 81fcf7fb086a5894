"""examples: tokenized documents -> example shards per objective, with their realised statistics gated.

Layout: `encoded/<split>/` (token ids per sentence, word ids/offsets for whole-word masking),
`mlm/<split>/` (MLM + NSP or SOP), `clm/<split>/`, `skipgram/<split>/` (+ `vocab.parquet`),
`cooccurrence/train/`. Shards are written atomically into a resumable directory, so a killed run
continues shard by shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from plm.artifacts import StageWriter
from plm.config import PipelineSpec, output_slice
from plm.stages.runtime import Done, Pipeline, Stage, StageResult, data_cluster
from plm.stages.tokenizer import path_of
from plm.tracker import Progress, Tracker

NAME, VERSION = "examples", 3


class Output(BaseModel):
    objectives: list[str]
    """The objectives generated (`objectives.kinds`, sorted): one directory each."""


def spec_slice(spec: PipelineSpec) -> dict[str, Any]:
    return output_slice(spec.objectives)


def shards(result: StageResult, objective: str, split: str) -> list[Path]:
    """The example shards of one objective and split, in order."""
    return sorted((result.path / objective / split).glob("part-*.parquet"))


def run(p: Pipeline, ingest: StageResult, tokenizer: StageResult) -> StageResult:
    from plm.objectives.shardio import remove_partial
    from plm.objectives.shardrun import on_cluster
    from plm.tokenizer.specials import SpecialIds
    from plm.tokenizer.train import load_tokenizer

    cfg = p.spec.objectives

    def work(w: StageWriter, tracker: Tracker) -> Done:
        tokenizer_ = load_tokenizer(path_of(tokenizer))
        specials = SpecialIds.from_tokenizer(tokenizer_)
        files = ingest.output.files(p.home)
        counts: dict[str, float] = {}
        metrics: dict[str, float] = {}
        docs = _EncodedSplits(tokenizer_, files, cfg.whole_word != "none", p.progress, out=w.path / "encoded")
        remove_partial(w.path)  # a shard whose writer was killed: regenerated below
        with data_cluster(p.spec.runner, p.log) as client, on_cluster(client):
            if "mlm" in cfg.kinds:
                _bert_examples(p, cfg, docs, tokenizer_.get_vocab_size(), specials, w.path / "mlm", counts, metrics,
                               tracker)  # fmt: skip
            if "clm" in cfg.kinds:
                _clm_examples(p, cfg, docs, specials, w.path / "clm", counts, metrics)
            if "skipgram" in cfg.kinds:
                _skipgram_examples(p, cfg, files, w.path / "skipgram", counts, metrics)
            if "cooccurrence" in cfg.kinds:
                _cooccurrence_examples(p, cfg, files, w.path / "cooccurrence", counts, metrics)
        remove_partial(w.path)  # left by a worker that died mid-shard (its shard was redone elsewhere)
        return Done(counts, metrics, Output(objectives=sorted(cfg.kinds)))

    inputs = {"ingest": ingest.fingerprint, "tokenizer": tokenizer.fingerprint}
    return p.run(STAGE, spec_slice(p.spec), inputs, work, resumable=True)


class _EncodedSplits:
    """Each split of the lake encoded once, on first use, shared by the objectives."""

    def __init__(
        self, tokenizer_: Any, files: list[Path], with_words: bool, progress: Progress, out: Path | None = None
    ) -> None:
        self.tokenizer, self.files, self.with_words, self.progress = tokenizer_, files, with_words, progress
        self.out = out
        self.cache: dict[str, list[Any]] = {}

    def __getitem__(self, split: str) -> list[Any]:
        from plm.objectives.shardrun import cluster, run_shards
        from plm.tokenizer.encode import encode_documents, encode_file, write_encoded

        if split not in self.cache:
            if cluster() is not None:  # one job per lake file, concatenated in lake order (the same documents)
                work = {"tokenizer": self.tokenizer.to_str(), "split": split, "with_words": self.with_words}
                docs = [d for part in run_shards(encode_file, self.files, work) for d in part]
            else:
                docs = encode_documents(self.tokenizer, self.files, split, progress=self.progress,
                                        with_words=self.with_words)  # fmt: skip
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
    tracker.log_histogram(total.lengths.tolist(), "MLM/NSP sequence length (tokens)", "example_lengths.png")


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
    vocab = build_vocab(iter_units(files, "train", sg.unit), sg.min_count, sg.lowercase, sg.word_unit)
    if not vocab.words:
        raise ValueError(f"examples: no word occurs {sg.min_count} times (objectives.skipgram.min_count)")
    counts["skipgram.vocab_size"] = float(len(vocab.words))
    (out / "train").mkdir(parents=True, exist_ok=True)
    if not (out / "train" / VOCAB_FILE).exists():
        vocab.save(out / "train" / VOCAB_FILE)
    failures = []
    splits = ("train", "validation") if sg.train_shards else (() if sg.contexts else ("validation",))
    for split in splits:
        sentences = encode_sentences(iter_units(files, split, sg.unit), vocab, sg.lowercase, sg.word_unit)
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



STAGE = Stage(NAME, VERSION, needs=("ingest", "tokenizer"), output=Output, run=run, command=True,
              label=lambda p: f"{'+'.join(p.spec.objectives.kinds)}-{p.results['ingest'].output.snapshot_id}")  # fmt: skip
