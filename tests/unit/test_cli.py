"""CLI messages as a user sees them: `plm` run as a process with stderr piped (not a terminal)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def plm(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "80",
           **(env or {})}
    return subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_user_strings_are_not_markup_and_errors_are_one_line(tmp_path):
    res = plm("run", "my[draft]spec.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == "error: spec file not found: my[draft]spec.yaml\n"  # was `myspec.yaml`
    (tmp_path / "bad.yaml").write_text('name: "Bad Name"\n')
    res = plm("run", "bad.yaml", cwd=tmp_path)
    assert res.stderr == "error: name: String should match pattern '^[a-z0-9][a-z0-9_-]*$'\n"  # was '^*$'
    deep = tmp_path / ("a-long-directory-name-" * 5) / "[x]"
    deep.mkdir(parents=True)
    res = plm("run", str(deep / "missing.yaml"), cwd=tmp_path)
    assert res.stderr.count("\n") == 1 and len(res.stderr) > 120  # not wrapped at 80 columns
    assert str(deep / "missing.yaml") in res.stderr


def test_a_short_mlflow_password_is_one_line_from_plm_serve(tmp_path):
    env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "short"}
    res = plm("serve", "--home", str(tmp_path / "home"), "--prefect-port", "0", "--mlflow-port", "0", cwd=tmp_path,
              env=env)
    assert res.returncode == 1
    assert res.stderr.startswith("error: MLFLOW_TRACKING_PASSWORD has 5 characters; MLflow's basic-auth needs at least 12")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "home" / "logs").exists()  # no server was started
