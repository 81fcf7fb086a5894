"""The `plm` entry point: plm.cli's commands plus `plm run`, which runs the Prefect `pipeline` flow.

`run` lives here, in the flows layer, so that nothing under plm/ imports Prefect.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from plm import stages
from plm.cli import JsonOpt, SetOpt, SpecArg, app, err, main_guard, print_summary, progress_bars, load_cli_spec


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
    if prefect:
        from flows.pipeline import pipeline

        summary = pipeline(spec_path=str(spec_path), overrides=list(set_ or []))
    else:
        with progress_bars(not json_) as bar, stages.Pipeline(spec, progress=bar, log=err.print) as p:
            stages.run_all(p)
        summary = {"run_id": p.run_id, "stages": [r.to_json() for r in p.results.values()]}
    wall = time.perf_counter() - start
    print_summary(spec, summary["stages"], summary["run_id"], wall)
    if json_:
        print(json.dumps({**summary, "seconds": round(wall, 3)}, default=str))


def main() -> None:
    main_guard(app)


if __name__ == "__main__":
    main()
