import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from plm.config import CorpusSpec
from plm.corpus import ingest as ingest_mod
from plm.corpus.ingest import (
    catalog_lock,
    connect_catalog,
    ingest_corpus,
    resolve_sources,
    split_of,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "corpus"
GOOD = "This plain text document is comfortably longer than the minimum length."


def spec(*paths, **kw) -> CorpusSpec:
    return CorpusSpec(paths=[str(p) for p in paths], **kw)


@pytest.fixture()
def mixed(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.txt").write_text(GOOD)
    (d / "short.txt").write_text("tiny")
    (d / "bad.txt").write_bytes(b"Latin-1 caf\xe9 is not UTF-8 \xff")
    shutil.copy(ASSETS / "docs.jsonl", d / "docs.jsonl")
    shutil.copy(ASSETS / "tiny_wiki.xml", d / "wiki.xml")
    return d


def test_accounting_on_a_mixed_corpus(tmp_path, mixed):
    home = tmp_path / "home"
    seen = []
    result = ingest_corpus(spec(mixed), home, progress=lambda what, done, total: seen.append((what, done, total)))
    c = result.counts
    assert c["rows_read"] == 1 + 1 + 1 + 4 + 2
    assert c["rows_read"] == c["rows_kept"] + c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"]
    assert (c["rows_kept"], c["rows_filtered"], c["rows_quarantined"], c["rows_duplicate"]) == (5, 1, 3, 0)
    assert c["documents"] == 5 and c["sentences"] >= 5 and c["chars"] > 100
    assert result.reasons == {"invalid_json": 1, "missing_field": 1, "too_short": 1, "undecodable": 1}
    assert seen[-1] == ("ingest wiki.xml", 5, 5)
    assert {s["format"] for s in result.sources} == {"txt", "jsonl", "mediawiki"}
    for row in result.sources:
        assert row["rows_read"] == row["rows_kept"] + row["rows_duplicate"] + row["rows_filtered"] + row["rows_quarantined"]
    # only sources that kept something have a lake file, with the documented schema
    assert len(result.files) == 3 and all(f.is_file() for f in result.files)
    table = pq.read_table(result.files[0])
    assert table.schema.names == ["doc_id", "source_sha256", "position", "title", "text", "lang", "split", "n_chars", "sentences"]
    con = connect_catalog(home, read_only=True)
    raw = con.execute("SELECT raw FROM quarantine WHERE reason = 'undecodable'").fetchall()
    assert raw == [((mixed / "bad.txt").read_bytes(),)]
    con.close()


def test_dedup_within_and_across_ingests(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    para = "A paragraph that appears twice in the same file."
    (d / "a.txt").write_text(f"{para}\n\n{GOOD}\n\n{para}\n")
    home = tmp_path / "home"
    cfg = spec(d, text_unit="paragraph")
    first = ingest_corpus(cfg, home)
    assert (first.counts["rows_read"], first.counts["rows_kept"], first.counts["rows_duplicate"]) == (3, 2, 1)
    mtimes = [f.stat().st_mtime_ns for f in first.files]

    again = ingest_corpus(cfg, home)  # unchanged sources, same options: a no-op
    assert again.snapshot_id == first.snapshot_id
    assert again.counts == first.counts and again.files == first.files
    assert [f.stat().st_mtime_ns for f in again.files] == mtimes

    (d / "b.txt").write_text(f"{GOOD}\n\nA brand new paragraph in a second file.\n")
    third = ingest_corpus(cfg, home)
    assert third.snapshot_id != first.snapshot_id
    assert third.counts["rows_read"] == 5
    assert third.counts["rows_duplicate"] == 2  # one within a.txt, one of b.txt already in a.txt
    assert third.counts["documents"] == 3
    assert third.reasons == {"duplicate": 2}
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT doc_id) FROM documents").fetchone() == (3, 3)
    con.close()


def test_split_is_deterministic_by_hash():
    ids = [f"{i * 7919:016x}" for i in range(2000)]
    splits = [split_of(i, 0.1, 0.2) for i in ids]
    assert splits == [split_of(i, 0.1, 0.2) for i in ids]
    assert 0.07 < splits.count("validation") / len(ids) < 0.13
    assert 0.17 < splits.count("test") / len(ids) < 0.23
    assert split_of("0000000000000000", 0.02, 0.0) == "validation"
    assert split_of("0000000000000000", 0.0, 0.0) == "train"


def test_split_column_matches_doc_hash(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "many.txt").write_text("\n".join(f"Line number {i} is a separate document." for i in range(300)))
    result = ingest_corpus(spec(d, text_unit="line", validation_fraction=0.2, test_fraction=0.1), tmp_path / "home")
    rows = pq.read_table(result.files[0], columns=["doc_id", "split"]).to_pylist()
    assert all(r["split"] == split_of(r["doc_id"], 0.2, 0.1) for r in rows)
    assert {r["split"] for r in rows} == {"train", "validation", "test"}


def test_views_count_the_latest_snapshot(tmp_path, mixed):
    home = tmp_path / "home"
    result = ingest_corpus(spec(mixed), home)
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == result.counts["documents"]
    assert con.execute("SELECT count(*) FROM sentences").fetchone()[0] == result.counts["sentences"]
    assert con.execute("SELECT min(sent_idx) FROM sentences").fetchone()[0] == 0
    con.close()
    # other options re-process into new lake files; the views follow the newest snapshot, not both
    other = ingest_corpus(spec(mixed, min_chars=5), home)
    assert other.snapshot_id != result.snapshot_id and set(other.files).isdisjoint(result.files)
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == other.counts["documents"] == 5
    con.close()


def test_failures_are_clear(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "short.txt").write_text("tiny")
    with pytest.raises(ValueError, match="kept no document"):
        ingest_corpus(spec(d), tmp_path / "h1")
    (d / "bad1.txt").write_bytes(b"\xff\xfe one")
    (d / "bad2.txt").write_bytes(b"\xff\xfe two")
    (d / "good.txt").write_text(GOOD)
    with pytest.raises(ValueError, match="max_quarantined_fraction"):
        ingest_corpus(spec(d, max_quarantined_fraction=0.25), tmp_path / "h2")


def test_resolve_sources(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_text("same content")
    (d / "sub" / "a.txt").write_text("same content")  # same bytes: kept once, the first path
    (d / "sub" / "c.jsonl").write_text('{"text": "x"}\n')
    sources = resolve_sources([str(d), str(d / "sub" / "*.jsonl")])
    assert [s.path.name for s in sources] == ["b.txt", "c.jsonl"]
    assert [s.format for s in sources] == ["txt", "jsonl"]
    assert sources[0].bytes == 12 and len(sources[0].sha256) == 64
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_sources([str(d), str(tmp_path / "nowhere" / "*.txt")])


def test_a_second_ingest_waits_for_the_lock(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.txt").write_text(GOOD)
    home = tmp_path / "home"
    held = threading.Event()

    def hold():
        with catalog_lock(home):
            held.set()
            time.sleep(1.0)

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    start = time.monotonic()
    result = ingest_corpus(spec(d), home)
    t.join()
    assert time.monotonic() - start >= 0.8
    assert result.counts["documents"] == 1


def test_lock_timeout_names_the_holder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import fcntl, os, sys, time\n"
        "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.truncate(0); f.write(str(os.getpid())); f.flush(); print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(home / "catalog.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(ingest_mod, "LOCK_TIMEOUT_S", 0.3)
        with pytest.raises(RuntimeError, match=f"locked by pid {holder.pid}"):
            ingest_corpus(spec(ASSETS / "paragraphs.txt"), home)
    finally:
        holder.kill()
        holder.wait()
