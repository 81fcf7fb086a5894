"""Ctrl-C and concurrency on `plm run` (Prefect mode, embedded API), as real processes.

Ctrl-C is a SIGINT to the terminal's whole process group, as a shell sends it: `plm run` must exit
within seconds with one line naming the step and how to resume, and leave the Prefect flow and task
runs and the MLflow runs in a final state.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gensim")  # ci_fast reads gensim's Lee corpus
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FAST_SPEC = ROOT / "pipelines" / "ci_fast.yaml"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return {**env, "PYTHONPATH": str(ROOT), "PLM_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COLUMNS": "200"}  # fmt: skip


def _plm_run(home: Path, *overrides: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", "from flows.cli import main; main()", "run", str(FAST_SPEC), "--set", f"home={home}"]
    for o in overrides:
        args += ["--set", o]
    # A foreground command of an interactive shell: its own process group, SIGINT at its default (a shell
    # without job control, as under CI, starts background commands with SIGINT ignored).
    return subprocess.Popen(args, cwd=ROOT, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


class _Reader(threading.Thread):
    """Collects a stream's lines as they arrive."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.stream, self.lines = stream, []
        self.start()

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    def wait_for(self, needle: str, proc: subprocess.Popen[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            assert proc.poll() is None, "".join(self.lines[-40:])
            assert time.monotonic() < deadline, f"no {needle!r} after {timeout}s:\n{''.join(self.lines[-40:])}"
            time.sleep(0.2)


def test_ctrl_c_exits_in_seconds_with_one_line_and_final_states(tmp_path):
    home = tmp_path / "home"
    proc = _plm_run(home, "train.steps=1000000", "train.checkpoint_every=1000000")
    out, err = _Reader(proc.stdout), _Reader(proc.stderr)
    try:
        err.wait_for("pretrain: running", proc, timeout=600)
        time.sleep(2.0)  # inside the training loop
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rc = proc.wait(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out.join(5), err.join(5)
    stderr = "".join(err.lines)
    print(f"Ctrl-C to exit: {seconds:.1f}s")
    assert rc == 130, stderr[-3000:]
    assert seconds < 15, seconds
    assert "Traceback" not in stderr and "ConnectError" not in stderr, stderr[-3000:]
    errors = [line for line in err.lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: interrupted during pretrain after "), errors
    assert f"plm run {FAST_SPEC}" in errors[0] and "train.resume=true" in errors[0]
    # Prefect: the flow run and the pretrain task run are final (CRASHED: "aborted by an interrupt"), none RUNNING.
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        flows = db.execute("SELECT state_type FROM flow_run").fetchall()
        tasks = dict(db.execute("SELECT name, state_type FROM task_run").fetchall())
    assert flows and all(s in ("CRASHED", "CANCELLED", "FAILED") for (s,) in flows), flows
    assert tasks["pretrain[bert-debug]"] in ("CRASHED", "CANCELLED", "FAILED"), tasks
    assert "RUNNING" not in tasks.values(), tasks
    # MLflow: the pipeline run and the pretrain run are KILLED, the finished stages FINISHED.
    with sqlite3.connect(home / "mlflow.db") as db:
        runs = dict(db.execute("SELECT name, status FROM runs").fetchall())
    assert runs["ci-fast"] == "KILLED" and runs["pretrain"] == "KILLED", runs
    assert runs["tokenizer"] == "FINISHED", runs
    # Nothing left behind: no process of the run's group survives (the detached API server included).
    time.sleep(1.0)
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], left
