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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from multiprocessing import get_context
from typing import Any, TypeVar

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
    spawn = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items() if k not in unset}
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


def _group(jobs: Sequence[Any], fn: Callable[[Any, dict[str, Any]], Any], work: dict[str, Any]) -> list[Any]:
    return [fn(job, work) for job in jobs]


def run_shards(
    fn: Callable[[J, dict[str, Any]], R], todo: Sequence[J], work: dict[str, Any], workers: int = 1,
    grouped: bool = False,
) -> Iterator[R]:
    """`fn(job, work)` for every job of `todo`; results in the order of `todo`, whoever computed them.

    `grouped`: many small jobs (tens of milliseconds each); on a cluster, consecutive jobs then travel as one task,
    about TASKS_PER_WORKER per worker, since each Dask task costs the scheduler and the client a few milliseconds
    (161 no-op tasks took 1.1 s on a 2-worker LocalCluster here, 8 took 0.12 s). A worker lost mid-group has the
    whole group redone elsewhere (files are renamed into place, so the redone ones are the same bytes)."""
    client = _CLIENT.get()
    if client is not None and todo:
        shared = client.scatter([work], broadcast=True)[0]  # one future for the whole bundle, on every worker
        jobs = list(todo)
        size = 1
        if grouped:
            size = max(1, -(-len(jobs) // (TASKS_PER_WORKER * max(1, len(client.scheduler_info()["workers"])))))
        if size == 1:
            futures = client.map(fn, jobs, work=shared, pure=False)
        else:
            groups = [jobs[i : i + size] for i in range(0, len(jobs), size)]
            futures = client.map(_group, groups, fn=fn, work=shared, pure=False)
        try:
            for future in futures:
                if size == 1:
                    yield future.result()
                else:
                    yield from future.result()
        finally:
            client.cancel(futures)
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
