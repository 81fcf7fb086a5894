"""Two ingests on one home at once: the second waits for the catalog lock, or fails naming the holder."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import connect_catalog, ingest_corpus

ROOT = Path(__file__).resolve().parents[3]
# Runs one ingest; prints "locked" at its first progress event (the lock is held by then) and, when asked
# to, sleeps there so the test can contend for the lock; prints its result as JSON at the end.
CHILD = r"""
import json, sys, time
from pathlib import Path
from plm.config import CorpusSpec
from plm.corpus.ingest import ingest_corpus
corpus, home, hold = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
first = True
def progress(what, done, total):
    global first
    if first:
        first = False
        print("locked", flush=True)
        time.sleep(hold)
r = ingest_corpus(CorpusSpec(paths=[corpus], text_unit="line", batch_records=100), home, progress=progress)
print(json.dumps({"processed": r.processed, "counts": r.counts, "snapshot_id": r.snapshot_id}), flush=True)
"""


@pytest.fixture()
def corpus(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for f in range(3):
        lines = [f"Line {(f * 90 + i) % 400} of the concurrency corpus, long enough to keep." for i in range(250)]
        (d / f"part{f}.txt").write_text("\n".join(lines) + "\n")
    return d


def start(corpus: Path, home: Path, hold: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(corpus), str(home), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_ingests_at_once_both_finish_and_agree(tmp_path, corpus):
    home = tmp_path / "home"
    children = [start(corpus, home, 0.5), start(corpus, home, 0.5)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == "locked"
        results.append(json.loads(lines[-1]))
    # whichever got the lock first did all the work; the other waited, then found every source done
    processed = sorted(len(r["processed"]) for r in results)
    assert processed == [0, 3]
    assert results[0]["counts"] == results[1]["counts"] and results[0]["snapshot_id"] == results[1]["snapshot_id"]
    clean = ingest_corpus(CorpusSpec(paths=[str(corpus)], text_unit="line"), tmp_path / "clean")
    assert results[0]["counts"] == clean.counts
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT doc_id) FROM documents").fetchone() == (400, 400)
    assert con.execute("SELECT count(*) FROM sources").fetchone()[0] == 3
    con.close()


def test_lock_timeout_names_the_holder(tmp_path, corpus):
    home = tmp_path / "home"
    holder = start(corpus, home, 60)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"locked by pid {holder.pid} on {socket.gethostname()} since 20") as exc:
            ingest_corpus(CorpusSpec(paths=[str(corpus)], text_unit="line", lock_timeout_s=0.3), home)
        assert "corpus.lock_timeout_s" in str(exc.value)
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock died with it: the next ingest gets it at once and completes the corpus
    result = ingest_corpus(CorpusSpec(paths=[str(corpus)], text_unit="line", lock_timeout_s=5), home)
    assert result.counts["documents"] == 400 and len(result.processed) == 3
