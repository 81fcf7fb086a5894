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


def _forked(fn: Callable[[Any, dict[str, Any]], Any], job: Any) -> Any:
    return fn(job, _FORKED)


def run_shards(fn: Callable[[J, dict[str, Any]], R], todo: Sequence[J], work: dict[str, Any], workers: int = 1) -> Iterator[R]:
    """`fn(job, work)` for every job of `todo`; results in the order of `todo`, whoever computed them."""
    client = _CLIENT.get()
    if client is not None and todo:
        shared = client.scatter([work], broadcast=True)[0]  # one future for the whole bundle, on every worker
        futures = client.map(fn, list(todo), work=shared, pure=False)
        try:
            for future in futures:
                yield future.result()
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
