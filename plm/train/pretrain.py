"""One trainer per model family: example shards in, a trained model folder and its exports out.

The pretrain stage (plm.stages.pretrain) builds a `PretrainJob` and calls the trainer its family names
in `plm.families`; a trainer returns the counts, metrics and `PretrainOutput` the stage saves in its
manifest. Trainers know nothing of fingerprints, manifests or MLflow runs (they record through the tracker).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from plm.config import PipelineSpec
from plm.tracker import Progress, Tracker


class PretrainOutput(BaseModel):
    """What the pretrain (and word_vectors) stage wrote, relative to its output directory."""

    model_dir: str
    """The plm model folder (what fine-tuning and the registry load)."""
    arch: str
    """`<arch>-<size>` / `<arch>-<dim>d` of the model (word2vec keeps `word2vec`, its size is in `label`)."""
    kind: str
    """Registered model kind (`<pipeline>-<kind>`, plm.tracking.PREDICTORS)."""
    label: str | None = None
    export_dir: str | None = None
    """A `transformers` folder (None when no HF tokenizer config exists for the pair)."""
    export_path: str | None = None
    """The peers' binary export (word2vec C binary, fastText `.bin`, GloVe text)."""
    export_text_path: str | None = None
    checkpoint: str | None = None

    @property
    def family_label(self) -> str:
        """Names the family in fine-tuning candidates and the transfer report."""
        return self.label or self.arch


class Trained(NamedTuple):
    counts: dict[str, float]
    metrics: dict[str, float]
    output: PretrainOutput


@dataclass
class PretrainJob:
    """Everything one trainer needs, as one bundle (the spec, where things are, where to record)."""

    spec: PipelineSpec
    cfg: Any
    """The model slice trained: `spec.model`, or `spec.word_vectors` for a BERT pipeline's companion vectors."""
    kind: str
    out: Path
    tokenizer: Path
    examples: Path
    lake_files: Callable[[], list[Path]]
    """The lake files the examples came from (resolved only by engines that draw their own pairs)."""
    tracker: Tracker
    progress: Progress
    log: Callable[[str], None]
    inputs: dict[str, str]
    model_config: Any = None
    """The family's model config (transformers), from `Family.config`."""

    def shards(self, objective: str, split: str) -> list[Path]:
        return sorted((self.examples / objective / split).glob("part-*.parquet"))


# ---- transformers ---------------------------------------------------------------------------------


def train_bert(job: PretrainJob) -> Trained:
    """A BERT encoder on MLM + NSP/SOP shards (masks from the shards, or the loader's with dynamic masking)."""
    return _train_transformer(job, "mlm")


def train_gpt(job: PretrainJob) -> Trained:
    """A GPT decoder on packed CLM shards."""
    return _train_transformer(job, "clm")


def _fit(job: PretrainJob, objective: str, resume_from: Path | None, dist: Any = None) -> Any:
    """One process's (or one rank's) training run: the engine on this job's shards."""
    from plm.train.engine import pretrain_bert, pretrain_gpt

    shards = (job.shards(objective, "train"), job.shards(objective, "validation"))
    kw = dict(tracker=job.tracker, progress=job.progress, resume_from=resume_from, extra={"fingerprints": job.inputs},
              dist=dist)  # fmt: skip
    if objective == "mlm":
        return pretrain_bert(job.model_config, job.spec.train, *shards, job.out, masker=dynamic_masker(job), **kw)
    return pretrain_gpt(job.model_config, job.spec.train, *shards, job.out, **kw)


def _train_transformer(job: PretrainJob, objective: str) -> Trained:
    """`checkpoint.pt` (final state), `checkpoints/` (last `train.keep_checkpoints` + `best.pt`), `model/` (plm
    folder + tokenizer.json) and `hf/` (a `transformers` folder). With `train.resume` a killed run continues
    from its latest checkpoint in the (resumable) output directory."""
    from plm.train.engine import clear_checkpoints, resume_point
    from plm.train.export import export_hf

    spec = job.spec
    resume_from = resume_point(job.out)
    if resume_from is not None and not spec.train.resume:
        job.log(f"pretrain: an interrupted attempt left {resume_from.name}; starting over "
                "(pass --resume or train.resume=true to continue from it)")  # fmt: skip
        clear_checkpoints(job.out)
        resume_from = None
    elif resume_from is not None:
        job.log(f"pretrain: resuming from {resume_from}")
    elif spec.train.resume:
        job.log("pretrain: train.resume is set but no checkpoint exists yet: starting from step 1")
    if not job.shards(objective, "train"):
        raise ValueError(f"pretrain: no {objective} training shards in {job.examples / objective / 'train'}")
    if spec.train.nproc > 1:
        result = launch_ranks(job, objective, resume_from)
    else:
        result = _fit(job, objective, resume_from)
    shutil.copy(job.tokenizer, result.model_dir / "tokenizer.json")
    export_dir: str | None = "hf"
    try:
        export_hf(result.model, job.tokenizer, job.out / "hf", spec.tokenizer.family)
    except ValueError as exc:  # e.g. a BERT trained with a gpt-family tokenizer: no HF tokenizer config for it
        job.log(f"pretrain: no transformers export: {exc}")
        job.tracker.set_tags({"plm.export_skipped": str(exc)[:5000]})
        export_dir = None
    output = PretrainOutput(model_dir=str(result.model_dir.relative_to(job.out)), export_dir=export_dir,
                            checkpoint="checkpoint.pt", arch=spec.model.label(), kind=job.kind)  # fmt: skip
    counts = {"steps": float(spec.train.steps), "tokens": result.metrics.get("tokens", 0.0)}
    return Trained(counts, result.metrics, output)


