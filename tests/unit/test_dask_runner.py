"""The examples stage's shards on real Dask clusters: one process, a 2-worker LocalCluster started by the stage
(`runner.kind=dask`), and an external `dask scheduler` + 2 `dask worker` processes on 127.0.0.1 reached through
`PLM_DASK_ADDRESS`, give byte-identical example shards and the same counts; a worker killed while shards
run has its shards redone elsewhere, nothing lost, doubled or half-written.

Ingest and tokenizer run once; each layout gets a copy of that home (homes are relocatable).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from plm import stages
from plm.config import load_spec

distributed = pytest.importorskip("distributed")

OVERRIDES = ["corpus.paths=[sample:lee]", "corpus.text_unit=line", "tokenizer.vocab_size=600", "objectives.seq_len=32",
             "objectives.dupe_factor=2", "objectives.docs_per_shard=8", "objectives.kinds=[mlm, nsp, skipgram]",
             "objectives.skipgram.min_count=3", "objectives.skipgram.shard_size=20000"]  # fmt: skip


def _spec(home: Path, *extra: str):
    return load_spec(None, [f"home={home}", *OVERRIDES, *extra])


@pytest.fixture(scope="module")
def base_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("base")
    with stages.Pipeline(_spec(home), tracking=False) as p:
        stages.run_until(p, "tokenizer")
    return home


@pytest.fixture(scope="module")
def reference(base_home, tmp_path_factory) -> stages.StageResult:
    home = tmp_path_factory.mktemp("one-process")
    shutil.copytree(base_home, home, dirs_exist_ok=True)
    return _examples(_spec(home))


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes, as an operator would start them."""
    tmp = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(tmp / "s.json"),
                                  "--dashboard-address", ":0"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(200):
        if (tmp / "s.json").exists():
            break
        time.sleep(0.1)
    address = json.loads((tmp / "s.json").read_text())["address"]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
              "--no-nanny", "--host", "127.0.0.1", "--no-dashboard"]  # fmt: skip
    workers = [subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    with distributed.Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    yield address, workers
    for proc in [*workers, scheduler]:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def _examples(spec, env: dict[str, str] | None = None) -> stages.StageResult:
    old = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with stages.Pipeline(spec, tracking=False) as p:
            stages.run_until(p, "examples")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return p.results["examples"]


def _files(result: stages.StageResult) -> dict[str, str]:
    return json.loads((result.path / "manifest.json").read_text())["files"]


def _layout(base_home: Path, tmp_path: Path) -> Path:
    shutil.copytree(base_home, tmp_path / "home")
    return tmp_path / "home"


def test_local_cluster_gives_the_same_shards(base_home, reference, tmp_path):
    environ = dict(os.environ)
    result = _examples(_spec(_layout(base_home, tmp_path), "runner.kind=dask", "runner.workers=2"))
    assert dict(os.environ) == environ  # the nannies' OMP_NUM_THREADS=1 & co. do not leak into later subprocesses
    assert result.fingerprint == reference.fingerprint  # where shards ran is no part of what they are
    assert len([f for f in _files(reference) if f.startswith("mlm/train/part-")]) > 20
    assert _files(result) == _files(reference) and result.counts == reference.counts


def test_external_cluster_by_address_gives_the_same_shards(base_home, reference, external, tmp_path):
    address, _ = external
    result = _examples(_spec(_layout(base_home, tmp_path), "runner.kind=dask"), {"PLM_DASK_ADDRESS": address})
    assert _files(result) == _files(reference) and result.counts == reference.counts and result.metrics == reference.metrics


def test_worker_killed_mid_run_has_its_shards_redone(base_home, reference, external, tmp_path):
    address, workers = external
    home = _layout(base_home, tmp_path)
    out: dict[str, stages.StageResult] = {}
    run = threading.Thread(target=lambda: out.update(r=_examples(_spec(home, "runner.kind=dask"),
                                                                   {"PLM_DASK_ADDRESS": address})))  # fmt: skip
    run.start()
    total = len([f for f in _files(reference) if f.startswith("mlm/")])
    partial = home / "artifacts" / "examples"
    written = 0
    while run.is_alive():
        written = len(list(partial.glob(".partial-*/mlm/*/part-*.parquet")))
        if written:
            break
        time.sleep(0.005)
    workers[0].send_signal(signal.SIGKILL)
    run.join(300)
    assert 0 < written < total, "the kill came after the shards were written"
    assert _files(out["r"]) == _files(reference) and out["r"].counts == reference.counts
