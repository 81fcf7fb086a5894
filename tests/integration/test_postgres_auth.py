"""`plm serve` with PostgreSQL backends for both Prefect and MLflow and auth on for both servers:
a deployed run goes through, its records land in Postgres, and requests without or with a wrong
credential are refused. Configuration is environment variables only, as in deploy/compose.yaml.
"""

import time

import pytest

pytest.importorskip("gensim")
pytestmark = [pytest.mark.server, pytest.mark.slow]

PREFECT_AUTH = ("plm-admin", "prefect-s3cret")
MLFLOW_AUTH = ("plm-admin", "mlflow-s3cret-Pw1")
WRONG = ("plm-admin", "not-the-password")


@pytest.fixture(scope="module")
def served(tmp_path_factory, served_factory, postgres, test_artifacts, timing):
    served = served_factory(tmp_path_factory.mktemp("plm_home_pg"), {
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres["prefect_url"],
        "MLFLOW_BACKEND_STORE_URI": postgres["mlflow_url"],
        "PREFECT_SERVER_API_AUTH_STRING": ":".join(PREFECT_AUTH),
        "MLFLOW_TRACKING_USERNAME": MLFLOW_AUTH[0],
        "MLFLOW_TRACKING_PASSWORD": MLFLOW_AUTH[1],
    })  # fmt: skip
    timing(test_artifacts, "serve_to_healthy_postgres_auth_s", served.servers["seconds_to_healthy"])
    yield served
    rc, left = served.stop()
    for log in (served.home / "logs").glob("*.log"):
        (test_artifacts / f"postgres-{log.name}").write_text(log.read_text(errors="replace"))
    assert rc == 0 and left == []


@pytest.fixture(scope="module")
def run(served, fast_spec, test_artifacts, timing):
    served.plm("deploy", str(fast_spec), "--json")
    t0 = time.perf_counter()
    run = served.wait(served.trigger("pipeline/ci-fast"))
    timing(test_artifacts, "postgres_deployment_run_s", time.perf_counter() - t0)
    assert run.state.type.value == "COMPLETED", f"{run.state}\n{served.log_tail()}"
    return run


def test_run_completes_and_lands_in_postgres(served, run, postgres, pg_query_fn):
    tasks = served.task_runs(run.id)
    assert {t.name.split("[")[0] for t in tasks} >= {"ingest", "tokenizer", "examples", "pretrain", "finetune", "register"}
    assert all(t.state.type.value == "COMPLETED" for t in tasks)
    rows = pg_query_fn(postgres, "prefect", f"SELECT name, state_type FROM flow_run WHERE id = '{run.id}'")
    assert rows == [("ci-fast[bert-debug]", "COMPLETED")]
    assert pg_query_fn(postgres, "mlflow", "SELECT name FROM registered_models ORDER BY name") == [
        ("ci-fast-encoder",), ("ci-fast-sentiment",)]
    # No SQLite store was created on the side.
    assert not (served.home / "mlflow.db").exists() and not (served.home / "prefect" / "prefect.db").exists()


def test_mlflow_registered_model_over_rest_with_credentials(served, run):
    status, body = served.mlflow("registered-models/get", name="ci-fast-sentiment")
    assert status == 200, body
    assert {"champion", "candidate"} <= {a["alias"] for a in body["registered_model"]["aliases"]}


@pytest.mark.parametrize("auth", [None, WRONG], ids=["no-credential", "wrong-credential"])
def test_servers_refuse_missing_or_wrong_credentials(served, run, http_fn, auth):
    prefect_status, _ = http_fn(f"{served.prefect_api_url}/flow_runs/{run.id}", auth)
    assert prefect_status in (401, 403)
    status, _ = http_fn(f"{served.prefect_api_url}/deployments/filter", auth, "POST", {})
    assert status in (401, 403)
    mlflow_url = f"{served.mlflow_url}/api/2.0/mlflow/registered-models/get?name=ci-fast-sentiment"
    assert http_fn(mlflow_url, auth)[0] in (401, 403)
    assert http_fn(f"{served.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=5", auth)[0] in (401, 403)


def test_servers_accept_the_right_credentials(served, run, http_fn):
    assert http_fn(f"{served.prefect_api_url}/flow_runs/{run.id}", PREFECT_AUTH)[0] == 200
    assert http_fn(f"{served.mlflow_url}/api/2.0/mlflow/registered-models/get?name=ci-fast-sentiment", MLFLOW_AUTH)[0] == 200
    # The MLflow basic-auth credentials are not the Prefect ones (separate user stores).
    assert http_fn(f"{served.mlflow_url}/api/2.0/mlflow/registered-models/get?name=ci-fast-sentiment", PREFECT_AUTH)[0] == 401
