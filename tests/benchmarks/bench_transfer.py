"""Does pretraining pay? The quickstart's transfer report as benchmark lines (issue 11's targets).

Runs `plm transfer pipelines/quickstart.yaml` (reusing every finished stage of the home, so after
`make demo` with the same PLM_HOME it only reads the report) and prints, per labelled budget, one
`BENCH transfer_<labels> {json}` line: `plm` = the word2vec `features` champion's mean test accuracy,
`peer` = TF-IDF + LR (C = 1) in the same run, `ratio` = plm / peer, with the 95 % intervals, the
cross-validated TF-IDF, the scratch twin and the paired gains. Quality, not speed: no timing here.

PLM_BENCH_QUICK=1: a 1,500-review slice of the real sample and tiny models (about two minutes).
Run: PLM_HOME=.plm .venv/bin/pytest -q -s tests/benchmarks/bench_transfer.py
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("PLM_BENCH_QUICK") == "1"


def _quick_overrides(tmp_path: Path) -> list[str]:
    from plm.samples import fetch_imdb

    folder = fetch_imdb(lambda m: None)
    rows = [json.loads(x) for x in (folder / "labelled.jsonl").open(encoding="utf-8")]
    train = [r for r in rows if r["split"] == "train"][:1200]
    test = [r for r in rows if r["split"] == "test"][:300]
    (tmp_path / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train + test))
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in train))
    return [f"home={tmp_path / 'home'}", f"corpus.paths=[{tmp_path / 'corpus.jsonl'}]",
            f"finetune.data={tmp_path / 'labelled.jsonl'}", "finetune.format=jsonl", "finetune.split_column=split",
            "train.steps=20", "word_vectors.epochs=1", "finetune.epochs=1", "finetune.transfer_labels=[50, 100, 250]",
            "finetune.transfer_max_labels={full: 50}"]  # fmt: skip


def test_transfer_report(tmp_path):
    from typer.testing import CliRunner

    from plm.cli import app
    from plm.finetune.report import headline

    args = ["transfer", str(ROOT / "pipelines" / "quickstart.yaml"), "--json"]
    for o in _quick_overrides(tmp_path) if QUICK else []:
        args += ["--set", o]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    report = pd.read_csv(payload["report_path"])
    champion = {"family": next(f for f in report.family.unique() if f.startswith("word2vec")), "strategy": "features"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in headline(report, "accuracy", champion):
        line = {"unit": "test accuracy", "plm": round(r["champion"], 4), "peer": round(r["baseline"], 4),
                "ratio": round(r["champion"] / r["baseline"], 4), "plm_interval": [r["champion_low"], r["champion_high"]],
                "peer_interval": [r["baseline_low"], r["baseline_high"]], "peer_cv": r.get("baseline_cv"),
                "scratch": r.get("scratch"), "gain_vs_peer_points": round(100 * r["gain_vs_baseline"], 2),
                "gain_vs_peer_cv_points": round(100 * r.get("gain_vs_baseline_cv", float("nan")), 2),
                "gain_vs_scratch_points": round(100 * r.get("gain_vs_scratch", float("nan")), 2),
                "seeds": r["seeds"], "test_examples": int(report.test_examples.iloc[0]),
                "peak_rss_mb": {"plm": round(rss), "peer": round(rss)}}  # fmt: skip
        print(f"BENCH transfer_{r['labels']} {json.dumps(line, default=float)}")
