"""The transfer report's statistics: per-cell means with 95 % intervals over seeds, paired gains, learning curves.

A cell is (family, strategy, init, labels). Seeds differ in the labelled subset and the
initialisation, and every setting of one seed sees the same subset, so a gain (pretrained minus
scratch, or minus the TF-IDF baseline) is a paired difference: its interval is the t interval of the
per-seed differences. With one seed there is no interval (nan), never a made-up one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["strategy", "init", "labels", "seed", "metric", "value", "test_examples", "family"]


def t_interval(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval of the mean; (mean, nan, nan) for fewer than two values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def summarise(report: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (family, strategy, init, labels): mean, 95 % interval, seeds."""
    rows = []
    part = report[report.metric == metric]
    for key, cell in part.groupby(["family", "strategy", "init", "labels"], sort=True):
        mean, lo, hi = t_interval(cell.value)
        rows.append({**dict(zip(["family", "strategy", "init", "labels"], key)), "mean": mean, "low": lo, "high": hi,
                     "seeds": int(cell.seed.nunique())})  # fmt: skip
    return pd.DataFrame(rows)


def paired_gain(report: pd.DataFrame, metric: str, a: dict[str, str], b: dict[str, str], labels: int) -> tuple[float, float, float]:
    """Mean and 95 % interval of (a - b) over the seeds both have at `labels` (a, b: column filters)."""
    part = report[(report.metric == metric) & (report.labels == labels)]

    def pick(f: dict[str, str]) -> pd.Series:
        rows = part
        for k, v in f.items():
            rows = rows[rows[k] == v]
        return rows.groupby("seed").value.mean()

    diff = (pick(a) - pick(b)).dropna()
    return t_interval(diff.values)


def plot_learning_curves(summary: pd.DataFrame, out: Path, task: str, metric: str, champion: dict[str, str] | None) -> None:
    """`metric` vs labelled examples (log x) with 95 % bands: pretrained strategies solid, their scratch twins
    dashed in the same colour, the TF-IDF baseline black dotted, a zero-shot score (0 labels) a horizontal
    line; the champion's line drawn thicker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = summary[summary.init != "baseline"].groupby(["family", "strategy"], sort=True)
    for i, ((family, strategy), part) in enumerate(lines):
        colour = colours[i % len(colours)]
        if strategy == "zero_shot":  # no labels used: a horizontal line at its one score
            ax.axhline(float(part["mean"].iloc[0]), linestyle=(0, (1, 1)), color=colour, label=f"{family} zero-shot (0 labels)")
            continue
        for init, style in (("pretrained", "-"), ("scratch", "--"), ("registered", "-.")):
            rows = part[part.init == init].sort_values("labels")
            if rows.empty:
                continue
            is_champ = champion is not None and init == "pretrained" and champion.get("family") == family \
                and champion.get("strategy") == strategy  # fmt: skip
            label = f"{family} {strategy}" + {"scratch": " (scratch)", "registered": " (from registered model)"}.get(init, "") \
                + (" = champion" if is_champ else "")  # fmt: skip
            ax.plot(rows.labels, rows["mean"], style, marker="o" if init == "pretrained" else "s", color=colour,
                    label=label, linewidth=2.6 if is_champ else 1.4)  # fmt: skip
            if rows["low"].notna().any():
                ax.fill_between(rows.labels, rows["low"], rows["high"], color=colour, alpha=0.15, linewidth=0)
    styles = {"tfidf_lr": (":", "^", "TF-IDF + LR (C = 1)"), "tfidf_lr_cv": ("-.", "v", "TF-IDF + LR (C by CV)")}
    for strategy, base in summary[summary.init == "baseline"].groupby("strategy"):
        base = base.sort_values("labels")
        style, marker, label = styles.get(str(strategy), ("-.", "v", str(strategy)))
        ax.plot(base.labels, base["mean"], style, marker=marker, color="black", label=f"baseline: {label}")
        if base["low"].notna().any():
            ax.fill_between(base.labels, base["low"], base["high"], color="black", alpha=0.06, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel(f"test {metric} (mean, 95 % interval over seeds)")
    ax.set_title(f"{task}: pretrained vs scratch vs supervised baseline")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def headline(report: pd.DataFrame, metric: str, champion: dict[str, str]) -> list[dict[str, Any]]:
    """Per budget: the champion's strategy, its scratch twin, the baseline (means, intervals) and the paired gains."""
    summary = summarise(report, metric)
    out = []
    for labels in sorted(report.labels.unique()):
        cell = summary[summary.labels == labels]

        def get(f: dict[str, str]) -> pd.Series | None:
            rows = cell
            for k, v in f.items():
                rows = rows[rows[k] == v]
            return rows.iloc[0] if len(rows) else None

        champ = get({**champion, "init": "pretrained"})
        if champ is None:
            continue
        scratch = get({**champion, "init": "scratch"})
        row: dict[str, Any] = {"labels": int(labels), "champion": champ["mean"], "champion_low": champ["low"],
                               "champion_high": champ["high"], "seeds": int(champ["seeds"])}  # fmt: skip
        if scratch is not None:
            g = paired_gain(report, metric, {**champion, "init": "pretrained"}, {**champion, "init": "scratch"}, labels)
            row.update(scratch=scratch["mean"], scratch_low=scratch["low"], scratch_high=scratch["high"],
                       gain_vs_scratch=g[0], gain_vs_scratch_low=g[1], gain_vs_scratch_high=g[2])  # fmt: skip
        for name, strategy in (("baseline", "tfidf_lr"), ("baseline_cv", "tfidf_lr_cv")):
            base = get({"init": "baseline", "strategy": strategy})
            if base is None:
                continue
            g = paired_gain(report, metric, {**champion, "init": "pretrained"}, {"init": "baseline", "strategy": strategy},
                            labels)  # fmt: skip
            row.update({name: base["mean"], f"{name}_low": base["low"], f"{name}_high": base["high"],
                        f"gain_vs_{name}": g[0], f"gain_vs_{name}_low": g[1], f"gain_vs_{name}_high": g[2]})
        out.append(row)
    return out
