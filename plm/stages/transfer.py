"""transfer: how much pretraining buys — families x strategies x {pretrained, scratch} x labelled budgets x
seeds, and the supervised-only TF-IDF baseline on the same subsets (classification tasks).

Seed i (`finetune.seed + i`) draws one random order of the train split; budget n takes its first n
rows, so budgets are nested within a seed and every setting of a seed sees the same examples.
Writes `report.csv` / `report.parquet` (`plm.finetune.report.COLUMNS`), `summary.csv` (mean and 95 %
interval per cell) and `report.png` (learning curves with bands). From scratch every strategy of a
`shared_scratch` family (BERT: `full` from random weights, same seed) is one run per (budget, seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from plm.artifacts import StageWriter
from plm.config import PipelineSpec, output_slice
from plm.families import FAMILIES, FEATURE_STRATEGIES, STRATEGIES, family_of
from plm.stages.finetune import labelled_inputs, pretrained_families
from plm.stages.runtime import Done, Pipeline, Stage, StageResult
from plm.tracker import Tracker

# 4: labelled rows read through the corpus readers (see finetune VERSION 5): the kept rows can differ;
# fastText parents give unseen words their n-gram vectors (test_unseen_rate)
# 5: `features` in transfer_strategies also fits a GPT decoder's features (with their own random-decoder scratch twin)
NAME, VERSION = "transfer", 5


class Output(BaseModel):
    report_path: str = "report.csv"
    summary_path: str = "summary.csv"
    metric: str
    """The task type's primary metric (what the report's plot and headline rank by)."""
    task_type: str
    budgets: list[int]
    families: list[str]


def spec_slice(spec: PipelineSpec) -> dict[str, Any]:
    return output_slice(spec.finetune)


def transfer_budgets(cfg: Any, n_train: int) -> list[int]:
    """Labelled-example budgets: `transfer_labels` (0 or more than the split = all of it), else the fractions."""
    if cfg.transfer_labels:
        return sorted({n_train if n == 0 or n > n_train else n for n in cfg.transfer_labels})
    return sorted({max(1, round(f * n_train)) for f in cfg.transfer_fractions})


def run(p: Pipeline, tokenizer: StageResult, pretrain: StageResult, word_vectors: StageResult | None = None) -> StageResult:
    import tempfile

    import numpy as np
    import pandas as pd

    from plm.finetune.report import COLUMNS, plot_learning_curves, summarise

    cfg = p.spec.finetune

    def work(w: StageWriter, tracker: Tracker) -> Done:
        families = pretrained_families(p, tokenizer, pretrain, word_vectors)
        task0 = families[0][1]
        n_train, test_n = len(task0.train_idx), len(task0.test_idx)
        budgets = transfer_budgets(cfg, n_train)
        seeds = [cfg.seed + i for i in range(cfg.transfer_seeds)]
        settings: list[tuple[str, Any, str, str]] = []
        zero_shot: list[tuple[str, Any]] = []
        for family, task in families:
            usable = [s for s in cfg.transfer_strategies if s in task.strategies(list(STRATEGIES))
                      and s not in ("scratch", "zero_shot")]  # fmt: skip
            if "zero_shot" in cfg.transfer_strategies and "zero_shot" in task.strategies(list(STRATEGIES)):
                zero_shot.append((family, task))  # no labels, no training: one row at 0 labels, not per budget
            if not usable and "scratch" in cfg.transfer_strategies and family == families[0][0]:
                usable = ["scratch"]
            inits = ("registered", "pretrained", "scratch") if task.init_dir is not None else ("pretrained", "scratch")
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
                    shared = (init == "scratch" and FAMILIES[task.arch].shared_scratch
                              and strategy not in FEATURE_STRATEGIES)  # fmt: skip
                    key = (family, n, seed)
                    if shared and key in done:
                        metrics = done[key]
                    else:
                        with tempfile.TemporaryDirectory() as tmp:
                            metrics = task.fit(subset, Path(tmp), init == "pretrained", strategy, seed=seed,
                                               save=False, eval_each_epoch=False,
                                               registered=init == "registered").metrics  # fmt: skip
                        if shared:
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
        counts = {"settings": float(len(report) // max(1, report.metric.nunique())), "train_examples": float(n_train),
                  "test_examples": float(test_n), "skipped_rows": float(task0.skipped), "seeds": float(len(seeds))}
        output = Output(metric=task0.primary, task_type=cfg.task_type, budgets=budgets, families=[f for f, _ in families])
        return Done(counts, metrics_out, output)

    return p.run(STAGE, spec_slice(p.spec), labelled_inputs(p, tokenizer, pretrain, word_vectors), work)


def _report_rows(metrics: dict[str, float], strategy: str, init: str, labels: int, seed: int, test_n: int,
                 family: str) -> list[dict[str, Any]]:  # fmt: skip
    return [{"strategy": strategy, "init": init, "labels": labels, "seed": seed, "metric": m,
             "value": metrics[f"test_{m}"], "test_examples": test_n, "family": family}
            for m in ("accuracy", "macro_f1", "pearson", "spearman", "exact_match", "f1") if f"test_{m}" in metrics]  # fmt: skip



STAGE = Stage(NAME, VERSION, needs=("tokenizer", "pretrain"), uses=("word_vectors",), output=Output, run=run,
              label=lambda p: p.spec.finetune.task,
              applies=lambda spec: family_of(spec).finetunes and spec.finetune.report)  # fmt: skip
