"""One shard runner: the shards not written yet, generated in this process, a fork pool, or on a Dask cluster.

A shard job is `fn(job, work)`: `work` holds what every shard reads (the encoded corpus, the spec slice);
the job writes its file under a fixed name atomically (the file is the completion marker, so a re-run
skips it) and returns its small statistics. Outputs never depend on where a shard ran or how many
workers there were: each shard draws from its own RNG stream.

- in-process: one job after the other;
- `workers > 1`: a fork pool, `work` shared with the children by fork (not pickled per job);
- `on_cluster(client)`: `work` scattered once to every Dask worker, the jobs mapped over the cluster;
  a worker that dies mid-shard has its shards rerun elsewhere (distributed's own rescheduling), and a
  half-written shard never exists (files are renamed into place).
"""

from __future__ import annotations

import gc
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

J = TypeVar("J")
R = TypeVar("R")

_CLIENT: ContextVar[Any] = ContextVar("plm_dask_client", default=None)
_FORKED: dict[str, Any] = {}
"""`work` of the running fork pool: set before the children fork, so they inherit it."""


@contextmanager
def on_cluster(client: Any) -> Iterator[None]:
    """Run the shard jobs started inside this block on the Dask cluster of `client` (None: locally)."""
    token = _CLIENT.set(client)
    try:
        yield
    finally:
        _CLIENT.reset(token)


def cluster() -> Any:
    """The Dask client of the enclosing `on_cluster` block, or None."""
    return _CLIENT.get()


@contextmanager
def local_workers(threads: bool = False) -> Iterator[None]:
    """Inside this block, LocalClusters (their nannies) start workers without `MALLOC_TRIM_THRESHOLD_` and without
    the statistical profiler, and with `threads` also without distributed's `OMP_NUM_THREADS=1` / MKL / OpenBLAS
    settings; this process's environment is restored afterwards (the nannies write the pre-spawn environment into
    the process that starts them too).

    distributed sets `MALLOC_TRIM_THRESHOLD_=65536` so that workers hand freed memory back to the OS. Setting it
    also fixes glibc's mmap threshold at 128 KiB, so every larger buffer (Arrow columns, a batch's strings) is
    mmap'd, page-faulted and unmapped again: an ingest map job took 6.8 CPU-s in such a worker against 4.7 in
    this process and 4.6 in a worker without it (`tests/benchmarks/bench_ingest_dask.py`'s corpus, one worker).
    The data stages' memory is bounded by their batch sizes, so plm keeps glibc's defaults. `threads`: whole
    stages (training included) run on the workers, which then take this machine's thread defaults, as `local`.
    """
    import dask

    environ = dict(os.environ)
    unset: dict[str, Any] = {"MALLOC_TRIM_THRESHOLD_": None}
    if threads:
        unset.update(OMP_NUM_THREADS=None, MKL_NUM_THREADS=None, OPENBLAS_NUM_THREADS=None)
    spawn = dask.config.get("distributed.nanny.pre-spawn-environ", {})  # a None value is not set at all
    try:
        # and no statistical profiler sampling every worker thread each 10 ms (~5 % of a job's CPU): plm's
        # LocalClusters have no dashboard to show its profiles
        with dask.config.set({"distributed.nanny.pre-spawn-environ": {**spawn, **unset},
                              "distributed.worker.profile.enabled": False}):
            yield
    finally:
        os.environ.clear()
        os.environ.update(environ)


def _forked(fn: Callable[[Any, dict[str, Any]], Any], job: Any) -> Any:
    return fn(job, _FORKED)


TASKS_PER_WORKER = 4
"""`grouped` shard jobs go to the cluster in about this many tasks per worker."""


SHARE_BYTES = 1 << 20
"""With `share`, numpy arrays of `work` at least this large reach the workers as files they memory-map."""


@dataclass(frozen=True)
class _OnDisk:
    path: str


_MAPPED: dict[str, Any] = {}
"""This worker process's memory maps of the latest shared `work` (replaced when another arrives)."""


