"""MLM/NSP shard generation on 1 process vs a Dask LocalCluster of 1, 2 and 4 workers, in one run.

A synthetic corpus (Zipf-distributed words, `PLM_BENCH_DOCS` documents of ~300 words: default 20,000, 2,000 with
PLM_BENCH_QUICK=1; `objectives.docs_per_shard` at its default, 256) is ingested and tokenized once;
then (a) the mapped part alone, `write_bert_examples` over the encoded train split, and (b) the whole
examples stage (encoding and skip-gram vocabulary included, which stay in one process) run per layout.
Clusters are started as plm starts them (`local_workers`) and warmed up (plm imported on every worker) before
the clock starts; outputs are asserted byte-identical. Prints `BENCH <scope> layout=<local|dask> workers=N
seconds=S speedup=X` (against the one process) and `vs_1_worker` (against the 1-worker cluster); on a 2-core
host the 4-worker figure oversubscribes the cores.

Run: .venv/bin/python -m pytest -s tests/benchmarks/bench_examples_dask.py -p no:cacheprovider -o addopts=
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from plm import stages
from plm.config import load_spec
from plm.objectives.shardrun import local_workers, on_cluster

distributed = pytest.importorskip("distributed")

DOCS = int(os.environ.get("PLM_BENCH_DOCS", "2000" if os.environ.get("PLM_BENCH_QUICK") == "1" else "20000"))


def _corpus(path: Path, docs: int = DOCS, words: int = 300) -> None:
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}x" for i in range(8000)])
    p = 1 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    with open(path, "w") as f:
        for _ in range(docs):
            ids = rng.choice(len(vocab), words, p=p)
            sentences = [" ".join(vocab[ids[i : i + 15]]) + " ." for i in range(0, words, 15)]
            f.write(" ".join(sentences) + "\n\n")


def _overrides(root: Path) -> list[str]:
    return [f"corpus.paths=[{root / 'corpus.txt'}]", f"corpus.allowed_roots=[{root}]", "corpus.text_unit=paragraph",
            "corpus.max_top_ngram_fraction={}", "corpus.max_duplicate_ngram_fraction={}", "tokenizer.vocab_size=4000",
            "objectives.seq_len=128", "objectives.dupe_factor=2"]  # fmt: skip


def _files(result) -> dict[str, str]:
    return json.loads((result.path / "manifest.json").read_text())["files"]


def test_examples_on_1_2_4_workers(tmp_path):
    _corpus(tmp_path / "corpus.txt")
    base = tmp_path / "base"
    with stages.Pipeline(load_spec(None, [f"home={base}", *_overrides(tmp_path)]), tracking=False) as p:
        stages.run_until(p, "tokenizer")
        ing, tok = p.results["ingest"], p.results["tokenizer"]
    from plm.objectives.shards import write_bert_examples
    from plm.tokenizer.encode import encode_documents
    from plm.tokenizer.specials import SpecialIds
    from plm.tokenizer.train import load_tokenizer

    spec = load_spec(None, [f"home={base}", *_overrides(tmp_path)])
    t = load_tokenizer(tok.path / "tokenizer.json")
    docs = encode_documents(t, ing.output.files(base), "train")
    specials = SpecialIds.from_tokenizer(t)

    def mapped(out: Path) -> tuple[float, str]:
        start = time.perf_counter()
        write_bert_examples(docs, "train", spec.objectives, t.get_vocab_size(), specials, out)
        seconds = time.perf_counter() - start
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(out.glob("part-*.parquet")))).hexdigest()
        return seconds, digest

    def stage(home: Path, *extra: str) -> tuple[float, dict[str, str]]:
        shutil.copytree(base, home)
        start = time.perf_counter()
        with stages.Pipeline(load_spec(None, [f"home={home}", *_overrides(tmp_path), *extra]), tracking=False) as p:
            stages.run_until(p, "examples")
        return time.perf_counter() - start, _files(p.results["examples"])

    one, digest = mapped(tmp_path / "m1")
    stage_one, files = stage(tmp_path / "s1")
    print(f"\nBENCH corpus docs={len(docs)} load1={os.getloadavg()[0]:.2f}")
    print(f"BENCH shards layout=local workers=1 seconds={one:.2f} speedup=1.00")
    print(f"BENCH stage layout=local workers=1 seconds={stage_one:.2f} speedup=1.00 files={len(files)}")
    first: dict[str, float] = {}
    for n in (1, 2, 4):
        with local_workers(), distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                       dashboard_address=None) as c, distributed.Client(c) as client:  # fmt: skip
            client.run(lambda: __import__("plm.objectives.shards"))
            with on_cluster(client):
                seconds, got = mapped(tmp_path / f"dask-m{n}")
            assert got == digest
            first.setdefault("shards", seconds)
            print(f"BENCH shards layout=dask workers={n} seconds={seconds:.2f} speedup={one / seconds:.2f} "
                  f"vs_1_worker={first['shards'] / seconds:.2f} load1={os.getloadavg()[0]:.2f}")  # fmt: skip
            seconds, got_files = stage(tmp_path / f"dask-s{n}", "runner.kind=dask", f"runner.address={c.scheduler_address}")
            assert got_files == files
            first.setdefault("stage", seconds)
            print(f"BENCH stage layout=dask workers={n} seconds={seconds:.2f} speedup={stage_one / seconds:.2f} "
                  f"vs_1_worker={first['stage'] / seconds:.2f} load1={os.getloadavg()[0]:.2f}")  # fmt: skip
