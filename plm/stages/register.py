"""register: the pretrained model(s) and every fine-tuned candidate -> MLflow registry, with lineage tags,
aliases and the promotion gate.

What is registered is what the run produced: the pretrained model `<pipeline>-<kind>` (gated on its family's
metric), the companion word vectors, and the fine-tuned candidates of one task, which share the name
`<pipeline>-<task>`; the gate promotes the one whose held-out metric beats the champion. A version built
from the same fingerprint is reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pydantic import BaseModel

from plm.artifacts import fingerprint
from plm.families import FAMILIES, LOWER_IS_BETTER, family_of
from plm.stages.finetune import Candidate
from plm.stages.ingest import sample_lineage
from plm.stages.runtime import Pipeline, Stage, StageResult
from plm.stages.tokenizer import path_of

NAME, VERSION = "register", 1
PREVIEW_TEXTS = ["a gripping , beautifully acted film .", "dull , tedious and far too long ."]
LINEAGE = ("ingest", "tokenizer", "examples", "pretrain", "word_vectors", "finetune", "transfer")


class Registered(BaseModel):
    version: int
    uri: str
    reused: bool
    promoted: bool | None = None
    family: str | None = None
    strategy: str | None = None
    metric: str | None = None
    value: float | None = None


class Output(BaseModel):
    models: dict[str, Registered] = {}
    """`<name>` (or `<name>:<family>` for one of several candidates) -> the version registered."""


@dataclass(frozen=True)
class Target:
    """One model offered to the registry: its name and kind, the stage result holding it, the gate metric."""

    name: str
    kind: str
    result: StageResult
    metric: str
    model_dir: str
    candidate: Candidate | None = None
    """Set for one of several fine-tuned candidates sharing a name (the version is then named by family too)."""
    parent: dict[str, str] | None = None
    """Lineage tags of the registered model it was fine-tuned from (`finetune.init`)."""

    @property
    def fingerprint(self) -> str:
        fp = self.result.fingerprint
        return f"{fp}-{self.candidate.family}" if self.candidate is not None else fp

    @property
    def key(self) -> str:
        return f"{self.name}:{self.candidate.family}" if self.candidate is not None else self.name


def targets(p: Pipeline, pretrain: StageResult, word_vectors: StageResult | None,
            finetune: StageResult | None) -> list[Target]:  # fmt: skip
    family = family_of(p.spec)
    gate = p.spec.tracking.gate_metric or family.gate_metric
    if p.spec.tracking.gate_metric and gate not in pretrain.metrics:
        raise ValueError(f"tracking.gate_metric: the pretrain stage logged no {gate!r} "
                         f"(it has: {', '.join(sorted(pretrain.metrics)) or 'none'})")  # fmt: skip
    out = [Target(f"{p.spec.name}-{family.kind}", family.kind, pretrain, gate, pretrain.output.model_dir)]
    if word_vectors is not None:
        wv = FAMILIES["word2vec"]
        out.append(Target(f"{p.spec.name}-{wv.kind}", wv.kind, word_vectors, wv.gate_metric,
                          word_vectors.output.model_dir))  # fmt: skip
    if finetune is not None:
        name, candidates = f"{p.spec.name}-{p.spec.finetune.task}", finetune.output.candidates
        if len(candidates) == 1:  # one family: the version is named by the stage fingerprint alone
            c = candidates[0]
            parent = next((x.parent for x in candidates if x.parent), None)
            out.append(Target(name, c.kind, finetune, c.metric, c.model_dir, parent=parent))
        else:
            out += [Target(name, c.kind, finetune, c.metric, c.model_dir, c, c.parent) for c in candidates]
    return out


def run(p: Pipeline, ingest: StageResult, tokenizer: StageResult, pretrain: StageResult,
        word_vectors: StageResult | None = None, finetune: StageResult | None = None,
        transfer: StageResult | None = None) -> StageResult:  # fmt: skip
    """Log each target as a pyfunc model, register it with lineage tags, alias and gate."""
    from plm.finetune.predict import example_for
    from plm.tracking import find_version, log_pyfunc_model, register_version

    start = time.perf_counter()
    chosen = targets(p, pretrain, word_vectors, finetune)
    r = p.results
    chain = [s for s in LINEAGE if s in r]
    lineage = {
        "plm.pipeline": p.spec.name,
        "plm.snapshot_id": ingest.output.snapshot_id,
        **{f"plm.fingerprint.{s}": r[s].fingerprint for s in chain},
        **{f"plm.run_id.{s}": str(r[s].run_id) for s in chain},
        **sample_lineage(p.spec),
    }
    fp = fingerprint(NAME, VERSION, {}, {f"{t.name}:{t.fingerprint}": t.fingerprint for t in chosen})
    models: dict[str, Registered] = {}
    if p.session is None or not p.spec.tracking.register_models:
        return StageResult(NAME, fp, p.home, True, 0.0, output=Output(models=models))
    with p.stage_tracker(NAME, {"plm.fingerprint": fp}) as tracker:
        for t in chosen:
            c = t.candidate
            existing = find_version(p.session.client, t.name, t.fingerprint)
            if existing is not None:
                p.log(f"register: {t.name} version {existing.version} already holds {t.result.fingerprint}")
                models[t.key] = Registered(version=int(existing.version), uri=f"models:/{t.name}/{existing.version}",
                                           reused=True, family=c and c.family, strategy=c and c.strategy)  # fmt: skip
                continue
            model_dir = t.result.path / t.model_dir
            uri = log_pyfunc_model(tracker, t.kind, model_dir, path_of(tokenizer),
                                   example_for(t.kind, model_dir, PREVIEW_TEXTS))  # fmt: skip
            value = float(t.result.metrics.get(t.metric, float("nan")))
            tags = {**lineage, **(t.parent or {}), "plm.fingerprint": t.fingerprint,
                    "plm.stage_fingerprint": t.result.fingerprint,
                    **({"plm.family": c.family, "plm.strategy": c.strategy} if c is not None else {})}  # fmt: skip
            decision = register_version(p.session, uri, t.name, tags, t.metric, value,
                                        higher_is_better=t.metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER,
                                        source_run_id=t.result.run_id)  # fmt: skip
            tracker.log_metrics({f"{t.name}.{t.metric}": value})
            tracker.set_tags({f"{t.name}.promotion": json.dumps(decision)})
            p.log(f"register: {t.name} v{decision['version']} {t.metric}={value:.4f} "
                  f"{'promoted to champion' if decision['promoted'] else 'kept as candidate'}")  # fmt: skip
            models[t.key] = Registered(version=decision["version"], uri=f"models:/{t.name}/{decision['version']}",
                                       reused=False, promoted=decision["promoted"], family=c and c.family,
                                       strategy=c and c.strategy, metric=t.metric, value=value)  # fmt: skip
        run_id = tracker.run_id
    reused = all(m.reused for m in models.values())
    result = StageResult(NAME, fp, p.home, reused, time.perf_counter() - start, output=Output(models=models),
                         run_id=run_id)  # fmt: skip
    r[NAME] = result
    return result


STAGE = Stage(NAME, VERSION, needs=("ingest", "tokenizer", "pretrain"), uses=("word_vectors", "finetune", "transfer"),
              output=Output, run=run, label=lambda p: p.spec.name, registry=True)  # fmt: skip
