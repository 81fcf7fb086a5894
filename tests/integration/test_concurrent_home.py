"""Two `plm` processes at once on a fresh home: each store is created once, the other waits for it.

Item 11 of issue 14: two `plm run` on a fresh home died with an alembic migration traceback (the MLflow
schema, and Prefect's, created twice at the same moment). These are the two store-opening steps of
`plm run`, in two real processes released at the same instant.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OPEN_STORES = """
import os, sys, time
from pathlib import Path
home, me = Path(sys.argv[1]), sys.argv[2]
from flows.serve import detached_api_server
import plm.tracking, mlflow  # everything imported first, then both go at the same instant
(home / f"ready-{me}").touch()
while len(list(home.glob("ready-*"))) < 2:
    time.sleep(0.005)
with detached_api_server() as url:
    from plm.tracking import TrackingSession
    s = TrackingSession(f"sqlite:///{home / 'mlflow.db'}", "race", home, "run", {})
    s.end(True)
    import urllib.request
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        assert r.status == 200
print("ok", s.experiment_id)
"""


def test_two_processes_open_a_fresh_home_at_once(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), PLM_HOME=str(home), PREFECT_HOME=str(home / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORES, str(home), str(i)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert sorted(out.split()[1] for out, _ in results) == ["1", "1"]  # one experiment, made once, found by the other
    assert (home / "prefect" / "api-server.log").is_file()  # the servers' own output, kept off the terminal


def test_a_server_that_cannot_start_says_why_from_its_log(tmp_path):
    """The detached server logs to a file; a failed start raises with that start's part of the log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), PLM_HOME=str(tmp_path), PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")  # fmt: skip
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "api-server.log").write_text("an older start's line\n")
    script = "from flows.serve import detached_api_server\nwith detached_api_server():\n    pass\n"
    p = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()
    error = next(line for line in last if line.startswith("RuntimeError:"))
    assert "Prefect's API server exited with" in error and "api-server.log" in error
    assert "unable to open database file" in p.stderr  # the cause, from the log's tail
    assert "an older start's line" not in p.stderr  # only this start's part
