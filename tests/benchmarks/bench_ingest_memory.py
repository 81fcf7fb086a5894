"""Peak memory of `plm ingest` on one large input file (not part of the test suite).

    PLM_BENCH_BYTES=300000000 .venv/bin/python tests/benchmarks/bench_ingest_memory.py

Generates a JSONL file of PLM_BENCH_BYTES (default 2 GB; seeded, ~1.5 KB documents, 5 % exact
duplicates) under PLM_BENCH_DIR (default a temp dir), ingests it in a child process (so the figure is
the ingest's alone) and prints input size, wall time, MB/s, documents and the child's peak RSS from
`resource.getrusage(RUSAGE_CHILDREN)`. The issue's target: peak RSS < 1.5 GB for a 2 GB input.
Pass `--batch-bytes N` to see how the batch size moves the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORDS = (
    "the of and to in is was for on that with as by at from his her an which are were be this had not "
    "corpus model language token sentence document river city music history science energy market "
    "government village council research system water north south century people record station "
    "language learning training data memory stream batch parquet catalog lake quality filter"
).split()
CHILD = r"""
import json, sys, time
from pathlib import Path
from plm.config import CorpusSpec
from plm.corpus.ingest import ingest_corpus
path, home, batch_bytes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
r = ingest_corpus(CorpusSpec(paths=[path], allowed_roots=[str(Path(path).parent), str(home)], batch_bytes=batch_bytes), home)
print(json.dumps({"seconds": time.perf_counter() - start, "counts": r.counts, "parts": len(r.files)}))
"""


def generate(path: Path, size: int, seed: int = 0) -> None:
    """A JSONL file of about `size` bytes: English-like documents, 5 % of them exact repeats."""
    rng = random.Random(seed)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "." for _ in range(5000)]
    written = 0
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        i = 0
        while written < size:
            if recent and rng.random() < 0.05:
                text = rng.choice(recent)
            else:
                text = f"Document {i}. " + " ".join(rng.choice(sentences) for _ in range(rng.randint(5, 20)))
                recent = (recent + [text])[-100:]
            line = json.dumps({"text": text}) + "\n"
            f.write(line)
            written += len(line)
            i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-bytes", type=int, default=32_000_000)
    args = parser.parse_args()
    size = int(os.environ.get("PLM_BENCH_BYTES", 2_000_000_000))
    root = Path(os.environ.get("PLM_BENCH_DIR") or tempfile.mkdtemp(prefix="plm-bench-ingest-"))
    data = root / f"docs-{size}.jsonl"
    if not data.is_file() or data.stat().st_size < size:
        t = time.perf_counter()
        generate(data, size)
        print(f"generated {data} ({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f}s", flush=True)
    home = root / f"home-{time.time_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(data), str(home), str(args.batch_bytes)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    mb = data.stat().st_size / 1e6
    print(json.dumps({
        "input_mb": round(mb, 1), "batch_bytes": args.batch_bytes, "seconds": round(result["seconds"], 1),
        "mb_per_s": round(mb / result["seconds"], 2), "documents": result["counts"]["documents"],
        "rows_duplicate": result["counts"]["rows_duplicate"], "parts": result["parts"], "peak_rss_mb": round(peak_mb),
    }))


if __name__ == "__main__":
    main()
