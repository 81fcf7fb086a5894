"""MLM/NSP shard generation on 1 process vs a Dask LocalCluster of 2 and 4 workers, in one run.

A synthetic corpus (Zipf-distributed words, 4,000 documents of ~300 words) is ingested and tokenized once;
then (a) the mapped part alone, `write_bert_examples` over the encoded train split, and (b) the whole
examples stage (encoding and skip-gram vocabulary included, which stay in one process) run per layout.
Clusters are started and warmed up (plm imported on every worker) before the clock starts; outputs are
asserted byte-identical. Prints `BENCH <scope> workers=N seconds=S speedup=X`; on a shared 2-core host the
4-worker figure oversubscribes the cores.

Run: .venv/bin/python -m pytest -s tests/benchmarks/bench_examples_dask.py -p no:cacheprovider -o addopts=
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from plm import stages
from plm.config import load_spec
from plm.objectives.shardrun import on_cluster

distributed = pytest.importorskip("distributed")


def _corpus(path: Path, docs: int = 4000, words: int = 300) -> None:
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
            "objectives.seq_len=128", "objectives.dupe_factor=2", "objectives.docs_per_shard=64"]  # fmt: skip


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
    print(f"\nBENCH shards docs={len(docs)} workers=1 seconds={one:.2f} speedup=1.00")
    print(f"BENCH stage workers=1 seconds={stage_one:.2f} speedup=1.00 files={len(files)}")
    for n in (2, 4):
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
                distributed.Client(c) as client:  # fmt: skip
            client.run(lambda: __import__("plm.objectives.shards"))
            with on_cluster(client):
                seconds, got = mapped(tmp_path / f"m{n}")
            assert got == digest
            print(f"BENCH shards workers={n} seconds={seconds:.2f} speedup={one / seconds:.2f}")
            seconds, got_files = stage(tmp_path / f"s{n}", "runner.kind=dask", f"runner.address={c.scheduler_address}")
            assert got_files == files
            print(f"BENCH stage workers={n} seconds={seconds:.2f} speedup={stage_one / seconds:.2f}")
