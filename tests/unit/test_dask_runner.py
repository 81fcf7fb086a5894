"""The data stages on real Dask clusters: one process, a 2-worker LocalCluster started by the stage
(`runner.kind=dask`), and an external `dask scheduler` + 2 `dask worker` processes on 127.0.0.1 reached through
`PLM_DASK_ADDRESS`, give byte-identical example shards and the same counts; a worker killed while shards
run has its shards redone elsewhere, nothing lost, doubled or half-written. The same for ingest, mapped per
source and per byte range of a source (`corpus.range_bytes`): the same lake files (bytes), catalog rows and counts
in every layout, and a worker killed mid-range.

For the examples, ingest and tokenizer run once; each layout gets a copy of that home (homes are relocatable).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from plm import stages
from plm.artifacts import load_ref
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
    workers.append(lambda: subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    yield address, workers  # workers[-1] starts one more (a test that kills a worker replaces it)
    workers.pop()
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


def _worker_environ() -> dict[str, str]:
    return dict(os.environ)


@pytest.mark.parametrize("threads", [False, True])
def test_local_workers_start_without_mallocs_trim_threshold(threads):
    """plm's LocalClusters: no MALLOC_TRIM_THRESHOLD_ (it made ingest's map jobs ~45 % costlier), OMP_NUM_THREADS=1
    only for shard-job workers; the starting process's environment is left as it was."""
    from plm.objectives.shardrun import local_workers

    environ = dict(os.environ)
    with local_workers(threads=threads), distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, distributed.Client(c) as client:
        env = next(iter(client.run(_worker_environ).values()))
    assert dict(os.environ) == environ
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert env.get("OMP_NUM_THREADS") == (environ.get("OMP_NUM_THREADS") if threads else "1")


def test_local_cluster_gives_the_same_shards(base_home, reference, tmp_path, monkeypatch):
    import plm.objectives.shardrun as shardrun

    monkeypatch.setattr(shardrun, "SHARE_BYTES", 1)  # every array of the shards' work reaches the workers as a file
    environ = dict(os.environ)
    result = _examples(_spec(_layout(base_home, tmp_path), "runner.kind=dask", "runner.workers=2"))
    assert dict(os.environ) == environ  # the nannies' OMP_NUM_THREADS=1 & co. do not leak into later subprocesses
    assert result.fingerprint == reference.fingerprint  # where shards ran is no part of what they are
    assert len([f for f in _files(reference) if f.startswith("mlm/train/part-")]) > 20
    assert _files(result) == _files(reference) and result.counts == reference.counts


def test_worker_killed_mid_run_has_its_shards_redone(base_home, reference, external, tmp_path, monkeypatch):
    import plm.objectives.shardrun as shardrun

    monkeypatch.setattr(shardrun, "SHARE_BYTES", 1)  # the replacement worker memory-maps the shared work too
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
    assert out["r"].metrics == reference.metrics


# ---------------------------------------------------------------- ingest, mapped per source


SOURCES, LINES = 4, 150
INGEST = ["corpus.text_unit=line", "corpus.near_dup=true", "corpus.batch_records=25", "corpus.validation_fraction=0.1",
          "corpus.range_bytes=4096"]  # every source is also cut in byte ranges, each a map job of its own


@pytest.fixture(scope="module")
def ingest_corpus_dir(tmp_path_factory) -> Path:
    """Four sources of 150 lines: exact copies within a source (across batches too) and across sources, near copies
    (one word changed) within and across sources, too-short lines and undecodable ones."""
    d = tmp_path_factory.mktemp("ingest-corpus")
    rng = random.Random(15)
    vocab = [f"w{i}" for i in range(2000)]
    pool = [" ".join(rng.choice(vocab) for _ in range(40)) for _ in range(300)]
    for f in range(SOURCES):
        lines = []
        for _ in range(LINES):
            r, words = rng.random(), pool[rng.randrange(len(pool))].split()
            if r < 0.15:
                words[rng.randrange(len(words))] = "changed"
            elif r < 0.2:
                words = ["tiny"]
            elif r < 0.22:
                words = ["caf\udce9 latin-1 bytes are not utf-8 \udcff here at all, really not"]
            lines.append(" ".join(words).encode("utf-8", "surrogateescape"))
        (d / f"src{f}.txt").write_bytes(b"\n".join(lines) + b"\n")
    return d


