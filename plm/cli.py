"""`plm`: run one stage of a pipeline spec, look models up, predict (`plm run` is added by flows.cli).

Every command takes the spec path and `--set dotted.key=value` overrides (values parsed as YAML).
With `--json`, the last stdout line is one JSON object for scripts.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from plm.config import PipelineSpec, SpecError, load_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)

SpecArg = Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a spec field: key=value.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]


def configure_env(spec: PipelineSpec) -> None:
    """Embedded defaults under one home: Prefect's home and no analytics (set before Prefect is imported)."""
    home = spec.home_dir()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PLM_HOME"] = str(home)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def load_cli_spec(spec_path: Path, overrides: list[str] | None) -> PipelineSpec:
    try:
        spec = load_spec(spec_path, overrides or [])
    except SpecError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    configure_env(spec)
    return spec


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Any]:
    """A `Progress` callback drawing one rich bar per kind of work (on stderr)."""
    if not enabled:
        yield lambda what, done, total: None
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as bars:
        tasks: dict[str, Any] = {}

        def update(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total)
            bars.update(tasks[what], completed=done, total=total)

        yield update


KEY_FIGURES = {
    "ingest": ["documents", "sentences", "rows_read", "rows_duplicate", "rows_filtered", "rows_quarantined"],
    "tokenizer": ["vocab_size", "fertility", "unk_rate"],
    "examples": ["train_examples", "validation_examples", "mask_rate", "nsp_random_rate"],
    "pretrain": ["steps", "train_loss", "val_mlm_accuracy", "val_nsp_accuracy", "tokens_per_s"],
    "finetune": ["train_examples", "test_examples", "pretrained.test_accuracy", "scratch.test_accuracy"],
}