# ---- data parallel: `train.nproc` ranks under torch.distributed.run ------------------------------------

_RANK_DIR = ".ranks"
"""Inside the stage directory while ranks run: the job, and rank 0's metrics and metric history (removed after)."""


def launch_ranks(job: PretrainJob, objective: str, resume_from: Path | None) -> Any:
    """Train with `train.nproc` DDP processes launched by `torch.distributed.run` (this process waits), then
    load the model rank 0 wrote and replay rank 0's parameters and metric history into this job's tracker.

    `--standalone` on one node; with torchrun's `PET_NNODES` / `PET_RDZV_ENDPOINT` (and `PET_NODE_RANK`) in the
    environment, its rendezvous joins the other nodes instead.
    """
    import json
    import os
    import subprocess
    import sys

    from plm.train.engine import PretrainResult
    from plm.train.export import load_model_dir

    n = job.spec.train.nproc
    ranks = job.out / _RANK_DIR
    ranks.mkdir(parents=True, exist_ok=True)
    (ranks / "job.json").write_text(json.dumps({
        "objective": objective, "spec": job.spec.model_dump(mode="json"), "model_config": job.model_config.to_dict(),
        "kind": job.kind, "out": str(job.out), "tokenizer": str(job.tokenizer), "examples": str(job.examples),
        "inputs": job.inputs, "resume_from": str(resume_from) if resume_from else None,
    }))  # fmt: skip
    rdzv = [] if os.environ.get("PET_NNODES") or os.environ.get("PET_RDZV_ENDPOINT") else ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *rdzv, "--nproc_per_node", str(n), "-m", "plm.train.pretrain",
           str(ranks / "job.json")]  # fmt: skip
    job.log(f"pretrain: launching {n} processes: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pretrain: torch.distributed.run with {n} processes failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")  # fmt: skip
    record = json.loads((ranks / "rank0.json").read_text())
    job.tracker.log_params(record["params"])
    for key, points in record["history"].items():
        for step, value in points:
            job.tracker.log_metrics({key: value}, step)
    import shutil as _shutil

    _shutil.rmtree(ranks)
    model, _ = load_model_dir(job.out / "model")
    return PretrainResult(metrics=record["metrics"], checkpoint=job.out / "checkpoint.pt", model_dir=job.out / "model",
                          model=model)  # fmt: skip


def _rank_main(job_file: str) -> None:
    """One torchrun rank: rebuild the job from `job.json`, join the process group, train; rank 0 records."""
    import json

    from plm.models.bert import BertConfig
    from plm.models.gpt import GPTConfig
    from plm.tracker import NullTracker, no_progress
    from plm.train.distributed import init_distributed, shutdown

    d = json.loads(Path(job_file).read_text())
    spec = PipelineSpec.model_validate(d["spec"])
    config_cls = BertConfig if d["objective"] == "mlm" else GPTConfig
    tracker = NullTracker()
    job = PretrainJob(spec, spec.model, d["kind"], Path(d["out"]), Path(d["tokenizer"]), Path(d["examples"]),
                      lambda: [], tracker, no_progress, print, d["inputs"], config_cls.from_dict(d["model_config"]))  # fmt: skip
    ctx = init_distributed(spec.train.device)
    try:
        result = _fit(job, d["objective"], Path(d["resume_from"]) if d["resume_from"] else None, dist=ctx)
        if ctx.is_main:
            record = {"metrics": result.metrics, "params": {k: str(v) for k, v in tracker.params.items()},
                      "history": tracker.history}  # fmt: skip
            (Path(job_file).parent / "rank0.json").write_text(json.dumps(record))
    finally:
        shutdown(ctx)


