"""The model-family registry: one entry per `model.arch`, naming everything that differs between families.

A family says which examples it trains on (and which tokenizer family it needs), how its model config is
built, which trainer (`plm.train.pretrain`) runs it, the registered model kind and the metric the registry
gate compares, whether the pipeline fine-tunes on it and with which strategies. No `model.arch ==` branch
lives outside this file: a new family is one entry here, its trainer and its predictor.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plm.config import PipelineSpec

SGNS_VERSION = 3
"""Version of the compiled word2vec loop (`plm/train/sgns.py`): it enters the fingerprint of every model it trains.
2: sigmoid and loss from the C tool's 1000-step table, negatives from an alias table of count^0.75 (was one exp and
log per pair, a 10^7-entry table), the epoch in ~50k-word parts taken from one queue, input vectors initialised in
+-1/dim as gensim (was the C tool's +-0.5/dim). 3: one part per thread again, at its serial learning rate."""

STRATEGIES = ("full", "frozen", "discriminative", "embeddings", "features", "scratch", "zero_shot")
"""Every fine-tuning strategy, in the order a family's usable ones are listed."""
LOWER_IS_BETTER = frozenset({"val_perplexity", "val_loss"})
FEATURE_STRATEGIES = frozenset({"features"})
"""Strategies that train no weight of the model (a regression on its fixed outputs): from scratch they read a
random model, so they never share the trained-from-scratch run of `shared_scratch`."""


@dataclass(frozen=True)
class Family:
    arch: str
    kind: str
    """Registered model kind: the pretrained model is `<pipeline>-<kind>` (plm.tracking.PREDICTORS)."""
    gate_metric: str
    """The pretrain metric the registry gate compares to promote `@champion`."""
    objective: str
    """The `objectives.kinds` entry whose examples the trainer reads."""
    reads: str
    """What those examples are, for the error naming the missing objective."""
    trainer: str
    """`module:function` of its trainer in plm.train (imported when it runs: the registry imports no torch)."""
    curves: tuple[str, ...]
    """Training metrics plotted as `pretrain_curves.png`."""
    finetunes: bool
    """The pipeline fine-tunes on it (and reports transfer); otherwise it stops after registering the model."""
    strategies: tuple[str, ...] = ()
    """Fine-tuning strategies that apply to it."""
    tokenizer_family: str | None = None
    """The `tokenizer.family` it needs, if any."""
    tokenizer_in_model: bool = False
    """Its model folders carry `tokenizer.json` (token-id models), so fine-tuned ones get a copy too."""
    shared_scratch: bool = False
    """From scratch every trained strategy is the same run (full training from random weights): fitted once per
    cell. `features` is not one of them: its scratch twin reads fixed random weights (`FEATURE_STRATEGIES`)."""
    config: Callable[[PipelineSpec, int], Any] | None = None
    """Model config builder (spec, vocab size) of a transformer family."""
    resumable: bool = False
    """Its trainer checkpoints into the stage directory and resumes there (`train.resume`)."""
    uses_train_spec: bool = False
    """`train.*` shapes its weights (steps, lr, batch...); the vector families read only `train.seed`."""

    def spec_slice(self, spec: PipelineSpec, cfg: Any) -> dict[str, Any]:
        """What changes the weights of this family's model `cfg`: the pretrain fingerprint covers exactly this."""
        from plm.config import output_slice

        if self.uses_train_spec:
            return {"model": output_slice(cfg), "train": output_slice(spec.train)}
        engine = {"engine_version": SGNS_VERSION} if getattr(cfg, "engine", None) == "compiled" else {}
        return {"model": output_slice(cfg), "seed": spec.train.seed, **engine}

    @property
    def higher_is_better(self) -> bool:
        return self.gate_metric not in LOWER_IS_BETTER

    def check(self, spec: PipelineSpec) -> None:
        """The spec can train this family: its objective is generated, its tokenizer family is used."""
        if self.objective not in spec.objectives.kinds:
            raise ValueError(f"pretrain: model.arch={self.arch} trains on {self.reads}: "
                             f"objectives.kinds must include {self.objective}")  # fmt: skip
        if spec.train.nproc > 1 and not self.uses_train_spec:
            raise ValueError(f"train.nproc: model.arch={self.arch} trains in one process (its threads: model.threads)")
        if self.tokenizer_family and spec.tokenizer.family != self.tokenizer_family:
            raise ValueError(f"pretrain: model.arch={self.arch} needs tokenizer.family={self.tokenizer_family} "
                             "(<|endoftext|> ends documents)")  # fmt: skip

    def train(self, job: Any) -> Any:
        """Run the trainer on a `plm.train.pretrain.PretrainJob`; returns its `Trained`."""
        module, _, name = self.trainer.partition(":")
        return getattr(importlib.import_module(module), name)(job)


def _transformer_dims(spec: PipelineSpec, vocab_size: int) -> dict[str, Any]:
    m = spec.model
    return dict(vocab_size=vocab_size, max_position=max(m.max_position, spec.objectives.seq_len),  # type: ignore[union-attr]
                dropout=m.dropout, attention_dropout=m.attention_dropout, **m.dims())  # type: ignore[union-attr]  # fmt: skip


def _bert_config(spec: PipelineSpec, vocab_size: int) -> Any:
    from plm.models.bert import BertConfig

    return BertConfig(norm=spec.model.norm, **_transformer_dims(spec, vocab_size))  # type: ignore[union-attr]


def _gpt_config(spec: PipelineSpec, vocab_size: int) -> Any:
    from plm.models.gpt import GPTConfig

    return GPTConfig(**_transformer_dims(spec, vocab_size))


_VECTOR_STRATEGIES = ("embeddings", "features", "scratch")

FAMILIES: dict[str, Family] = {
    f.arch: f
    for f in (
        Family("bert", "encoder", "val_mlm_accuracy", "mlm", "MLM examples", "plm.train.pretrain:train_bert",
               ("loss", "mlm_accuracy", "nsp_accuracy", "lr", "data_wait_fraction"), finetunes=True,
               strategies=("full", "frozen", "discriminative", "scratch"), tokenizer_in_model=True,
               shared_scratch=True, config=_bert_config, resumable=True, uses_train_spec=True),
        Family("gpt", "decoder", "val_perplexity", "clm", "causal-LM examples", "plm.train.pretrain:train_gpt",
               ("loss", "accuracy", "perplexity", "lr", "data_wait_fraction"), finetunes=True,
               strategies=("full", "frozen", "discriminative", "features", "scratch", "zero_shot"), tokenizer_family="gpt",
               tokenizer_in_model=True, shared_scratch=True, config=_gpt_config, resumable=True, uses_train_spec=True),
        Family("word2vec", "word2vec", "wordsim_spearman", "skipgram", "skip-gram examples",
               "plm.train.pretrain:train_word2vec", ("loss", "lr", "words_per_s"), finetunes=True,
               strategies=_VECTOR_STRATEGIES),
        Family("fasttext", "fasttext", "wordsim_spearman", "skipgram", "skip-gram examples",
               "plm.train.pretrain:train_fasttext", ("loss", "lr", "words_per_s"), finetunes=True,
               strategies=_VECTOR_STRATEGIES),
        Family("glove", "glove", "wordsim_spearman", "cooccurrence", "co-occurrence counts",
               "plm.train.pretrain:train_glove", ("loss", "entries_per_s"), finetunes=True,
               strategies=_VECTOR_STRATEGIES),
    )
}  # fmt: skip
"""model.arch -> its family."""


def family_of(spec: PipelineSpec) -> Family:
    return FAMILIES[spec.model.arch]
