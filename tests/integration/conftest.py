"""Real servers for the server tests: `plm serve` as a subprocess, a throwaway PostgreSQL, headless Chromium.

Everything binds to 127.0.0.1 on free ports and is stopped by the fixture that started it. Screenshots,
server logs and measured timings go to $PLM_TEST_ARTIFACTS (default: a pytest temp dir).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAST_SPEC = ROOT / "pipelines" / "ci_fast.yaml"
PLM = str(Path(sys.executable).parent / "plm")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes (its parent has not reaped it yet)
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def group_members(pgids: set[int]) -> list[int]:
    """Live (non-zombie) processes in any of these process groups: children *and* their descendants."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found.append(int(stat.parent.name))
    return found


def http(url: str, auth: tuple[str, str] | None = None, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; basic auth when `auth` is given."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


@pytest.fixture(scope="session")
def test_artifacts(tmp_path_factory) -> Path:
    path = Path(os.environ.get("PLM_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_timing(artifacts: Path, key: str, seconds: float) -> None:
    """Timings the issue asks for, collected in one JSON file next to the screenshots."""
    path = artifacts / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = round(seconds, 2)
    path.write_text(json.dumps(data, indent=2))


@dataclass
class Served:
    """A `plm serve` subprocess and the clients a test needs to talk to it."""

    home: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    servers: dict[str, Any] = field(default_factory=dict)
    seconds_to_servers_json: float = 0.0

    @property
    def prefect_api_url(self) -> str:
        return self.servers["prefect_api_url"]

    @property
    def mlflow_url(self) -> str:
        return self.servers["mlflow_tracking_uri"]

    @property
    def credentials(self) -> dict[str, Any]:
        """The credentials `plm serve` generated into the home (empty when the environment gave them)."""
        path = self.home / "credentials.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def prefect_auth(self) -> tuple[str, str] | None:
        auth = self.env.get("PREFECT_SERVER_API_AUTH_STRING")
        if not auth and "prefect" in self.credentials:
            return self.credentials["prefect"]["username"], self.credentials["prefect"]["password"]
        return tuple(auth.split(":", 1)) if auth else None  # type: ignore[return-value]

    @property
    def mlflow_auth(self) -> tuple[str, str] | None:
        user, password = self.env.get("MLFLOW_TRACKING_USERNAME"), self.env.get("MLFLOW_TRACKING_PASSWORD")
        if not (user and password) and "mlflow" in self.credentials:
            return self.credentials["mlflow"]["username"], self.credentials["mlflow"]["password"]
        return (user, password) if user and password else None

    def plm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the `plm` CLI the way a user would while `plm serve` runs (no server URLs in the env).

        Credentials the test gave `plm serve` in its environment are passed on as a user would; generated
        ones the CLI must find in the home by itself.
        """
        env = {k: v for k, v in self.env.items() if k != "PREFECT_SERVER_API_AUTH_STRING"}
        if self.env.get("PREFECT_SERVER_API_AUTH_STRING"):
            env["PREFECT_API_AUTH_STRING"] = self.env["PREFECT_SERVER_API_AUTH_STRING"]
        res = subprocess.run([PLM, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        assert res.returncode == 0, f"plm {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
        return res

    @contextmanager
    def prefect(self) -> Iterator[Any]:
        """A sync Prefect client against this server (auth string when auth is on)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates: dict[Any, Any] = {PREFECT_API_URL: self.prefect_api_url}
        if self.prefect_auth:
            updates[PREFECT_API_AUTH_STRING] = ":".join(self.prefect_auth)
        with temporary_settings(updates=updates), get_client(sync_client=True) as client:
            yield client

    def trigger(self, deployment: str, parameters: dict[str, Any] | None = None) -> Any:
        """Create a flow run of a deployment now, as its schedule would; returns the run's id."""
        with self.prefect() as client:
            dep = client.read_deployment_by_name(deployment)
            return client.create_flow_run_from_deployment(dep.id, parameters=parameters).id

    def wait(self, flow_run_id: Any, timeout: float = 600) -> Any:
        """Poll until the flow run is final; the worker's log tail is in the failure message."""
        deadline = time.monotonic() + timeout
        with self.prefect() as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state is not None and run.state.type.value in TERMINAL:
                    return run
                assert self.proc.poll() is None, f"plm serve exited:\n{self.log_tail()}"
                if time.monotonic() > deadline:
                    raise AssertionError(f"flow run {flow_run_id} not done after {timeout}s\n{self.log_tail()}")
                time.sleep(1.0)

    def task_runs(self, flow_run_id: Any) -> list[Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.sorting import TaskRunSort

        # limit/offset/sort spelled out: Prefect 3.8's sync client sends null for them and its server says 422.
        with self.prefect() as client:
            return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=0)  # fmt: skip

    def artifacts(self, flow_run_id: Any) -> dict[str, Any]:
        """key -> artifact of one flow run."""
        from prefect.client.schemas.objects import Artifact

        # Raw filter body: Prefect 3.8's client sends null flow_runs/task_runs filters, which its server
        # rejects (422), and an empty task_runs filter joins task runs away the flow-level artifacts.
        body = {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"}
        with self.prefect() as client:
            found = [Artifact.model_validate(a) for a in client.request("POST", "/artifacts/filter", json=body).json()]
        return {a.key: a for a in found if a.key}

    def logs(self, flow_run_id: Any) -> list[str]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        messages: list[str] = []
        with self.prefect() as client:
            while True:
                page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                        limit=200, offset=len(messages))  # fmt: skip
                messages += [log.message for log in page]
                if len(page) < 200:
                    return messages

    def logs_until(self, flow_run_id: Any, needles: list[str], timeout: float = 60.0) -> str:
        """The run's log text once every needle is in it: workers ship logs in batches, after the run's state."""
        deadline = time.monotonic() + timeout
        while True:
            text = "\n".join(self.logs(flow_run_id))
            if all(n in text for n in needles) or time.monotonic() > deadline:
                return text
            time.sleep(1.0)

    def mlflow(self, endpoint: str, auth: Any = "default", method: str = "GET", **params: Any) -> tuple[int, Any]:
        """MLflow REST API call (`/api/2.0/mlflow/<endpoint>`); GET params in the query, POST as JSON."""
        auth = self.mlflow_auth if auth == "default" else auth
        url = f"{self.mlflow_url}/api/2.0/mlflow/{endpoint}"
        if method == "GET":
            return http(f"{url}?{urllib.parse.urlencode(params)}", auth)
        return http(url, auth, method, params)

    def log_tail(self, n: int = 40) -> str:
        parts = []
        for log in sorted((self.home / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(parts)

    def stop(self, timeout: float = 60) -> tuple[int | None, list[int]]:
        """SIGTERM `plm serve` (as Ctrl-C or a service manager would); its rc and the children left alive."""
        children = [int(p) for p in self.servers.get("children", {}).values()]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        left = [p for p in children if pid_alive(p)] + group_members(set(children))
        for pgid in children:  # do not leak them into the next test, but report them
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        return self.proc.returncode, sorted(set(left))


def start_serve(home: Path, extra_env: dict[str, str] | None = None, timeout: float = 300, command: str = "serve") -> Served:
    """`plm serve --home H` (or `plm ui`) on free ports; returns once it has written servers.json (= healthy)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", "PREFECT_API_AUTH_STRING"}}  # fmt: skip
    env.update(PLM_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               # scheduled runs show up within seconds instead of a minute
               PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5", **(extra_env or {}))  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    args = [PLM, command, "--home", str(home), "--prefect-port", str(free_port()), "--mlflow-port", str(free_port()),
            *(["--no-open"] if command == "ui" else [])]  # fmt: skip
    log = open(home / "serve.out", "wb")  # noqa: SIM115 - the subprocess holds it
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    served = Served(home, proc, env)
    path = home / "servers.json"
    while not path.exists():
        if proc.poll() is not None or time.perf_counter() - t0 > timeout:
            served.stop()
            pytest.fail(f"plm serve not healthy (rc={proc.returncode}):\n{(home / 'serve.out').read_text()}\n{served.log_tail()}")
        time.sleep(0.5)
    served.seconds_to_servers_json = time.perf_counter() - t0
    served.servers = json.loads(path.read_text())
    return served


# ---- PostgreSQL -------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with databases `prefect` and `mlflow` (trust auth)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb) not installed; .ci/run installs Debian's postgresql")
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install -e '.[server]'")
    data = Path(tempfile.mkdtemp(prefix="plm-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run the cluster as the `postgres` user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` user to run the cluster as")
        os.chown(data, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    pgdata = data / "db"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(pgdata), "-U", "plm", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)  # fmt: skip
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(data / "postgres.log"), "-o", opts,
                    "-w", "-t", "60", "start"], check=True, capture_output=True)  # fmt: skip
    try:
        con = psycopg2.connect(host="127.0.0.1", port=port, user="plm", dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("CREATE DATABASE prefect")
            cur.execute("CREATE DATABASE mlflow")
        con.close()
        yield {"host": "127.0.0.1", "port": port, "user": "plm",
               "prefect_url": f"postgresql+asyncpg://plm@127.0.0.1:{port}/prefect",
               "mlflow_url": f"postgresql://plm@127.0.0.1:{port}/mlflow"}  # fmt: skip
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def pg_query(pg: dict[str, Any], db: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    con = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], dbname=db)
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def pg_query_fn():
    return pg_query


@pytest.fixture(scope="session")
def http_fn():
    return http


# ---- Chromium ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """`capture(url, png, auth=..., expect=...) -> rendered DOM`: headless Debian Chromium over DevTools.

    With `auth` (user, password) every request carries the basic-auth header (MLflow) and the Prefect
    UI finds its password in localStorage, as after a login. The DOM is read once `expect` is in it
    (or after `budget_ms`), then the page is screenshotted.
    """
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("chromium not installed; .ci/run installs Debian's chromium")
    from websockets.sync.client import connect

    def capture(url: str, png: Path, budget_ms: int = 30000, auth: tuple[str, str] | None = None,
                expect: str | None = None) -> str:  # fmt: skip
        profile = tmp_path_factory.mktemp("chromium-profile")
        proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                 "--window-size=1440,900", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                assert time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
                time.sleep(0.2)
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                page = next(t for t in json.loads(r.read()) if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=64 << 20, open_timeout=30) as ws:
                ids = iter(range(1, 1 << 30))

                def call(method: str, **params: Any) -> dict[str, Any]:
                    n = next(ids)
                    ws.send(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        msg = json.loads(ws.recv(timeout=60))
                        if msg.get("id") == n:
                            assert "error" not in msg, msg
                            return msg.get("result", {})

                call("Network.enable")
                if auth:
                    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                    call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})
                    call("Page.addScriptToEvaluateOnNewDocument",
                         source=f"try {{ localStorage.setItem('prefect-password', '{token}') }} catch (e) {{}}")
                call("Page.navigate", url=url)
                deadline, dom = time.monotonic() + budget_ms / 1000, ""
                while time.monotonic() < deadline:
                    time.sleep(1.0)
                    dom = call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                               returnByValue=True)["result"].get("value", "")  # fmt: skip
                    if expect and expect in dom:
                        time.sleep(1.0)  # let the page finish drawing for the screenshot
                        break
                shot = call("Page.captureScreenshot", format="png")["data"]
            png.write_bytes(base64.b64decode(shot))
            png.with_suffix(".html").write_text(dom)
            return dom
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    return capture


@pytest.fixture(scope="session")
def served_factory():
    return start_serve


@pytest.fixture(scope="session")
def fast_spec() -> Path:
    return FAST_SPEC


@pytest.fixture(scope="session")
def timing():
    return record_timing


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A fresh PLM_HOME for a module's in-process flow runs (the served tests start their own homes)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("plm_home")
        mp.setenv("PLM_HOME", str(home))
        yield home
