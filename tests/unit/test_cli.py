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


def test_serve_credentials_are_generated_owner_only_reused_and_cors_is_the_ui_origin(tmp_path):
    import pytest

    from flows.serve import ServerStack

    home = tmp_path / "home"
    stack = ServerStack(home=home, env={})
    creds, generated = stack.use_credentials()
    path = home / "credentials.json"
    assert generated and path.stat().st_mode & 0o777 == 0o600
    assert stack.env["PREFECT_SERVER_API_AUTH_STRING"] == f"plm:{creds['prefect']['password']}"
    assert len(stack.env["MLFLOW_TRACKING_PASSWORD"]) >= 12 and stack.auth == {"prefect": "home", "mlflow": "home"}
    assert ServerStack(home=home, env={}).use_credentials() == (creds, False)  # reused, not printed again
    given = {"PREFECT_SERVER_API_AUTH_STRING": "a:b", "MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "x" * 12}
    explicit = ServerStack(home=tmp_path / "other", env=dict(given))
    assert explicit.use_credentials() == ({}, False) and not (tmp_path / "other" / "credentials.json").exists()
    argv = stack._mlflow_argv(dict(stack.env))
    assert argv[argv.index("--cors-allowed-origins") + 1] == "http://127.0.0.1:5000,http://localhost:5000"
    assert stack._base_env()["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "http://127.0.0.1:4200,http://localhost:4200"
    wide = ServerStack(home=home, host="0.0.0.0", env={})
    assert not wide.loopback and wide.origins(4200) == "http://0.0.0.0:4200"
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="owner-only"):
        ServerStack(home=home, env={}).use_credentials()
