"""Ingest mapped per source: 1 process vs a Dask LocalCluster of 1, 2 and 4 workers, in one run.

A synthetic corpus of `SOURCES` files (Zipf-distributed words, blank-line paragraphs, `corpus.text_unit=paragraph`;
every file repeats a share of the documents of the file before it, exactly or with one word changed, so exact and
near-dup work happen) is ingested into a fresh home per layout, with (a) exact dedup only and (b) near-dup on.
The map step of every source (read, normalise, filters, exact dedup within the source, language, sentences,
signatures) runs wherever the layout says; the commit step (near-dup over the staged signatures, renames, the
catalog) runs in this process, in source order, overlapping with the maps still running. Clusters are started
as plm starts them (`local_workers`: no MALLOC_TRIM_THRESHOLD_) and warmed up (plm imported and a tiny source mapped on every worker: the language model and numba kernels
loaded) before the clock starts. Lake files (bytes) and counts are asserted identical in every layout.

Prints `BENCH ingest_dask_<mode> layout=<local|dask> workers=N seconds=S speedup=X vs_1_worker=Y MB/s=M cpu_stage=C
cpu_workers=W`, speedup against the 1-process run, vs_1_worker against the 1-worker cluster; `cpu_stage` is the CPU time of the stage's process (in the Dask layouts: the commit
step and the orchestration, which stay serial), `cpu_workers` the CPU time of all workers together. `BENCH ingest_ranges_<mode>`: the same corpus as one file mapped
in 2 MB byte ranges (`corpus.range_bytes`). On a shared 2-core host the 4-worker figure oversubscribes the cores; say the load (`uptime`).

Run: nice -n 10 .venv/bin/python -m pytest -s tests/benchmarks/bench_ingest_dask.py -p no:cacheprovider -o addopts=
     (PLM_BENCH_SOURCES=N files of PLM_BENCH_SOURCE_MB=M MB each; default 8 x 2 MB, PLM_BENCH_QUICK=1: 4 x 0.5 MB)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import ingest_corpus, map_source, options_fingerprint, resolve_sources
from plm.objectives.shardrun import local_workers, on_cluster, run_shards

distributed = pytest.importorskip("distributed")

QUICK = os.environ.get("PLM_BENCH_QUICK") == "1"
SOURCES = int(os.environ.get("PLM_BENCH_SOURCES", "4" if QUICK else "8"))
SOURCE_MB = float(os.environ.get("PLM_BENCH_SOURCE_MB", "0.5" if QUICK else "2"))


def _corpus(root: Path) -> int:
    rng = np.random.default_rng(15)
    vocab = np.array([f"w{i}x" for i in range(20000)])
    p = 1 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    root.mkdir()
    previous: list[str] = []
    for f in range(SOURCES):
        docs: list[str] = []
        size = 0
        while size < SOURCE_MB * 1e6:
            r = rng.random()
            if previous and r < 0.1:
                doc = previous[rng.integers(len(previous))]
            elif previous and r < 0.2:
                words = previous[rng.integers(len(previous))].split()
                words[rng.integers(len(words))] = "changed"
                doc = " ".join(words)
            else:
                ids = rng.choice(len(vocab), int(rng.integers(80, 400)), p=p)
                doc = " ".join(" ".join(vocab[ids[i : i + 15]]) + " ." for i in range(0, len(ids), 15))
            docs.append(doc)
            size += len(doc) + 2
        (root / f"src{f:02d}.txt").write_text("\n\n".join(docs) + "\n")
        previous = docs
    return sum(f.stat().st_size for f in root.iterdir())


def _cfg(root: Path, near_dup: bool) -> CorpusSpec:
    return CorpusSpec(paths=[str(root)], allowed_roots=[str(root.parent)], text_unit="paragraph", near_dup=near_dup)


def _warm(path: str, lake: str) -> None:
    cfg = CorpusSpec(paths=[path], allowed_roots=[str(Path(path).parent)], text_unit="paragraph", near_dup=True)
    map_source(resolve_sources(cfg.paths, cfg.allowed_roots)[0], {"cfg": cfg, "optsfp": options_fingerprint(cfg),
                                                                    "lake": lake})  # fmt: skip


def _cpu() -> float:
    return time.process_time()


def _run(cfg: CorpusSpec, home: Path, client=None) -> tuple[float, float, float, dict]:
    """(wall s, CPU s of this process (the commit step and the orchestration), CPU s of the workers, outputs)."""
    workers = (lambda: sum(client.run(_cpu).values())) if client is not None else (lambda: 0.0)
    w0, c0, start = workers(), _cpu(), time.perf_counter()
    result = ingest_corpus(cfg, home, mapper=run_shards if client is not None else None)
    seconds, here, there = time.perf_counter() - start, _cpu() - c0, workers() - w0
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in result.files}
    return seconds, here, there, {"files": files, "counts": result.counts, "reasons": result.reasons}


def _warm_file(tmp_path: Path) -> str:
    """A tiny source every layout maps first (imports, the language model and numba kernels loaded), here too."""
    warm_dir = tmp_path / "warm"
    warm_dir.mkdir()
    (warm_dir / "w.txt").write_text("\n\n".join(f"A warm-up paragraph number {i} with a few words." for i in range(50)))
    _warm(str(warm_dir / "w.txt"), str(tmp_path / "warm-lake-local"))
    return str(warm_dir / "w.txt")


def _on_1_2_4_workers(name: str, cfg: CorpusSpec, tmp_path: Path, warm: str, mb: float, one: float, ref: dict) -> None:
    """The ingest of `cfg` on LocalClusters of 1, 2 and 4 workers, outputs asserted equal to the one-process `ref`."""
    first = None
    for n in (1, 2, 4):
        with local_workers(), distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                       dashboard_address=None) as c, distributed.Client(c) as client:  # fmt: skip
            client.run(_warm, warm, str(tmp_path / "warm-lake"))
            with on_cluster(client):
                seconds, here, there, got = _run(cfg, tmp_path / f"{name}-dask{n}", client)
        assert got == ref
        first = first or seconds
        # cpu_stage: the commit step + orchestration (serial: bounds the speedup at (cpu_stage+cpu_workers)/cpu_stage)
        print(f"BENCH {name} layout=dask workers={n} seconds={seconds:.2f} speedup={one / seconds:.2f} "
              f"vs_1_worker={first / seconds:.2f} MB/s={mb / seconds:.2f} cpu_stage={here:.2f} cpu_workers={there:.2f} "
              f"load1={os.getloadavg()[0]:.2f}")  # fmt: skip
        shutil.rmtree(tmp_path / f"{name}-dask{n}")


def test_ingest_on_1_2_4_workers(tmp_path):
    total = _corpus(tmp_path / "corpus")
    mb = total / 1e6
    warm = _warm_file(tmp_path)
    load = os.getloadavg()[0]
    print(f"\nBENCH corpus sources={SOURCES} MB={mb:.1f} load1={load:.2f}")
    for near_dup in (False, True):
        mode = "near_dup" if near_dup else "exact"
        cfg = _cfg(tmp_path / "corpus", near_dup)
        one, cpu_one, _, ref = _run(cfg, tmp_path / f"{mode}-local")
        print(f"BENCH ingest_dask_{mode} layout=local workers=1 seconds={one:.2f} speedup=1.00 MB/s={mb / one:.2f} "
              f"cpu_stage={cpu_one:.2f} kept={ref['counts']['rows_kept']} reasons={ref['reasons']} "
              f"load1={os.getloadavg()[0]:.2f}")  # fmt: skip
        _on_1_2_4_workers(f"ingest_dask_{mode}", cfg, tmp_path, warm, mb, one, ref)
    print(f"BENCH load1_end={os.getloadavg()[0]:.2f}")


def test_one_large_file_in_byte_ranges_on_1_2_4_workers(tmp_path):
    """The same corpus as one file (its copies now within the file), `corpus.range_bytes` = 2 MB: one map job per range
    (a file read whole would be one job, whatever the cluster); 1 process vs LocalClusters of 1, 2 and 4 workers."""
    from plm.corpus.ingest import map_jobs

    _corpus(tmp_path / "parts")
    big = tmp_path / "corpus"
    big.mkdir()
    with open(big / "one.txt", "wb") as out:
        for f in sorted((tmp_path / "parts").iterdir()):
            out.write(f.read_bytes().rstrip(b"\n") + b"\n\n")
    mb = (big / "one.txt").stat().st_size / 1e6
    warm = _warm_file(tmp_path)
    for near_dup in (False, True):
        mode = "near_dup" if near_dup else "exact"
        cfg = _cfg(big, near_dup).model_copy(update={"range_bytes": 2_000_000})
        ranges = len(map_jobs(resolve_sources(cfg.paths, cfg.allowed_roots)[0], cfg))
        one, cpu_one, _, ref = _run(cfg, tmp_path / f"{mode}-local")
        print(f"\nBENCH ingest_ranges_{mode} layout=local workers=1 MB={mb:.1f} ranges={ranges} seconds={one:.2f} "
              f"speedup=1.00 MB/s={mb / one:.2f} cpu_stage={cpu_one:.2f} load1={os.getloadavg()[0]:.2f}")  # fmt: skip
        _on_1_2_4_workers(f"ingest_ranges_{mode}", cfg, tmp_path, warm, mb, one, ref)


def test_map_step_in_one_vs_two_local_processes(tmp_path):
    """The map step alone (no Dask, no catalog): every source in this process vs a fork pool of 2 (`run_shards`
    with workers=2), the outputs asserted identical: whether a local process pool would pay on this host."""
    import resource

    total = _corpus(tmp_path / "corpus")
    cfg = _cfg(tmp_path / "corpus", False)
    sources = resolve_sources(cfg.paths, cfg.allowed_roots)
    _warm(str(sources[0].path), str(tmp_path / "warm"))
    digests = {}
    for n in (1, 2, 1, 2):
        lake = tmp_path / f"lake{n}"
        shutil.rmtree(lake, ignore_errors=True)
        work = {"cfg": cfg, "optsfp": options_fingerprint(cfg), "lake": str(lake), "threads": 1}
        kids, cpu, start = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu(), time.perf_counter()
        manifests = list(run_shards(map_source, sources, work, workers=n))
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = _cpu() - cpu + (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)
        digests.setdefault(n, [m["files"] for m in manifests])
        assert [m["files"] for m in manifests] == digests[1]
        if n == 1:
            one = seconds
        print(f"BENCH ingest_map_local processes={n} seconds={seconds:.2f} speedup={one / seconds:.2f} "
              f"MB/s={total / 1e6 / seconds:.2f} cpu={cpu:.2f} load1={os.getloadavg()[0]:.2f}")  # fmt: skip
