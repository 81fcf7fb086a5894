"""`plm serve` + `plm deploy` on real servers (SQLite backends): a deployed pipeline run through the
Prefect API, MLflow checked over REST, an incremental and a no-change re-run through the deployment,
a bad-input run, the UIs in headless Chromium, and a clean stop. One server stack for the module.
"""

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("gensim")  # the fast spec reads gensim's Lee corpus
pytestmark = [pytest.mark.server, pytest.mark.slow]

DEPLOYMENT = "pipeline/ci-fast"
STAGES = ["ingest", "tokenizer", "examples", "pretrain", "finetune"]
NEW_LINES = [
    "The harbour ferry now leaves every forty minutes during the winter timetable.",
    "Volunteers counted more than two hundred migrating cranes above the wetland on Sunday.",
    "A small bakery on the corner started selling rye bread made from a century-old starter.",
    "The orchestra rehearsed the symphony twice before the evening concert in the old hall.",
    "Engineers replaced the rusted bolts on the footbridge after the spring inspection.",
    "The library extended its opening hours so that students could study late before exams.",
]
MORE_LINES = [
    "Heavy fog delayed the morning trains along the coast for nearly an hour.",
    "The museum opened a new gallery of maps drawn by sailors in the eighteenth century.",
    "A farmer near the river planted three rows of apple trees to shelter the vegetables.",
    "The council agreed to repaint the pedestrian crossings outside the primary school.",
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus")
    (path / "notes_1.txt").write_text("\n".join(NEW_LINES) + "\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory, served_factory, test_artifacts, timing):
    served = served_factory(tmp_path_factory.mktemp("plm_home"))
    timing(test_artifacts, "serve_to_healthy_s", served.servers["seconds_to_healthy"])
    timing(test_artifacts, "serve_to_servers_json_s", served.seconds_to_servers_json)
    yield served
    served.stop()
    for log in (served.home / "logs").glob("*.log"):
        (test_artifacts / f"sqlite-{log.name}").write_text(log.read_text(errors="replace"))


@pytest.fixture(scope="module")
def deployed(served, corpus_dir, fast_spec):
    res = served.plm("deploy", str(fast_spec), "--set", f"corpus.paths=[sample:lee, {corpus_dir}]",
                     "--cron", "0 3 * * *", "--json")  # fmt: skip
    return json.loads(res.stdout.strip().splitlines()[-1])


def _stage_status(artifacts: dict) -> dict[str, str]:
    """stage -> 'ran' | 'reused', read from the per-stage Prefect artifacts' descriptions."""
    out = {}
    for stage in STAGES:
        desc = artifacts[f"ci-fast-{stage}"].description
        out[stage] = "reused" if f"` reused in" in desc else "ran"
    return out


def _manifest(home: Path, stage: str, fingerprint: str) -> dict:
    return json.loads((home / "artifacts" / stage / fingerprint / "manifest.json").read_text())


def _fingerprints(artifacts: dict) -> dict[str, str]:
    return {s: artifacts[f"ci-fast-{s}"].description.split("`")[1] for s in STAGES}


@pytest.fixture(scope="module")
def first_run(served, deployed, test_artifacts, timing):
    t0 = time.perf_counter()
    run = served.wait(served.trigger(DEPLOYMENT))
    timing(test_artifacts, "first_deployment_run_s", time.perf_counter() - t0)
    assert run.state.type.value == "COMPLETED", f"{run.state}\n{served.log_tail()}"
    return run


def test_serve_is_healthy_and_cli_finds_it(served):
    from plm.cli import configure_env  # noqa: F401 - imported here so a broken plm.cli fails this test

    assert served.servers["prefect_api_url"].startswith("http://127.0.0.1:")
    assert served.servers["mlflow_tracking_uri"].startswith("http://127.0.0.1:")
    assert set(served.servers["children"]) >= {"prefect-server", "mlflow-server", "worker-cpu"}
    # `plm` commands run while serve is up resolve the servers from $PLM_HOME/servers.json.
    script = ("import os; from plm.config import load_spec; from plm.cli import configure_env; "
              "configure_env(load_spec('pipelines/ci_fast.yaml')); "
              "print(os.environ['PREFECT_API_URL'], os.environ['MLFLOW_TRACKING_URI'])")  # fmt: skip
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", script], env=served.env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [served.prefect_api_url, served.mlflow_url]


def _preflight(url: str, origin: str) -> tuple[int, str | None]:
    """(status, Access-Control-Allow-Origin) of a browser's CORS preflight for a POST from `origin`."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("access-control-allow-origin")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("access-control-allow-origin")


def test_servers_are_authenticated_by_default_and_cors_is_the_uis_own(served, http_fn):
    """Issue 14 item 1: without credentials nobody can create a flow, a deployment that runs a command, a flow
    run, or move/delete @champion; the generated credentials are owner-only; other origins get no CORS grant."""
    import uuid

    assert served.prefect_auth and served.mlflow_auth and not served.env.get("PREFECT_SERVER_API_AUTH_STRING")
    assert (served.home / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert served.servers["auth"] == {"prefect": "home", "mlflow": "home"}
    api = served.prefect_api_url
    command = {"name": "probe", "flow_id": str(uuid.uuid4()), "work_pool_name": "plm-cpu",
               "job_variables": {"command": "touch /tmp/plm-pwned"}}  # fmt: skip
    for auth in (None, (served.prefect_auth[0], "wrong")):
        assert http_fn(f"{api}/flows/", auth, "POST", {"name": "probe"})[0] == 401
        assert http_fn(f"{api}/deployments/", auth, "POST", command)[0] == 401
        assert http_fn(f"{api}/deployments/{uuid.uuid4()}/create_flow_run", auth, "POST", {})[0] == 401
        assert http_fn(f"{api}/flow_runs/filter", auth, "POST", {})[0] == 401
    status, flow = http_fn(f"{api}/flows/", served.prefect_auth, "POST", {"name": "auth-probe"})
    assert status in (200, 201) and flow["name"] == "auth-probe"
    for alias in ("registered-models/alias", "registered-models/create", "model-versions/create"):
        for auth in (None, (served.mlflow_auth[0], "wrong-password-123")):
            body = {"name": "ci-fast-sentiment", "alias": "champion", "version": "1", "source": "/tmp"}
            assert served.mlflow(alias, auth=auth, method="POST", **body)[0] == 401, alias
    assert served.mlflow("registered-models/alias", auth=None, method="DELETE", name="ci-fast-sentiment",
                         alias="champion")[0] == 401  # fmt: skip
    assert served.mlflow("experiments/search", auth=None, max_results=1)[0] == 401
    assert served.mlflow("experiments/search", max_results=1)[0] == 200
    # CORS: the UIs' own origins only (Prefect answered any origin with `*`).
    evil = "http://evil.example"
    assert _preflight(f"{api}/flows/", evil)[1] is None
    assert _preflight(f"{served.mlflow_url}/api/2.0/mlflow/registered-models/alias", evil)[1] is None
    ui = served.servers["prefect_ui_url"]
    assert _preflight(f"{api}/flows/", ui)[1] == ui


def test_deployment_parameters_schedule_limit_and_pools(served, deployed, corpus_dir, fast_spec):
    with served.prefect() as client:
        dep = client.read_deployment_by_name(DEPLOYMENT)
        cpu, gpu = client.read_work_pool("plm-cpu"), client.read_work_pool("plm-gpu")
    assert dep.parameters == {"spec_path": str(fast_spec.resolve()), "overrides": [f"corpus.paths=[sample:lee, {corpus_dir}]"]}
    assert deployed["parameters"] == dep.parameters and dep.work_pool_name == "plm-cpu"
    assert {"plm", "pipeline:ci-fast", "arch:bert"} <= set(dep.tags)
    assert [s.schedule.cron for s in dep.schedules] == ["0 3 * * *"]
    assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == 1
    assert cpu.type == "process" and gpu.type == "process" and (gpu.concurrency_limit or 0) >= 1
    # The schedule is live: the server's scheduler has queued upcoming runs of this deployment.
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + 90
    while True:
        with served.prefect() as client:
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=50, offset=0,
            )
        if upcoming or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert upcoming and all(r.expected_start_time.hour == 3 for r in upcoming)


def test_deployed_run_completes_with_named_task_runs_and_artifacts(served, first_run):
    assert first_run.name == "ci-fast[bert-debug]"
    tasks = served.task_runs(first_run.id)
    names = {t.name.split("[")[0]: t for t in tasks}
    assert set(names) >= {*STAGES, "register"}, sorted(t.name for t in tasks)
    assert all(t.state.type.value == "COMPLETED" for t in tasks), [(t.name, t.state) for t in tasks]
    assert names["pretrain"].name == "pretrain[bert-debug]"
    artifacts = served.artifacts(first_run.id)
    assert {f"ci-fast-{s}" for s in STAGES} | {"ci-fast-summary"} <= set(artifacts)
    assert all(v == "ran" for v in _stage_status(artifacts).values())
    # The artifact links the stage's MLflow run on the MLflow server.
    assert served.mlflow_url in artifacts["ci-fast-pretrain"].description
    rows = artifacts["ci-fast-ingest"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert {r["name"] for r in rows} >= {"rows_read", "rows_kept", "rows_quarantined"}


def test_mlflow_server_has_runs_metrics_and_registered_model(served, first_run):
    status, body = served.mlflow("registered-models/get", name="ci-fast-sentiment")
    assert status == 200, body
    aliases = {a["alias"] for a in body["registered_model"].get("aliases", [])}
    assert {"candidate", "champion"} <= aliases
    status, exp = served.mlflow("experiments/get-by-name", experiment_name="ci-fast")
    assert status == 200, exp
    status, found = served.mlflow("runs/search", method="POST", experiment_ids=[exp["experiment"]["experiment_id"]],
                                  filter="tags.plm.stage = 'pretrain'")  # fmt: skip
    assert status == 200 and found.get("runs"), found
    metrics = {m["key"] for m in found["runs"][0]["data"].get("metrics", [])}
    assert "loss" in metrics
    status, versions = served.mlflow("model-versions/search", filter="name='ci-fast-sentiment'")
    assert status == 200 and versions["model_versions"], versions
    # Artifacts went through the server's proxy into $PLM_HOME/mlartifacts.
    assert any((served.home / "mlartifacts").rglob("MLmodel"))


def test_incremental_rerun_through_the_deployment(served, first_run, corpus_dir, test_artifacts, timing):
    before = served.artifacts(first_run.id)
    old_fp = _fingerprints(before)
    old_lake = {f: (served.home / f).stat().st_mtime_ns for f in _manifest(served.home, "ingest", old_fp["ingest"])["output"]["lake_files"]}
    (corpus_dir / "notes_2.txt").write_text("\n".join(MORE_LINES) + "\n")

    t0 = time.perf_counter()
    run = served.wait(served.trigger(DEPLOYMENT))
    timing(test_artifacts, "incremental_rerun_s", time.perf_counter() - t0)
    assert run.state.type.value == "COMPLETED", f"{run.state}\n{served.log_tail()}"
    after = served.artifacts(run.id)
    new_fp = _fingerprints(after)
    assert all(new_fp[s] != old_fp[s] for s in STAGES), (old_fp, new_fp)
    assert set(_stage_status(after).values()) == {"ran"}
    # Only the new file was read: the earlier sources' lake files are untouched and still in the snapshot.
    manifest = _manifest(served.home, "ingest", new_fp["ingest"])
    new_lake = manifest["output"]["lake_files"]
    assert set(old_lake) < set(new_lake)
    assert all((served.home / f).stat().st_mtime_ns == m for f, m in old_lake.items())
    assert manifest["output"]["snapshot_id"] != _manifest(served.home, "ingest", old_fp["ingest"])["output"]["snapshot_id"]
    logs = served.logs_until(run.id, ["ingest notes_2.txt (rows)"])
    assert "ingest notes_2.txt (rows)" in logs and "ingest lee_background.cor (rows)" not in logs
    assert "ingest notes_1.txt (rows)" not in logs


def test_no_change_rerun_skips_every_stage(served, first_run, test_artifacts, timing):
    t0 = time.perf_counter()
    flow_run_id = served.trigger(DEPLOYMENT)
    run = served.wait(flow_run_id)
    seconds = time.perf_counter() - t0
    timing(test_artifacts, "no_change_rerun_s", seconds)
    timing(test_artifacts, "no_change_rerun_flow_s", run.total_run_time.total_seconds())
    assert run.state.type.value == "COMPLETED"
    assert set(_stage_status(served.artifacts(run.id)).values()) == {"reused"}
    logs = served.logs_until(run.id, [f"{s}: reusing " for s in STAGES])
    assert sum(f"{s}: reusing " in logs for s in STAGES) == len(STAGES), logs[-2000:]


def test_bad_input_fails_once_with_stage_and_reason(served, first_run, fast_spec):
    missing = "/nonexistent/plm-corpus/missing.txt"
    run = served.wait(served.trigger(DEPLOYMENT, {"spec_path": str(fast_spec.resolve()),
                                                  "overrides": [f"corpus.paths=[{missing}]"]}))  # fmt: skip
    assert run.state.type.value == "FAILED"
    ingest = next(t for t in served.task_runs(run.id) if t.name.startswith("ingest["))
    assert ingest.state.type.value == "FAILED"
    assert ingest.run_count == 1, "bad input must not be retried"
    failure = served.artifacts(run.id)["ci-fast-failure"]
    assert "| ingest |" in failure.data and "missing.txt" in failure.data
    # No partial output: every ingest output directory is a finished one (manifest present).
    assert all((d / "manifest.json").exists() for d in (served.home / "artifacts" / "ingest").iterdir() if not d.name.startswith("."))


def test_uis_show_the_flow_run_and_the_registered_model(served, first_run, browser, test_artifacts):
    dom = browser(f"{served.servers['prefect_ui_url']}/runs/flow-run/{first_run.id}", test_artifacts / "prefect-flow-run.png",
                  auth=served.prefect_auth, expect="ci-fast[bert-debug]")  # fmt: skip
    assert "ci-fast[bert-debug]" in dom
    assert (test_artifacts / "prefect-flow-run.png").stat().st_size > 10_000
    dom = browser(f"{served.mlflow_url}/#/models/ci-fast-sentiment", test_artifacts / "mlflow-model.png",
                  auth=served.mlflow_auth, expect="ci-fast-sentiment")  # fmt: skip
    assert "ci-fast-sentiment" in dom
    assert (test_artifacts / "mlflow-model.png").stat().st_size > 10_000


def test_stop_leaves_no_orphans(served):
    rc, left = served.stop()
    assert rc == 0 and left == []
    assert not (served.home / "servers.json").exists()
    from urllib.error import URLError
    from urllib.request import urlopen

    for url in (served.prefect_api_url + "/health", served.mlflow_url + "/health"):
        with pytest.raises(URLError):
            urlopen(url, timeout=2)
    assert os.environ.get("PREFECT_API_URL") is None


def test_plm_ui_opens_both_uis_on_the_home_with_analytics_off(served, first_run, served_factory, http_fn):
    """Issue 14 item 17: `plm ui` serves this home's stores (the runs above), authenticated, no worker."""
    assert not (served.home / "servers.json").exists()  # `plm serve` was stopped by the test before
    ui = served_factory(served.home, command="ui")
    try:
        assert set(ui.servers["children"]) == {"prefect-server", "mlflow-server"}
        with ui.prefect() as client:
            assert client.read_flow_run(first_run.id).name == "ci-fast[bert-debug]"
        status, settings = http_fn(f"{ui.prefect_api_url}/admin/settings", ui.prefect_auth)
        assert status == 200 and settings["server"]["analytics_enabled"] is False
        assert ui.mlflow("registered-models/get", name="ci-fast-sentiment")[0] == 200
        assert ui.mlflow("registered-models/get", auth=None, name="ci-fast-sentiment")[0] == 401
        assert http_fn(f"{ui.prefect_api_url}/flow_runs/{first_run.id}")[0] == 401
    finally:
        rc, left = ui.stop()
    assert rc == 0 and left == []
