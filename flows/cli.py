"""The `plm` entry point: plm.cli's commands plus `plm run`, which runs the Prefect `pipeline` flow.

`run` lives here, in the flows layer, so that nothing under plm/ imports Prefect.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from plm import stages
from plm.cli import (
    CREDENTIALS_FILE, JsonOpt, SetOpt, SpecArg, app, err, error, load_cli_spec, log_line, main_guard, out, print_summary, progress_bars,
)


@app.command()
def run(
    spec_path: SpecArg,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    prefect: Annotated[bool, typer.Option(help="Run as the Prefect flow `pipeline` (default) or plain Python.")] = True,
) -> None:
    """Run the whole pipeline: ingest, tokenizer, examples, pretrain, finetune, register."""
    spec = load_cli_spec(spec_path, set_)
    start = time.perf_counter()
    try:
        if prefect:
            from flows.serve import detached_api_server

            with detached_api_server():
                from flows.pipeline import pipeline

                summary = pipeline(spec_path=str(spec_path), overrides=list(set_ or []))
        else:
            with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=log_line) as p:
                stages.run_all(p)
            summary = {"run_id": p.run_id, "stages": [r.to_json() for r in p.results.values()]}
    except KeyboardInterrupt as exc:
        stage = getattr(exc, "plm_stage", None)
        again = " ".join(["plm run", str(spec_path), *(f"--set {o}" for o in set_ or [])])
        error(f"interrupted{f' during {stage}' if stage else ''} after {time.perf_counter() - start:.0f}s; finished "
              f"stages are kept: `{again}` resumes from the first unfinished one"
              f"{' (--set train.resume=true continues pretraining from its last checkpoint)' if stage == 'pretrain' else ''}")  # fmt: skip
        raise typer.Exit(130) from None
    wall = time.perf_counter() - start
    print_summary(spec, summary["stages"], summary["run_id"], wall)
    if json_:
        print(json.dumps({**summary, "seconds": round(wall, 3)}, default=str))


HomeOpt = Annotated[Path | None, typer.Option(help="PLM home (default $PLM_HOME, else ./.plm).")]
HostOpt = Annotated[str, typer.Option(help="Bind address of both servers.")]
PrefectPortOpt = Annotated[int, typer.Option(help="Prefect server (API + UI) port.")]
MlflowPortOpt = Annotated[int, typer.Option(help="MLflow tracking server (API + UI) port.")]


def _serve_stack(home: Path | None, host: str, prefect_port: int, mlflow_port: int, workers: bool,
                 open_browser: bool = False) -> None:  # fmt: skip
    from flows.serve import ServerStack, serve_forever

    home = (home or Path(os.environ.get("PLM_HOME") or ".plm")).expanduser().resolve()
    os.environ["PLM_HOME"] = str(home)
    stack = ServerStack(home=home, host=host, prefect_port=prefect_port, mlflow_port=mlflow_port, workers=workers)
    try:
        creds, generated = stack.use_credentials()
    except PermissionError as exc:
        error(exc)
        raise typer.Exit(2) from None
    if not stack.loopback:
        err.print(f"WARNING: binding {host} (not loopback): both servers{' and the worker that runs shell commands' if workers else ''} "
                  "are reachable from the network; anyone with the credentials can run code here. Put TLS in front "
                  "(basic auth is sent in clear) and keep the credentials file private.", style="bold red")  # fmt: skip

    def ready(s: ServerStack) -> None:
        out.print(f"healthy in {s.seconds_to_healthy:.1f}s   home: {s.home}", markup=False)
        out.print(f"Prefect UI: {s.prefect_url}   (PREFECT_API_URL={s.prefect_api_url})")
        out.print(f"MLflow UI:  {s.mlflow_url}   (MLFLOW_TRACKING_URI={s.mlflow_url})")
        where = s.home / CREDENTIALS_FILE
        if generated:  # printed this once; afterwards they are only in the owner-only file
            p_, m_ = creds["prefect"], creds["mlflow"]
            out.print(f"credentials generated (shown once; kept in {where}, mode 600):", markup=False)
            out.print(f"  Prefect UI/API: {p_['username']}:{p_['password']}   (the UI asks for this string)", markup=False)
            out.print(f"  MLflow UI/API:  user {m_['username']}  password {m_['password']}", markup=False)
        elif creds:
            out.print(f"credentials: {where} (mode 600); `plm` commands on this home use them", markup=False)
        else:
            out.print("credentials: from the environment (PREFECT_SERVER_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME/PASSWORD)")
        if workers:
            out.print(f"workers: {', '.join(c.name for c in s.children if c.name.startswith('worker'))}; "
                      f"logs in {s.home / 'logs'}; Ctrl-C stops everything", markup=False)  # fmt: skip
        else:
            out.print(f"no worker (deployments do not run); logs in {s.home / 'logs'}; Ctrl-C stops both", markup=False)
        if open_browser:
            import webbrowser

            for url in (s.prefect_url, s.mlflow_url):
                webbrowser.open(url)

    try:
        code = serve_forever(stack, ready)
    except Exception as exc:  # a server that does not come up: one readable error, children already stopped
        error(exc)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def serve(home: HomeOpt = None, host: HostOpt = "127.0.0.1", prefect_port: PrefectPortOpt = 4200,
          mlflow_port: MlflowPortOpt = 5000) -> None:  # fmt: skip
    """Start a Prefect server, an MLflow server and a Prefect worker on one home; Ctrl-C stops them all."""
    _serve_stack(home, host, prefect_port, mlflow_port, workers=True)


@app.command()
def ui(
    home: HomeOpt = None, host: HostOpt = "127.0.0.1", prefect_port: PrefectPortOpt = 4200,
    mlflow_port: MlflowPortOpt = 5000,
    open_: Annotated[bool, typer.Option("--open/--no-open", help="Open both UIs in the browser.")] = True,
) -> None:  # fmt: skip
    """Both UIs (Prefect + MLflow) on this home's stores, authenticated, analytics off, no worker; Ctrl-C stops them."""
    _serve_stack(home, host, prefect_port, mlflow_port, workers=False, open_browser=open_)


@app.command()
def deploy(
    spec_path: SpecArg,
    set_: SetOpt = None,
    cron: Annotated[str | None, typer.Option(help="Cron schedule (default: the spec's schedule.cron).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Register the Prefect deployment `pipeline/<spec name>` (parameters: this spec path + overrides)."""
    spec = load_cli_spec(spec_path, set_)
    if not os.environ.get("PREFECT_API_URL"):
        error("no Prefect server: start `plm serve` (same home) or set PREFECT_API_URL")
        raise typer.Exit(2)
    from flows.deploy import deploy_spec

    dep = deploy_spec(spec, spec_path, list(set_ or []), cron=cron)
    out.print(f"deployment {dep.full_name} ({dep.id}) on pool {dep.work_pool}; schedule: {dep.cron or 'none'}")
    out.print(f"run it now: prefect deployment run '{dep.full_name}'")
    if json_:
        print(json.dumps({"id": str(dep.id), "name": dep.full_name, "work_pool": dep.work_pool, "cron": dep.cron,
                          "parameters": dep.parameters, "tags": dep.tags}))  # fmt: skip


def main() -> None:
    main_guard(app)


if __name__ == "__main__":
    main()