def _shared(work: dict[str, Any], share: Path) -> tuple[dict[str, Any], Path]:
    """`work` with its large arrays saved under a fresh directory of `share` (returned, removed by the caller); one a
    killed run left there goes first (a stage's partial output has one writer: its lock)."""
    for stale in share.glob(".work-*"):
        shutil.rmtree(stale, ignore_errors=True)
    directory = share / f".work-{uuid.uuid4().hex[:12]}"
    out: dict[str, Any] = {}
    for key, value in work.items():
        if isinstance(value, np.ndarray) and value.nbytes >= SHARE_BYTES and value.dtype != object:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{key}.npy"
            np.save(path, value, allow_pickle=False)
            out[key] = _OnDisk(str(path))
        else:
            out[key] = value
    return out, directory


def _loaded(work: dict[str, Any]) -> dict[str, Any]:
    files = {k: v.path for k, v in work.items() if isinstance(v, _OnDisk)}
    if not files:
        return work
    if _MAPPED.get("files") != files:
        _MAPPED.clear()  # the previous run's maps go (their files are gone)
        _MAPPED.update(files=files, arrays={k: np.load(p, mmap_mode="r", allow_pickle=False) for k, p in files.items()})
    return {**work, **_MAPPED["arrays"]}


def _one(job: Any, fn: Callable[[Any, dict[str, Any]], Any], work: dict[str, Any]) -> Any:
    return fn(job, _loaded(work))


def _group(jobs: Sequence[Any], fn: Callable[[Any, dict[str, Any]], Any], work: dict[str, Any]) -> list[Any]:
    work = _loaded(work)
    return [fn(job, work) for job in jobs]


def _on_cluster(client: Any, fn: Callable[[Any, dict[str, Any]], Any], jobs: list[Any], work: dict[str, Any],
                grouped: bool) -> Iterator[Any]:
    shared = client.scatter([work], broadcast=True)[0]  # one future for the whole bundle, on every worker
    size = 1
    if grouped:
        size = max(1, -(-len(jobs) // (TASKS_PER_WORKER * max(1, len(client.scheduler_info()["workers"])))))
    if size == 1:
        futures = client.map(_one, jobs, fn=fn, work=shared, pure=False)
    else:
        futures = client.map(_group, [jobs[i : i + size] for i in range(0, len(jobs), size)], fn=fn, work=shared,
                             pure=False)  # fmt: skip
    try:
        for future in futures:
            if size == 1:
                yield future.result()
            else:
                yield from future.result()
    finally:
        client.cancel(futures)


def run_shards(
    fn: Callable[[J, dict[str, Any]], R], todo: Sequence[J], work: dict[str, Any], workers: int = 1,
    grouped: bool = False, share: Path | None = None,
) -> Iterator[R]:
    """`fn(job, work)` for every job of `todo`; results in the order of `todo`, whoever computed them.

    `grouped`: many small jobs (tens of milliseconds each); on a cluster, consecutive jobs then travel as one task,
    about TASKS_PER_WORKER per worker, since each Dask task costs the scheduler and the client a few milliseconds
    (161 no-op tasks took 1.1 s on a 2-worker LocalCluster here, 8 took 0.12 s). A worker lost mid-group has the
    whole group redone elsewhere (files are renamed into place, so the redone ones are the same bytes).

    `share`: a directory every worker sees (the stage's output, under the home that a cluster's workers must share).
    On a cluster, the large numpy arrays of `work` are saved there once and memory-mapped by each worker (the page
    cache holds one copy per machine), instead of pickled from this process to every worker: 55 MB of encoded corpus
    took ~0.9 s to broadcast to 2 local workers before their first shard started. Removed when the shards are done."""
    client = _CLIENT.get()
    if client is not None and todo:
        directory = None
        if share is not None:
            work, directory = _shared(work, share)
        try:
            yield from _on_cluster(client, fn, list(todo), work, grouped)
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        return
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        _FORKED.update(work)
        # the parent's objects out of the collector's reach while children fork: a child's collection would
        # otherwise touch (and so copy) every page of the parent's heap
        gc.freeze()
        try:
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                yield from pool.map(partial(_forked, fn), todo)
        finally:
            gc.unfreeze()
            _FORKED.clear()
        return
    for job in todo:
        yield fn(job, work)
