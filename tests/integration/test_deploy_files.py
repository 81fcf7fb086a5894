"""deploy/: compose.yaml, prefect.yaml and the k8s GPU job template are well-formed and say what the issue asks.

`docker compose config` validates compose.yaml when a compose plugin is installed; the structural
checks below run everywhere.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV = {"POSTGRES_PASSWORD": "pg", "PREFECT_AUTH_STRING": "admin:pw", "MLFLOW_ADMIN_PASSWORD": "mlflow-pw", "MLFLOW_SECRET_KEY": "k",
       "MINIO_ROOT_USER": "minio", "MINIO_ROOT_PASSWORD": "minio-secret"}  # fmt: skip


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_services_auth_and_only_uis_published():
    services = _compose()["services"]
    assert {"postgres", "minio", "prefect-server", "mlflow", "worker-cpu", "worker-gpu"} <= set(services)
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"prefect-server": ["127.0.0.1:4200:4200"], "mlflow": ["127.0.0.1:5000:5000"]}
    prefect = services["prefect-server"]["environment"]
    assert prefect["PREFECT_SERVER_API_AUTH_STRING"] and prefect["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    mlflow = services["mlflow"]["command"]
    assert "--app-name=basic-auth" in mlflow and "--artifacts-destination=s3://mlflow" in mlflow
    assert any(a.startswith("--backend-store-uri=postgresql://") for a in mlflow)
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    for worker, pool in (("worker-cpu", "plm-cpu"), ("worker-gpu", "plm-gpu")):
        env = services[worker]["environment"]
        assert env["PREFECT_API_AUTH_STRING"] and env["MLFLOW_TRACKING_PASSWORD"]
        assert services[worker]["command"][services[worker]["command"].index("--pool") + 1] == pool
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    # the data stages' Dask cluster: workers share the home volume; Prefect workers find it by PLM_DASK_ADDRESS
    assert services["dask-scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert services["dask-worker"]["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert "plmhome:/data/plm" in services["dask-worker"]["volumes"] and services["dask-worker"]["deploy"]["replicas"] == 2
    assert services["worker-cpu"]["environment"]["PLM_DASK_ADDRESS"] == "tcp://dask-scheduler:8786"
    assert services["dask-worker"]["environment"]["DASK_CONFIG"] == "/app/deploy/dask"  # the repo is /app in the image
    assert yaml.safe_load((DEPLOY / "dask" / "plm-workers.yaml").read_text()) == {
        "distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None}}}}


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose plugin not installed (the structural test above still runs)",
)
def test_docker_compose_config_validates(tmp_path):
    import os

    res = subprocess.run(["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
                         env={**os.environ, **ENV}, capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_prefect_yaml_deployments_differ_only_in_parameters_and_schedule():
    doc = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    assert {"work_pools", "schedules"} <= set(doc["definitions"])
    deps = doc["deployments"]
    assert len({d["name"] for d in deps}) == len(deps) >= 2
    varying = {"name", "description", "parameters", "schedules", "work_pool"}
    shared = [{k: v for k, v in d.items() if k not in varying} for d in deps]
    assert all(s == shared[0] for s in shared)
    assert shared[0]["entrypoint"] == "flows/pipeline.py:pipeline" and shared[0]["concurrency_limit"]["limit"] == 1
    for d in deps:
        assert set(d["parameters"]) == {"spec_path", "overrides"}
        assert (DEPLOY.parent / d["parameters"]["spec_path"]).exists()
        assert d["work_pool"]["name"] in {"plm-cpu", "plm-gpu"}
        assert all(s["cron"] for s in d["schedules"])
    gpu = [d for d in deps if d["work_pool"]["name"] == "plm-gpu"]
    assert gpu and all("train.device=cuda" in d["parameters"]["overrides"] for d in gpu)


def test_k8s_gpu_job_template_requests_gpus_on_gpu_nodes():
    template = json.loads((DEPLOY / "k8s" / "gpu-base-job-template.json").read_text())
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert pod["nodeSelector"] == "{{ node_selector }}" and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    variables = template["variables"]["properties"]
    # every placeholder used in the job configuration is a declared variable
    import re

    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= set(variables), used - set(variables)
    assert "torchrun --standalone --nproc_per_node" in (DEPLOY / "k8s" / "README.md").read_text()


def test_the_dask_worker_config_unsets_mallocs_trim_threshold():
    """DASK_CONFIG=deploy/dask (compose's workers): the nannies' pre-spawn environment has no MALLOC_TRIM_THRESHOLD_."""
    code = ("import dask, json; import distributed; "
            "print(json.dumps(dask.config.get('distributed.nanny.pre-spawn-environ')))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DASK_CONFIG": str(DEPLOY / "dask")},
                         capture_output=True, text=True, check=True).stdout
    environ = json.loads(out)
    assert environ["MALLOC_TRIM_THRESHOLD_"] is None and environ["OMP_NUM_THREADS"] == 1