def dynamic_masker(job: PretrainJob) -> Any:
    """The loader-side masker when `objectives.masking` is dynamic, else None (masks are in the shards)."""
    cfg = job.spec.objectives
    if cfg.masking != "dynamic":
        return None
    from plm.objectives.mlm import DynamicMasker
    from plm.tokenizer.specials import SpecialIds
    from plm.tokenizer.train import load_tokenizer

    tokenizer_ = load_tokenizer(job.tokenizer)
    specials = SpecialIds.from_tokenizer(tokenizer_)
    return DynamicMasker(
        vocab_size=tokenizer_.get_vocab_size(), n_special=specials.n_leading, mask_id=specials.mask,
        special_ids=tuple(sorted(specials.all)), probability=cfg.mlm_probability,
        max_predictions=cfg.max_predictions, mask_fraction=cfg.mask_fraction,
        random_fraction=cfg.random_fraction, mode=cfg.mlm_mode,
    )  # fmt: skip


# ---- word vectors ---------------------------------------------------------------------------------


def _train_units(job: PretrainJob, vocab: Any, unit: str, lowercase: bool, word_unit: str = "eojeol") -> list[Any]:
    """The train split of the lake these examples came from, encoded against `vocab` (sentences or documents),
    for engines and epochs that draw their own pairs."""
    from plm.objectives.skipgram import encode_sentences
    from plm.tokenizer.train import iter_units

    return encode_sentences(iter_units(job.lake_files(), "train", unit), vocab, lowercase, word_unit)


def _found(metrics: dict[str, float]) -> dict[str, float]:
    """nan (no held-out shards, nothing covered) is left out."""
    return {k: v for k, v in metrics.items() if v == v}


def train_word2vec(job: PretrainJob) -> Trained:
    """Skip-gram (or CBOW) shards -> word vectors: plm folder `model/`, `vectors.bin` / `vectors.txt` (word2vec C
    formats), evaluated on held-out loss, WordSim-353 and the Google analogies.

    torch engine: epoch 1 replays the train shards; later epochs re-draw from the lake's sentences.
    compiled engine: every epoch is drawn from the lake's sentences (or documents) by the numba loop.
    """
    from plm.eval.wordsim import similarity_metrics
    from plm.objectives.skipgram import VOCAB_FILE, Vocab
    from plm.train.word2vec import (evaluate_loss, save_word2vec, save_word_vectors, train_word2vec as train,
                                    train_word2vec_compiled)  # fmt: skip

    cfg, sg, seed = job.cfg, job.spec.objectives.skipgram, job.spec.train.seed
    vocab = Vocab.load(job.examples / "skipgram" / "train" / VOCAB_FILE)
    sentences = None
    if cfg.engine == "compiled" or (cfg.regenerate and cfg.epochs > 1):  # the sentences the pairs come from
        sentences = _train_units(job, vocab, sg.unit, sg.lowercase, sg.word_unit)
    if cfg.engine == "compiled":
        result = train_word2vec_compiled(cfg, sg, vocab, sentences, seed=seed, tracker=job.tracker, progress=job.progress)
    else:
        result = train(cfg, sg, vocab, sentences, job.shards("skipgram", "train"), seed=seed, tracker=job.tracker,
                       progress=job.progress)  # fmt: skip
    save_word_vectors(job.out / "model", result.model, vocab, sg.lowercase, sg.word_unit)
    save_word2vec(job.out / "vectors.bin", result.words, result.vectors, binary=True)
    save_word2vec(job.out / "vectors.txt", result.words, result.vectors, binary=False)
    metrics = {**result.metrics, "val_loss": evaluate_loss(result.model, job.shards("skipgram", "validation")),
               **similarity_metrics(result.words, result.vectors, cfg.analogy_vocab, sg.lowercase)}
    counts = {"vocab_size": float(len(vocab)), "words": result.metrics["words"], "pairs": result.metrics["pairs"]}
    output = PretrainOutput(model_dir="model", export_path="vectors.bin", export_text_path="vectors.txt",
                            arch="word2vec", label=cfg.label(), kind=job.kind)  # fmt: skip
    return Trained(counts, _found(metrics), output)