def _ingest(home: Path, corpus: Path, *extra: str, env: dict[str, str] | None = None) -> stages.StageResult:
    old = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with stages.Pipeline(load_spec(None, [f"home={home}", f"corpus.paths=[{corpus}]", *INGEST, *extra]),
                             tracking=False) as p:  # fmt: skip
            stages.run_until(p, "ingest")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return p.results["ingest"]


def _lake_and_catalog(home: Path) -> dict:
    """The lake files (name -> sha256) and every catalog row ingest writes, timestamps left out."""
    import duckdb

    lake = home / "lake" / "documents"
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        q = lambda s: con.execute(s).fetchall()  # noqa: E731
        state = {
            "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(lake.glob("*.parquet"))},
            "sources": q("SELECT * EXCLUDE (ingested_at) FROM sources ORDER BY path"),
            "quarantine": q("SELECT * FROM quarantine ORDER BY ALL"),
            "doc_hashes": q("SELECT * FROM doc_hashes ORDER BY ALL"),
            "near_dup_docs": q("SELECT * FROM near_dup_docs ORDER BY seq"),
            "near_dup_bands": q("SELECT count(*), sum(hash % 1000003) FROM near_dup_bands"),
            "near_duplicates": q("SELECT * FROM near_duplicates ORDER BY ALL"),
            "snapshots": q("SELECT snapshot_id, counts FROM snapshots"),
            "derived": q("SELECT * FROM derived_files ORDER BY ALL"),
        }
    finally:
        con.close()
    assert not (lake / ".staging").exists() or not any((lake / ".staging").iterdir())  # no leftover, killed or not
    return state


@pytest.fixture(scope="module")
def ingest_reference(ingest_corpus_dir, tmp_path_factory) -> tuple[stages.StageResult, dict]:
    home = tmp_path_factory.mktemp("ingest-one-process")
    result = _ingest(home, ingest_corpus_dir)
    return result, _lake_and_catalog(home)


def _same_ingest(result: stages.StageResult, home: Path, reference: tuple[stages.StageResult, dict]) -> None:
    ref, ref_state = reference
    state = _lake_and_catalog(home)
    assert result.fingerprint == ref.fingerprint and result.counts == ref.counts
    assert result.output.lake_files == ref.output.lake_files and result.output.reasons == ref.output.reasons
    assert state == ref_state
    for row in state["sources"]:  # the accounting identity holds per source: rows_read = kept+duplicate+filtered+quarantined
        _, _, _, _, _, _, read, kept, dup, filtered, quarantined, *_ = row
        assert read == kept + dup + filtered + quarantined == LINES


def test_ingest_reference_exercises_every_path(ingest_corpus_dir, ingest_reference):
    result, state = ingest_reference
    reasons = result.output.reasons
    assert {"duplicate", "near_duplicate", "too_short", "undecodable:utf-8"} <= set(reasons)
    assert reasons["near_duplicate"] > 20 and len(state["sources"]) == SOURCES and state["near_duplicates"]
    assert {len(row[14]) for row in state["sources"]} != {1}  # several parts per source (several batches)
    from plm.corpus.ingest import map_jobs, resolve_sources

    spec = load_spec(None, [f"corpus.paths=[{ingest_corpus_dir}]", *INGEST])
    assert all(len(map_jobs(s, spec.corpus)) > 1 for s in resolve_sources(spec.corpus.paths, spec.corpus.allowed_roots))


def test_ingest_on_a_local_cluster_gives_the_same_lake_and_catalog(ingest_corpus_dir, ingest_reference, tmp_path):
    environ = dict(os.environ)
    result = _ingest(tmp_path / "home", ingest_corpus_dir, "runner.kind=dask", "runner.workers=2")
    assert dict(os.environ) == environ
    _same_ingest(result, tmp_path / "home", ingest_reference)


def test_ingest_on_an_external_cluster_gives_the_same_lake_and_catalog(ingest_corpus_dir, ingest_reference, external,
                                                                       tmp_path):  # fmt: skip
    address, _ = external
    result = _ingest(tmp_path / "home", ingest_corpus_dir, "runner.kind=dask", env={"PLM_DASK_ADDRESS": address})
    _same_ingest(result, tmp_path / "home", ingest_reference)