def _figure(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


def _summary_table(results: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("stage", "fingerprint", "status", "seconds", "key figures", "mlflow run"):
        table.add_column(col, overflow="fold")
    for r in results:
        values = {**r["counts"], **r["metrics"]}
        figures = [f"{k}={_figure(values[k])}" for k in KEY_FIGURES.get(r["stage"], []) if k in values]
        if r["stage"] == "ingest" and "snapshot_id" in r:
            figures.append(f"snapshot={r['snapshot_id']}")
        if r["stage"] == "register":
            figures = [f"{name} v{m['version']}" for name, m in r.get("models", {}).items()]
        table.add_row(r["stage"], r["fingerprint"], "reused" if r["reused"] else "ran", f"{r['seconds']:.1f}",
                      ", ".join(figures), r["run_id"] or "")  # fmt: skip
    return table


def print_summary(spec: PipelineSpec, results: list[dict[str, Any]], run_id: str | None, wall: float) -> None:
    from plm.tracking import resolve_tracking_uri

    out.print(_summary_table(results, f"pipeline {spec.name}: {wall:.1f}s"))
    uri = resolve_tracking_uri(spec.tracking.uri, spec.home_dir())
    out.print(f"MLflow parent run: {run_id}   tracking URI: {uri}")
    for r in results:
        for name, m in r.get("models", {}).items():
            out.print(f"model: models:/{name}/{m['version']}  (aliases: models:/{name}@candidate, @champion)")
    if uri.startswith("sqlite:"):
        out.print(f"MLflow UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1   Prefect UI: prefect server start")


def _stage_command(stage: str) -> Any:
    def command(spec_path: SpecArg, set_: SetOpt = None, json_: JsonOpt = False) -> None:
        from plm import stages

        spec = load_cli_spec(spec_path, set_)
        chain = stages.STAGES[: stages.STAGES.index(stage) + 1]
        with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=err.print, run_name=stage) as p:
            ing = stages.ingest(p)
            if "tokenizer" in chain:
                tok = stages.tokenizer(p, ing)
            if "examples" in chain:
                ex = stages.examples(p, ing, tok)
            if "pretrain" in chain:
                pre = stages.pretrain(p, tok, ex)
            if "finetune" in chain:
                stages.finetune(p, tok, pre)
        results = [r.to_json() for r in p.results.values()]
        out.print(_summary_table(results, f"{stage} ({spec.name})"))
        if json_:
            target = p.results[stage]
            payload = {**target.to_json(), "run_id": target.run_id, "pipeline_run_id": p.run_id}
            if stage == "pretrain":
                payload["export_path"] = str(target.path / target.extra["model_dir"])
                payload["checkpoint_path"] = str(target.path / "checkpoint.pt")
            print(json.dumps(payload, default=str))

    command.__doc__ = f"Run the `{stage}` stage (and any unfinished upstream stage)."
    return command


for _stage in ("ingest", "tokenizer", "examples", "pretrain", "finetune"):
    app.command(name=_stage)(_stage_command(_stage))


@app.command()
def transfer(spec_path: SpecArg, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Transfer report: finetune.transfer_strategies x {pretrained, scratch} x finetune.transfer_fractions."""
    from plm import stages

    spec = load_cli_spec(spec_path, set_)
    with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=err.print, run_name="transfer") as p:
        ing = stages.ingest(p)
        tok = stages.tokenizer(p, ing)
        pre = stages.pretrain(p, tok, stages.examples(p, ing, tok))
        result = stages.transfer(p, tok, pre)
    report = result.path / result.extra["report_path"]
    out.print(_transfer_table(report, spec.finetune.task))
    out.print(f"report: {report}   plot: {result.path / 'report.png'}   MLflow run: {result.run_id}")
    if json_:
        print(json.dumps({**result.to_json(), "report_path": str(report), "pipeline_run_id": p.run_id}, default=str))


def _transfer_table(report: Path, task: str) -> Table:
    import pandas as pd

    df = pd.read_csv(report)
    acc = df[df.metric == "accuracy"].pivot_table(index=["strategy", "fraction", "examples"], columns="init", values="value")
    table = Table(title=f"{task}: test accuracy, pretrained vs scratch (same seed and budget)", title_justify="left")
    for col in ("strategy", "fraction", "examples", "pretrained", "scratch", "gain"):
        table.add_column(col)
    for (strategy, fraction, examples), r in acc.iterrows():
        table.add_row(strategy, f"{fraction:g}", str(examples), f"{r['pretrained']:.3f}", f"{r['scratch']:.3f}",
                      f"{r['pretrained'] - r['scratch']:+.3f}")  # fmt: skip
    return table


def _tracking_uri(spec_path: Path | None) -> str:
    from plm.tracking import resolve_tracking_uri

    spec = load_cli_spec(spec_path, None) if spec_path else load_spec(None)
    return resolve_tracking_uri(spec.tracking.uri, spec.home_dir())


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="Registered model name (all when omitted).")] = None,
    spec_path: Annotated[Path | None, typer.Option("--spec", help="Spec whose home/tracking URI to use.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Registered models: versions, aliases, metric and lineage back to the corpus snapshot."""
    from plm.tracking import RegistryError, describe_models

    try:
        rows = describe_models(_tracking_uri(spec_path), name)
    except RegistryError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table(title="MLflow registry", title_justify="left")
    for col in ("model", "version", "aliases", "metric", "snapshot", "tokenizer", "examples", "pretrain", "finetune"):
        table.add_column(col, overflow="fold")
    for r in rows:
        t = r["tags"]
        metric = f"{t.get('plm.metric', '')}={float(t.get('plm.metric_value', 'nan')):.4f}" if "plm.metric" in t else ""
        table.add_row(
            r["name"], str(r["version"]), ",".join(r["aliases"]), metric, t.get("plm.snapshot_id", ""),
            *(t.get(f"plm.fingerprint.{s}", "") for s in ("tokenizer", "examples", "pretrain", "finetune")),
        )  # fmt: skip
    out.print(table)
    if json_:
        print(json.dumps(rows, default=str))


@app.command()
def predict(
    model_uri: Annotated[str, typer.Argument(help="e.g. models:/quickstart-sentiment@champion")],
    texts: Annotated[list[str], typer.Argument(help="Texts to classify or embed.")],
    spec_path: Annotated[Path | None, typer.Option("--spec", help="Spec whose home/tracking URI to use.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Load a registered model as an MLflow pyfunc and predict on TEXTS."""
    from plm.tracking import RegistryError, predict_texts

    try:
        rows = predict_texts(_tracking_uri(spec_path), model_uri, texts)
    except RegistryError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    for text, row in zip(texts, rows, strict=True):
        if "label" in row:
            out.print(f"{row['label']}\t{row['score']:.3f}\t{text}")
        else:
            out.print(f"[{len(row['embedding'])}-d embedding]\t{text}")
    if json_:
        print(json.dumps([{k: (list(map(float, v)) if k == "embedding" else v) for k, v in r.items()} for r in rows]))


@app.command("compare-tokenizers")
def compare_tokenizers_cmd(
    spec_path: SpecArg,
    variants: Annotated[list[str], typer.Argument(help="Overrides per variant, ';'-separated: 'tokenizer.kind=bpe'")],
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train tokenizer variants on the same snapshot and compare them side by side on the validation split."""
    from plm import stages

    base = load_cli_spec(spec_path, set_)
    specs = {"spec": base}
    for variant in variants:
        overrides = [o.strip() for o in variant.split(";") if o.strip()]
        try:
            specs[variant] = load_spec(spec_path, [*(set_ or []), *overrides])
        except SpecError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    with progress_bars(not json_) as bar:
        rows = stages.compare_tokenizers(specs, progress=bar)
    keys = ["vocab_size", "fertility", "fertility.en", "fertility.ko", "unk_rate", "bytes_per_token", "vocab_used"]
    table = Table(title="tokenizers on the validation split", title_justify="left")
    for col in ("variant", "model", *keys):
        table.add_column(col)
    for row in rows:
        m = row
        table.add_row(row["name"], row["model"], *(f"{m[k]:.4g}" if k in m else "" for k in keys))
    out.print(table)
    if json_:
        print(json.dumps(rows, default=str))


@app.command()
def spec(spec_path: Annotated[Path | None, typer.Argument()] = None, set_: SetOpt = None) -> None:
    """Print the resolved spec (defaults < YAML < --set) as YAML."""
    import yaml

    try:
        resolved = load_spec(spec_path, set_ or [])
    except SpecError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    print(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")


def main_guard(application: typer.Typer) -> None:
    """Run the CLI; expected failures are one line on stderr, not a traceback."""
    try:
        application()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except (FileNotFoundError, ValueError, RuntimeError, FloatingPointError) as exc:
        if os.environ.get("PLM_DEBUG"):
            raise
        err.print(f"[red]error:[/red] {exc}  (set PLM_DEBUG=1 for the traceback)")
        sys.exit(1)