def train_fasttext(job: PretrainJob) -> Trained:
    """Skip-gram (or CBOW) shards -> fastText vectors (words + hashed character n-grams): plm folder `model/`,
    `vectors.bin` (fastText's binary model) and `vectors.vec`, evaluated as word2vec is. The same data path as
    word2vec's torch engine: epoch 1 replays the train shards, later epochs re-draw from the lake's sentences."""
    from plm.eval.wordsim import similarity_metrics
    from plm.objectives.skipgram import VOCAB_FILE, Vocab
    from plm.train.fasttext import export_words, save_fasttext_bin, save_fasttext_folder
    from plm.train.fasttext import train_fasttext as train
    from plm.train.word2vec import evaluate_loss, save_word2vec

    cfg, sg = job.cfg, job.spec.objectives.skipgram
    vocab = Vocab.load(job.examples / "skipgram" / "train" / VOCAB_FILE)
    sentences = None
    if cfg.regenerate and cfg.epochs > 1:
        sentences = _train_units(job, vocab, sg.unit, sg.lowercase, sg.word_unit)
    result = train(cfg, sg, vocab, sentences, job.shards("skipgram", "train"), seed=job.spec.train.seed,
                   tracker=job.tracker, progress=job.progress)  # fmt: skip
    model = result.model
    save_fasttext_folder(job.out / "model", model, vocab, cfg, sg.lowercase, sg.word_unit)
    words = export_words(vocab.words, cfg.subword)  # jamo models: decomposed, so fastText's n-grams match
    save_fasttext_bin(job.out / "vectors.bin", words, vocab.counts, model.in_embed.weight.detach().numpy(),
                      model.out_embed.weight.detach().numpy(), minn=cfg.minn, maxn=cfg.maxn if cfg.buckets else 0,
                      buckets=cfg.buckets, window=sg.window, epochs=cfg.epochs, min_count=sg.min_count,
                      negatives=sg.negatives, subsample=sg.subsample, cbow=sg.cbow)  # fmt: skip
    save_word2vec(job.out / "vectors.vec", words, result.vectors, binary=False)
    metrics = {**result.metrics, "val_loss": evaluate_loss(model, job.shards("skipgram", "validation")),
               **similarity_metrics(result.words, result.vectors, cfg.analogy_vocab, sg.lowercase),
               **_korean_wordforms(job, vocab, result, cfg)}
    counts = {"vocab_size": float(len(vocab)), "words": result.metrics["words"], "pairs": result.metrics["pairs"]}
    output = PretrainOutput(model_dir="model", export_path="vectors.bin", export_text_path="vectors.vec",
                            arch=cfg.label(), kind=job.kind)  # fmt: skip
    return Trained(counts, _found(metrics), output)


def _korean_wordforms(job: PretrainJob, vocab: Any, result: Any, cfg: Any) -> dict[str, float]:
    """`plm.eval.wordform` on a Korean corpus with eojeol words: the lake's words (train and validation) the
    vocabulary lacks are the queries, each from its n-grams; empty for other corpora and for morpheme words
    (their vocabulary holds morphemes, not the eojeol the task ranks)."""
    from plm.eval.wordform import hangul_share, korean_wordform_metrics
    from plm.objectives.skipgram import split_words_batch
    from plm.objectives.subwords import ngram_buckets
    from plm.tokenizer.train import iter_units

    sg = job.spec.objectives.skipgram
    if sg.word_unit != "eojeol" or hangul_share(vocab.words) < 0.5:
        return {}
    unseen: set[str] = set()
    for split in ("train", "validation"):
        for batch in iter_units(job.lake_files(), split, sg.unit):
            unseen.update(w for words in split_words_batch(batch, sg.lowercase) for w in words if w not in vocab.index)
    maxn = cfg.maxn if cfg.buckets else 0

    def vector(word: str) -> Any:
        buckets = ngram_buckets(word, cfg.minn, maxn, cfg.buckets, cfg.subword)
        return result.model.ngram_vector(buckets).numpy() if buckets else None

    return korean_wordform_metrics(vocab.words, vocab.counts, result.vectors, vector, unseen, job.spec.train.seed)


def train_glove(job: PretrainJob) -> Trained:
    """Co-occurrence parts -> GloVe vectors (w + c): plm folder `model/` and `vectors.txt` (GloVe's text format, no
    header), evaluated on WordSim-353 and the Google analogies."""
    from plm.eval.wordsim import similarity_metrics
    from plm.objectives.cooccurrence import read_cooccurrence
    from plm.objectives.skipgram import VOCAB_FILE, Vocab
    from plm.train.glove import save_glove_folder, save_glove_text
    from plm.train.glove import train_glove as train

    cfg, co = job.cfg, job.spec.objectives.cooccurrence
    vocab = Vocab.load(job.examples / "cooccurrence" / "train" / VOCAB_FILE)
    i, j, x = read_cooccurrence(job.shards("cooccurrence", "train"))
    result = train(cfg, vocab, i, j, x, seed=job.spec.train.seed, tracker=job.tracker, progress=job.progress)
    save_glove_folder(job.out / "model", result.model, vocab, co.lowercase)
    save_glove_text(job.out / "vectors.txt", result.words, result.vectors)
    metrics = {**result.metrics, **similarity_metrics(result.words, result.vectors, cfg.analogy_vocab, co.lowercase)}
    counts = {"vocab_size": float(len(vocab)), "entries": result.metrics["entries"]}
    output = PretrainOutput(model_dir="model", export_path="vectors.txt", arch=cfg.label(), kind=job.kind)
    return Trained(counts, _found(metrics), output)


if __name__ == "__main__":  # one rank of `launch_ranks`
    import sys

    _rank_main(sys.argv[1])