def test_ingest_worker_killed_mid_source_has_the_source_redone(ingest_corpus_dir, ingest_reference, external, tmp_path):
    address, workers = external
    for i, proc in enumerate(workers[:-1]):  # two live workers, whatever ran before
        if proc.poll() is not None:
            workers[i] = workers[-1]()
    with distributed.Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    home = tmp_path / "home"
    out: dict[str, stages.StageResult] = {}
    run = threading.Thread(target=lambda: out.update(r=_ingest(home, ingest_corpus_dir, "runner.kind=dask",
                                                               env={"PLM_DASK_ADDRESS": address})))  # fmt: skip
    run.start()
    staging = home / "lake" / "documents" / ".staging"
    pids = {proc.pid: i for i, proc in enumerate(workers[:-1])}
    killed = None
    while run.is_alive() and killed is None:
        for part in staging.glob("*.tmp-*/part-*.parquet"):  # a map attempt in flight: <source>.tmp-<pid>-<nonce>
            attempt = part.parent
            pid = int(attempt.name.split(".tmp-")[1].split("-")[0])
            if pid in pids and not (attempt / "manifest.json").exists():
                workers[pids[pid]].send_signal(signal.SIGKILL)
                killed = attempt
                break
        time.sleep(0.002)
    assert killed is not None, "no source was being mapped when the run ended"
    workers[pids[pid]].wait(10)
    workers[pids[pid]] = workers[-1]()  # the fixture's cluster has two workers again for later tests
    run.join(300)
    assert not killed.exists() and "r" in out  # the dead attempt's directory is gone; the run succeeded
    _same_ingest(out["r"], home, ingest_reference)


# ---------------------------------------------------------------- the Prefect flow on the cluster


def test_the_pipeline_flow_runs_its_tasks_on_the_cluster_and_writes_mlflow_from_its_own_process(
        base_home, reference, external, tmp_path):  # fmt: skip
    """`plm run` with `runner.address`: prefect-dask's DaskTaskRunner sends every stage but register to the external
    workers, whose data stages map their shards onto the same cluster; the workers never import MLflow (the flow
    replays each stage's journal into its run), and the shards are those of one process."""
    address, _ = external
    home = _layout(base_home, tmp_path)
    sets = [*OVERRIDES, f"home={home}", "runner.kind=dask", f"runner.address={address}", "model.size=debug",
            "train.steps=4", "train.batch_size=8", "train.warmup_steps=1", "train.log_every=1",
            "finetune.data=sample:polarity", "finetune.epochs=1", "finetune.seq_len=24",
            "finetune.compare_scratch=false"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "PLM_DASK"))}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), PLM_HOME=str(home), PREFECT_HOME=str(home / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    spec = tmp_path / "dask-flow.yaml"  # the schema's defaults, as `_spec` (the reference's) starts from
    spec.write_text("name: dask-flow\n")
    cmd = [sys.executable, "-c", "from flows.cli import main; main()", "run", str(spec),
           *(a for s in sets for a in ("--set", s)), "--json"]  # fmt: skip
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    by_stage = {s["stage"]: s for s in summary["stages"]}
    assert list(by_stage) == ["ingest", "tokenizer", "examples", "pretrain", "finetune", "register"]
    assert by_stage["examples"]["fingerprint"] == reference.fingerprint and not by_stage["examples"]["reused"]
    assert load_ref(by_stage["examples"]["path"]).manifest["files"] == _files(reference)
    with distributed.Client(address) as client:
        ran = client.run(lambda: "flows.stages" in sys.modules)
        mlflow_modules = client.run(lambda: sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"))
    assert any(ran.values()), "no stage task ran on the cluster's workers"
    assert not any(mlflow_modules.values()), mlflow_modules

    from mlflow import MlflowClient

    mlflow = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in mlflow.search_runs([mlflow.get_experiment_by_name("dask-flow").experiment_id])}
    assert {"examples", "pretrain", "finetune", "register"} <= runs.keys()
    assert all(r.info.status == "FINISHED" for r in runs.values())
    pre = runs["pretrain"]  # replayed from the worker's journal: every logged step, the params, the plot
    assert len(mlflow.get_metric_history(pre.info.run_id, "loss")) == 4 and pre.data.tags["plm.fingerprint"] == by_stage["pretrain"]["fingerprint"]
    assert "plots" in {a.path for a in mlflow.list_artifacts(runs["examples"].info.run_id)}
    assert "train.steps" in pre.data.params and by_stage["pretrain"]["run_id"] == pre.info.run_id
    assert not list((home / "journals").glob("*"))  # replayed and removed
