"""The examples stage's shards on 1 process vs a Dask LocalCluster of 2 and 4 workers, in one run.

Ingest and tokenizer run once; each layout generates the same MLM/NSP + skip-gram shards from a copy of
that home (the outputs are asserted byte-identical). Clusters are started before the clock starts (their
address is passed as `runner.address`), so the figures are shard work plus Dask's scatter/map overhead.
Prints `BENCH examples workers=N seconds=S speedup=X` lines; on a shared 2-core host the 4-worker figure
oversubscribes the cores.

Run: .venv/bin/python -m pytest -s tests/benchmarks/bench_examples_dask.py -p no:cacheprovider -o addopts=
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from plm import stages
from plm.config import load_spec

distributed = pytest.importorskip("distributed")

OVERRIDES = ["corpus.paths=[sample:enwiki]", "tokenizer.vocab_size=4000", "objectives.seq_len=128",
             "objectives.dupe_factor=4", "objectives.docs_per_shard=32", "objectives.kinds=[mlm, nsp, skipgram]",
             "objectives.skipgram.shard_size=200000"]  # fmt: skip


def _run(home: Path, *extra: str) -> tuple[float, dict[str, str]]:
    spec = load_spec(None, [f"home={home}", *OVERRIDES, *extra])
    start = time.perf_counter()
    with stages.Pipeline(spec, tracking=False) as p:
        stages.run_until(p, "examples")
    seconds = time.perf_counter() - start
    return seconds, json.loads((p.results["examples"].path / "manifest.json").read_text())["files"]


def test_examples_on_1_2_4_workers(tmp_path):
    base = tmp_path / "base"
    with stages.Pipeline(load_spec(None, [f"home={base}", *OVERRIDES]), tracking=False) as p:
        stages.run_until(p, "tokenizer")
    shutil.copytree(base, tmp_path / "w1")
    one, files = _run(tmp_path / "w1")
    print(f"BENCH examples workers=1 seconds={one:.2f} speedup=1.00 shards={len(files)}")
    for n in (2, 4):
        shutil.copytree(base, tmp_path / f"w{n}")
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as c:
            seconds, got = _run(tmp_path / f"w{n}", "runner.kind=dask", f"runner.address={c.scheduler_address}")
        assert got == files
        print(f"BENCH examples workers={n} seconds={seconds:.2f} speedup={one / seconds:.2f}")
