"""`plm serve`'s process supervisor: a Prefect server, an MLflow server and a Prefect worker, one home.

Everything is configured the way the servers themselves are, through environment variables, so the
same settings move unchanged to deploy/compose.yaml:

- `PREFECT_API_DATABASE_CONNECTION_URL`: Prefect's database (default SQLite under `$PLM_HOME/prefect`).
- `MLFLOW_BACKEND_STORE_URI`: MLflow's backend store (default `sqlite:///$PLM_HOME/mlflow.db`, the
  same store the embedded default writes, so runs made before `plm serve` stay visible).
- `PREFECT_SERVER_API_AUTH_STRING="user:pass"`: Prefect's basic-auth credential; the worker gets it as
  `PREFECT_API_AUTH_STRING`.
- `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`: the admin user of MLflow's `basic-auth` app
  (its user store lives in `$PLM_HOME/mlflow-auth.db`).

Both servers always require credentials: those not given in the environment are generated once into
`$PLM_HOME/credentials.json` (mode 0600) and reused on every start; `plm` commands on the same home
read them from there. CORS is limited to the UIs' own origins (`PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS`,
`--cors-allowed-origins`), so a web page elsewhere cannot drive either API from a browser.

Each child runs in its own process group; stopping sends SIGTERM to every group, waits, then SIGKILL,
so uvicorn/gunicorn workers and flow-run subprocesses go with their parents. While the stack is up,
`$PLM_HOME/servers.json` tells `plm run` and the stage commands where the servers are.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SERVERS_FILE = "servers.json"
CPU_POOL = "plm-cpu"
GPU_POOL = "plm-gpu"


class ServeError(RuntimeError):
    """A server did not come up (its log tail is in the message)."""


MLFLOW_MIN_PASSWORD = 12
"""MLflow's password policy for basic-auth users (mlflow.utils.validation._validate_password)."""


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (prefect, mlflow), not whatever is on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """The HTTP basic-auth header both servers accept."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET (None when nothing answers)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def prefect_headers(env: dict[str, str]) -> dict[str, str]:
    auth = env.get("PREFECT_API_AUTH_STRING") or env.get("PREFECT_SERVER_API_AUTH_STRING")
    return basic_auth_header(*auth.split(":", 1)) if auth and ":" in auth else {}


def mlflow_headers(env: dict[str, str]) -> dict[str, str]:
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    return basic_auth_header(user, password) if user and password else {}


def gpu_count() -> int:
    """GPUs this machine can give a GPU work pool (0 without CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


@dataclass
class Child:
    """One supervised process, its own process group, its output in a log file under the home."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, n: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@dataclass
class ServerStack:
    """A running Prefect server + MLflow server + worker(s) bound to `host`."""

    home: Path
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[Child] = field(default_factory=list)
    seconds_to_healthy: float | None = None
    workers: bool = True
    """False for `plm ui`: both servers (same auth, same stores) and no worker, so nothing runs deployments."""
    auth: dict[str, str] = field(default_factory=dict)
    """server -> where its credentials come from: "env" (given) or "home" (credentials.json)."""

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    def describe(self) -> dict[str, Any]:
        """What servers.json holds: where the servers are and who supervises them."""
        return {
            "pid": os.getpid(),
            "prefect_api_url": self.prefect_api_url,
            "prefect_ui_url": self.prefect_url,
            "mlflow_tracking_uri": self.mlflow_url,
            "home": str(self.home),
            "children": {c.name: c.proc.pid for c in self.children},
            "seconds_to_healthy": self.seconds_to_healthy,
            "auth": self.auth,
        }

    @property
    def loopback(self) -> bool:
        import ipaddress

        try:
            return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def origins(self, port: int) -> str:
        """The browser origins of a UI on `port` (both loopback spellings on a loopback host)."""
        hosts = ["127.0.0.1", "localhost"] if self.loopback else [self.host]
        return ",".join(f"http://{h}:{port}" for h in hosts)

    def use_credentials(self) -> tuple[dict[str, dict[str, str]], bool]:
        """Credentials for both servers: the environment's, else the home's (generated on first use).

        Returns the home's credentials (empty when the environment gave both) and whether they were
        generated now (the caller prints them, once).
        """
        from plm.cli import server_credentials

        need_prefect = not self.env.get("PREFECT_SERVER_API_AUTH_STRING")
        need_mlflow = not (self.env.get("MLFLOW_TRACKING_USERNAME") and self.env.get("MLFLOW_TRACKING_PASSWORD"))
        self.auth = {"prefect": "home" if need_prefect else "env", "mlflow": "home" if need_mlflow else "env"}
        if not (need_prefect or need_mlflow):
            return {}, False
        creds, generated = server_credentials(self.home, create=True)
        if need_prefect:
            self.env["PREFECT_SERVER_API_AUTH_STRING"] = f"{creds['prefect']['username']}:{creds['prefect']['password']}"
        if need_mlflow:
            self.env["MLFLOW_TRACKING_USERNAME"] = creds["mlflow"]["username"]
            self.env["MLFLOW_TRACKING_PASSWORD"] = creds["mlflow"]["password"]
        return creds, generated

    # ---- start ---------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.setdefault("PREFECT_HOME", str(self.home / "prefect"))
        env["PLM_HOME"] = str(self.home)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        env.setdefault("GIT_PYTHON_REFRESH", "quiet")
        # MLflow's job runner (GenAI jobs; plm has none) adds seven ~250 MB huey consumer processes.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        # servers.json must not steer the children back at themselves; they get explicit URLs.
        env.pop("PREFECT_API_URL", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        # The UI (a JS app in the browser) asks the server where its API is; on a non-default port it must be told.
        env.setdefault("PREFECT_UI_API_URL", self.prefect_api_url)
        # Only the UI's own origin may call the API from a browser (Prefect's default is `*`).
        env.setdefault("PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", self.origins(self.prefect_port))
        env.pop("PREFECT_API_AUTH_STRING", None)  # the servers' own credentials are the ones above
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.home, start_new_session=True)  # fmt: skip
        child = Child(name, proc, log_path, log)
        self.children.append(child)
        return child

    def _mlflow_argv(self, env: dict[str, str]) -> list[str]:
        store = env.get("MLFLOW_BACKEND_STORE_URI") or f"sqlite:///{self.home / 'mlflow.db'}"
        argv = [_bin("mlflow"), "server", "--host", self.host, "--port", str(self.mlflow_port),
                "--backend-store-uri", store, "--serve-artifacts",
                "--artifacts-destination", str(self.home / "mlartifacts"), "--workers", "1"]  # fmt: skip
        if not env.get("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"):  # MLflow's default: any localhost origin, any port
            argv += ["--cors-allowed-origins", self.origins(self.mlflow_port)]
        if not self.loopback and not env.get("MLFLOW_SERVER_ALLOWED_HOSTS"):  # its default: localhost + private IPs
            argv += ["--allowed-hosts", f"{self.host},{self.host}:{self.mlflow_port}"]
        user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
        if user and password:
            ini = self.home / "mlflow-auth.ini"
            ini.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.home / 'mlflow-auth.db'}\n"
                f"admin_username = {user}\nadmin_password = {password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            ini.chmod(0o600)
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            if not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):  # the auth app's CSRF key; kept so restarts agree
                key = self.home / "mlflow-secret-key"
                if not key.exists():
                    key.write_text(secrets.token_hex(32))
                    key.chmod(0o600)
                env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = key.read_text().strip()
            argv += ["--app-name", "basic-auth"]
        return argv

    def check_env(self) -> None:
        """ServeError, one line, for settings a server would die on after start-up with a long traceback."""
        password = self.env.get("MLFLOW_TRACKING_PASSWORD")
        if self.env.get("MLFLOW_TRACKING_USERNAME") and password and len(password) < MLFLOW_MIN_PASSWORD:
            raise ServeError(
                f"MLFLOW_TRACKING_PASSWORD has {len(password)} characters; MLflow's basic-auth needs at least "
                f"{MLFLOW_MIN_PASSWORD} for its admin user (choose a longer one; nothing was started)"
            )

    def start(self, gpus: int | None = None, query_seconds: float = 5.0) -> None:
        """Start both servers, wait until healthy, then the worker(s); raise ServeError on failure."""
        if not self.auth:
            self.use_credentials()
        self.check_env()
        self.home.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        base = self._base_env()
        self._spawn("prefect-server", [_bin("prefect"), "server", "start", "--host", self.host,
                                       "--port", str(self.prefect_port)], base)  # fmt: skip
        ml_env = dict(base)
        self._spawn("mlflow-server", self._mlflow_argv(ml_env), ml_env)
        self.wait_healthy()
        self.seconds_to_healthy = round(time.perf_counter() - t0, 2)
        if not self.workers:
            (self.home / SERVERS_FILE).write_text(json.dumps(self.describe(), indent=2))
            return
        worker_env = {**base, "PREFECT_API_URL": self.prefect_api_url, "MLFLOW_TRACKING_URI": self.mlflow_url,
                      "PREFECT_WORKER_QUERY_SECONDS": str(query_seconds)}  # fmt: skip
        if base.get("PREFECT_SERVER_API_AUTH_STRING"):
            worker_env.setdefault("PREFECT_API_AUTH_STRING", base["PREFECT_SERVER_API_AUTH_STRING"])
        self._spawn("worker-cpu", [_bin("prefect"), "worker", "start", "--pool", CPU_POOL, "--type", "process"],
                    worker_env)  # fmt: skip
        gpus = gpu_count() if gpus is None else gpus
        if gpus:
            self._spawn("worker-gpu", [_bin("prefect"), "worker", "start", "--pool", GPU_POOL, "--type", "process",
                                       "--limit", str(gpus)], worker_env)  # fmt: skip
        (self.home / SERVERS_FILE).write_text(json.dumps(self.describe(), indent=2))

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Poll `/api/health` and `/health` until both answer 200 (or a child dies / time runs out)."""
        checks = {
            "prefect-server": (f"{self.prefect_api_url}/health", prefect_headers(self.env)),
            "mlflow-server": (f"{self.mlflow_url}/health", mlflow_headers(self.env)),
        }
        pending = dict(checks)
        deadline = time.monotonic() + timeout
        while pending:
            for child in self.children:
                if child.proc.poll() is not None:
                    raise ServeError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
            for name, (url, headers) in list(pending.items()):
                if http_status(url, headers) == 200:
                    pending.pop(name)
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {c.name}\n{c.tail()}" for c in self.children if c.name in pending)
                raise ServeError(f"not healthy after {timeout:.0f}s: {', '.join(pending)}\n{tails}")
            if pending:
                time.sleep(0.5)

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every child's process group (workers first), wait, SIGKILL what is left."""
        (self.home / SERVERS_FILE).unlink(missing_ok=True)
        for child in reversed(self.children):
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:
            # The group can outlive its leader (a uvicorn worker); kill whatever still carries its id.
            _signal_group(child.proc.pid, signal.SIGKILL)
            if child.proc.poll() is None:
                child.proc.wait(timeout=5)
            child.log.close()
        self.children.clear()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve_forever(stack: ServerStack, on_ready: Callable[[ServerStack], None], gpus: int | None = None) -> int:
    """Run the stack until SIGINT/SIGTERM or a child exits; always stop every child. Returns an exit code."""
    stopping: list[int] = []
    ready = False

    def handler(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        if not ready:  # still starting: abandon the start-up wait; `finally` stops what did start
            raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            stack.start(gpus=gpus)
        except KeyboardInterrupt:
            return 130
        ready = True
        on_ready(stack)
        while not stopping:
            dead = [c for c in stack.children if c.proc.poll() is not None]
            if dead:
                raise ServeError(f"{dead[0].name} exited with {dead[0].proc.returncode}:\n{dead[0].tail()}")
            time.sleep(0.5)
        return 0
    finally:
        stack.stop()
        for s, h in old.items():
            signal.signal(s, h)


def _tail_from(path: Path, offset: int, n: int = 30) -> str:
    """The last `n` lines `path` gained after `offset` (this start's part of an appended log)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])


@contextmanager
def detached_api_server(timeout: float = 120.0) -> Iterator[str | None]:
    """Prefect's ephemeral API for one `plm run`, in its own session; yields its API URL (None when one is set).

    Prefect starts its ephemeral server as a plain child, in the terminal's process group, so Ctrl-C
    killed it along with the run: the interrupted flow could not report its state (the run stayed
    RUNNING) and its client retried into a dead server for minutes (a traceback per retry). This is the
    same server (uvicorn on Prefect's app, ephemeral mode, no UI) started in a session of its own: a
    Ctrl-C reaches only `plm run`, which reports the crash to a live API and then stops the server.
    Its output goes to `api-server.log` in the Prefect home, as `plm serve`'s children log to files:
    when stopped, Prefect's in-server services are cancelled mid-query and SQLAlchemy logs the
    interrupted rollback as an ERROR with a traceback, which belongs in the server's log, not on the
    terminal of a run that succeeded. A server that fails to start is reported with that log's tail.
    """
    import socket

    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules:  # a server, or too late (Prefect's own then)
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error", "--lifespan", "on"]  # fmt: skip
    from plm.artifacts import waiting_lock

    # Started one at a time per Prefect home: a server migrates its database on start, and two `plm run`
    # on a fresh home would both run the migrations (an alembic traceback). The lock is held until healthy.
    prefect_home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    prefect_home.mkdir(parents=True, exist_ok=True)
    lock = ExitStack()
    lock.enter_context(waiting_lock(prefect_home / ".plm-start.lock"))
    log_path = prefect_home / "api-server.log"
    if log_path.exists() and log_path.stat().st_size > 8 << 20:  # one old generation kept, as a rotating log does
        log_path.replace(log_path.with_suffix(".log.1"))
    log = lock.enter_context(open(log_path, "ab"))  # noqa: SIM115 (the child holds it; closed with the lock)
    start = log.tell()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", timeout))
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Prefect's API server exited with {proc.returncode} while starting "
                                   f"({log_path}):\n{_tail_from(log_path, start)}")  # fmt: skip
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prefect's API server did not answer within {timeout:.0f}s "
                                   f"({log_path}):\n{_tail_from(log_path, start)}")  # fmt: skip
            time.sleep(0.25)
        lock.close()
        # Set before Prefect is imported: its root settings (what its log and event service threads
        # read) are taken from the environment at import; they would start a temporary server otherwise.
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            _drain_prefect_services()  # their last logs and events, while the server still answers
            os.environ.pop("PREFECT_API_URL", None)
    finally:
        lock.close()  # (a second close is a no-op)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _drain_prefect_services(timeout: float = 10.0) -> None:
    """Flush Prefect's log and event workers now (they would drain at exit, into a stopped server)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001 - best effort; exiting matters more than the last log line
            pass
