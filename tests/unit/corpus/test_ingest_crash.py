"""SIGKILL an ingest at several points; the catalog's views then show the corpus as before the run, and the
next run ends exactly where a clean run does (same lake files, doc ids and per-source counts)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import STAGING, connect_catalog, ingest_corpus

ROOT = Path(__file__).resolve().parents[3]
# The child reports every progress event on stdout; at event number `stop` it prints "stop" and, when asked
# to, sleeps so the kill lands exactly between two steps; otherwise it runs on and is killed mid-step.
CHILD = r"""
import sys, time
from pathlib import Path
from plm.config import CorpusSpec
from plm.corpus.ingest import ingest_corpus
corpus, home, stop, pause = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "pause"
events = 0
def progress(what, done, total):
    global events
    events += 1
    if events == stop:
        print("stop", what, done, flush=True)
        if pause:
            time.sleep(300)
ingest_corpus(CorpusSpec(paths=[corpus], text_unit="line", batch_records=100), home, progress=progress)
print("finished", flush=True)
"""


def spec(d: Path) -> CorpusSpec:
    return CorpusSpec(paths=[str(d)], text_unit="line", batch_records=100)


def write_corpus(d: Path, files: range) -> None:
    d.mkdir(exist_ok=True)
    for f in files:
        # 300 lines per file, 3 batches of 100; lines repeat across files so cross-source dedup matters
        lines = [f"Document {(f * 170 + i) % 700} of the shared pool, written for the crash test." for i in range(300)]
        (d / f"part{f}.txt").write_text("\n".join(lines) + "\n")


def state(home: Path) -> dict:
    """Everything a reader of the catalog can see, plus the lake's files."""
    con = connect_catalog(home, read_only=True)
    try:
        sources = con.execute(
            "SELECT path, rows_read, rows_kept, rows_duplicate, rows_filtered, rows_quarantined, lake_files "
            "FROM sources ORDER BY path"
        ).fetchall()
        docs = sorted(r[0] for r in con.execute("SELECT doc_id FROM documents").fetchall())
        snapshots = con.execute("SELECT snapshot_id, counts FROM snapshots ORDER BY created_at").fetchall()
        hashes = con.execute("SELECT count(*), count(DISTINCT doc_id) FROM doc_hashes").fetchone()
    finally:
        con.close()
    lake = home / "lake" / "documents"
    files = sorted(p.name for p in lake.glob("*.parquet"))
    return {"sources": [(Path(s[0]).name, *s[1:]) for s in sources], "docs": docs, "snapshots": snapshots,
            "hashes": hashes, "files": files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A corpus of a base file plus three more, and the states after clean ingests of the base and of all."""
    root = tmp_path_factory.mktemp("crash")
    base = root / "base"
    write_corpus(base, range(1))
    full = root / "full"
    write_corpus(full, range(4))
    clean = root / "clean"
    ingest_corpus(spec(base), clean)
    before = state(clean)
    ingest_corpus(spec(full), clean)
    return root, before, state(clean)


# Progress events of the killed run (the base file is already in the catalog): 1 = start, 2 = base file
# skipped, then per new source 3 "batch staged" events and 1 "source committed" event (3-6, 7-10, 11-14).
@pytest.mark.parametrize(("stop", "pause"), [
    (1, True),    # before any source
    (4, True),    # two parts of the first new source staged, its transaction open
    (6, True),    # first new source committed, second not started
    (8, False),   # killed while the second new source runs (reading, DuckDB inserts, parquet writing)
    (9, False),   # killed around the second source's last part, rename and commit
    (14, True),   # every source committed, the snapshot not yet written
])
def test_sigkill_then_rerun_equals_a_clean_run(tmp_path, corpus, stop, pause):
    root, before, after = corpus
    home = tmp_path / "home"
    ingest_corpus(spec(root / "base"), home)
    assert state(home) == before
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root / "full"), str(home), str(stop), "pause" if pause else "run"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("stop"), line
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    seen = state(home)
    # readers still see the corpus as before the run: same snapshot, same documents
    assert (seen["docs"], seen["snapshots"]) == (before["docs"], before["snapshots"])
    rerun = ingest_corpus(spec(root / "full"), home)
    final = state(home)
    assert final["sources"] == after["sources"]
    assert final["docs"] == after["docs"] and final["files"] == after["files"] and final["hashes"] == after["hashes"]
    assert [s[0] for s in final["snapshots"]] == [s[0] for s in after["snapshots"]]
    assert rerun.counts["rows_read"] == 1200
    staging = home / "lake" / "documents" / STAGING
    assert not staging.exists() or not any(staging.iterdir())
