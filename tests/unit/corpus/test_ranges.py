"""A large file mapped in byte ranges (`corpus.range_bytes`, `plm.corpus.ranges`) gives what reading it whole gives.

Readers: the records of each range, positions moved by the records before it, are exactly the whole file's records,
on seeded files with everything a cut could break (BOM, CRLF, blank and whitespace lines, undecodable lines, lines
and paragraphs over `max_record_bytes`, invalid JSON, no final newline). Ingest: the same documents in the same order
(every column), the same catalog rows (sources but their lake file names, quarantine with positions, doc hashes,
near-dup index and clusters) and counts, with exact and near copies across ranges; only the lake parts are cut per
range. Files that cannot be cut are mapped whole.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import ingest_corpus, map_jobs, resolve_sources
from plm.corpus.ranges import plan_ranges
from plm.corpus.readers import read_records

WORDS = [f"w{i}" for i in range(300)] + ["한국어", "문장", "café", "naïve"]  # UTF-8 outweighs the bad lines


def _text_file(path: Path, rng: random.Random, lines: int = 700) -> None:
    out = [b"\xef\xbb\xbf"] if rng.random() < 0.3 else []
    for _ in range(lines):
        r = rng.random()
        if r < 0.05:
            out.append(b"caf\xe9 latin-1 bytes \xff\n")  # undecodable as UTF-8
        elif r < 0.15:
            out.append(b"\n")
        elif r < 0.2:
            out.append(b"  \t \r\x0b\n")  # blank too
        elif r < 0.21:
            out.append(b"x" * 1500 + b"\n")  # over max_record_bytes
        elif r < 0.22:
            out.append(b"z" * 1500 + b"\r\n")
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))).encode()
            out.append(line + (b"\r\n" if rng.random() < 0.1 else b"\n"))
    data = b"".join(out)
    path.write_bytes(data.rstrip(b"\n") if rng.random() < 0.5 else data)


def _jsonl_file(path: Path, rng: random.Random, lines: int = 500) -> None:
    out = []
    for i in range(lines):
        r = rng.random()
        if r < 0.05:
            out.append(b"{bad json")
        elif r < 0.1:
            out.append(b"")
        elif r < 0.12:
            out.append(b'{"text": "caf\xe9"}')
        elif r < 0.14:
            out.append(json.dumps({"text": "y" * 1500}).encode())
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
            out.append(json.dumps({"text": text, "title": str(i)}, ensure_ascii=False).encode())
    path.write_bytes(b"\n".join(out) + b"\n")


def _cfg(path: Path, **kw) -> CorpusSpec:
    return CorpusSpec(paths=[str(path)], allowed_roots=[str(path.parent)], range_bytes=4096, max_record_bytes=1024, **kw)


def _ranged_records(path: Path, fmt: str, cfg: CorpusSpec) -> list:
    ranges = plan_ranges(path, fmt, cfg, path.stat().st_size)
    assert ranges is not None and len(ranges) > 3
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a < b == c for (a, b), (c, _) in zip(ranges, ranges[1:]))  # contiguous, non-empty
    out: list = []
    for r in ranges:
        records = list(read_records(path, fmt, cfg, r))
        out += [rec._replace(position=rec.position + len(out)) for rec in records]
    return out


@pytest.mark.parametrize("unit", ["line", "paragraph"])
def test_a_text_file_read_range_by_range_gives_the_records_read_whole(tmp_path, unit):
    for seed in range(12):
        path = tmp_path / f"f{seed}.txt"
        _text_file(path, random.Random(seed))
        cfg = _cfg(path, text_unit=unit)
        whole = list(read_records(path, "txt", cfg))
        assert {r.reason for r in whole} >= {None, "too_large"}
        assert any((r.reason or "").startswith("undecodable:utf-8") for r in whole)
        assert _ranged_records(path, "txt", cfg) == whole, seed


def test_a_jsonl_file_read_range_by_range_gives_the_records_read_whole(tmp_path):
    for seed in range(8):
        path = tmp_path / f"f{seed}.jsonl"
        _jsonl_file(path, random.Random(100 + seed))
        cfg = _cfg(path)
        whole = list(read_records(path, "jsonl", cfg))
        assert {r.reason for r in whole} >= {None, "invalid_json", "undecodable:utf-8", "too_large"}
        assert _ranged_records(path, "jsonl", cfg) == whole, seed


def test_paragraph_cuts_fall_after_a_blank_line_only(tmp_path):
    path = tmp_path / "p.txt"
    block = b"".join(b"line %d of a paragraph\n" % i for i in range(400))  # ~10 KB without a blank line
    path.write_bytes(block + b"\n" + block + b" \t\n" + block)
    cuts = [a for a, _ in plan_ranges(path, "txt", _cfg(path, text_unit="paragraph"), path.stat().st_size)][1:]
    assert cuts == [len(block) + 1, 2 * len(block) + 4]  # the two blank lines, wherever range_bytes fell
    lines = plan_ranges(path, "txt", _cfg(path, text_unit="line"), path.stat().st_size)
    assert lines[1][0] == path.read_bytes().index(b"\n", 4095) + 1  # lines: after the first newline from there


def test_files_that_cannot_be_cut_are_mapped_whole(tmp_path):
    text = b"".join(b"a line of text number %d\n" % i for i in range(2000))
    (tmp_path / "plain.txt").write_bytes(text)
    (tmp_path / "packed.txt.gz").write_bytes(gzip.compress(text))
    (tmp_path / "wide.txt").write_bytes(text.decode().encode("utf-16"))
    (tmp_path / "table.csv").write_bytes(b"text\n" + text)
    plain, packed, wide, table = (resolve_sources([str(tmp_path / n)], [str(tmp_path)])[0]
                                  for n in ("plain.txt", "packed.txt.gz", "wide.txt", "table.csv"))  # fmt: skip
    cfg = _cfg(tmp_path / "plain.txt", text_unit="line")
    assert len(map_jobs(plain, cfg)) > 5
    assert [len(map_jobs(s, cfg)) for s in (packed, wide, table)] == [1, 1, 1]
    assert len(map_jobs(plain, cfg.model_copy(update={"text_unit": "file"}))) == 1
    assert len(map_jobs(plain, cfg.model_copy(update={"range_bytes": len(text)}))) == 1
    with pytest.raises(ValueError, match="byte range of a compressed file"):
        list(read_records(packed.path, "txt", cfg, (0, 100)))


# ---------------------------------------------------------------- ingest


def _corpus(d: Path) -> Path:
    """Two sources of short lines: exact and near copies (one word changed) of lines far back in the same file (so in
    earlier ranges) and in the other file, too-short lines, undecodable ones, blank runs."""
    rng = random.Random(7)
    d.mkdir()
    kept: list[bytes] = []
    for f in range(2):
        lines = []
        for i in range(600):
            r = rng.random()
            if kept and r < 0.12:
                lines.append(rng.choice(kept))
            elif kept and r < 0.24:
                words = rng.choice(kept).split()
                words[rng.randrange(len(words))] = b"changed"
                lines.append(b" ".join(words))
            elif r < 0.28:
                lines.append(b"tiny")
            elif r < 0.31:
                lines.append(b"caf\xe9 latin-1 bytes are not utf-8 \xff here at all, really not")
            elif r < 0.34:
                lines.append(b"")
            else:
                line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 24))).encode()
                lines.append(line)
                kept.append(line)
        (d / f"src{f}.txt").write_bytes(b"\n".join(lines) + b"\n")
    return d


def _state(home: Path) -> dict:
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        q = lambda s: con.execute(s).fetchall()  # noqa: E731
        state = {
            "sources": q("SELECT * EXCLUDE (ingested_at, lake_files) FROM sources ORDER BY path"),
            "quarantine": q("SELECT * FROM quarantine ORDER BY ALL"),
            "doc_hashes": q("SELECT * FROM doc_hashes ORDER BY ALL"),
            "snapshots": q("SELECT snapshot_id, counts FROM snapshots"),
        }
        if q("SELECT count(*) FROM information_schema.tables WHERE table_name = 'near_dup_docs'")[0][0]:
            state["near_dup_docs"] = q("SELECT * FROM near_dup_docs ORDER BY seq")
            state["near_duplicates"] = q("SELECT * FROM near_duplicates ORDER BY ALL")
    finally:
        con.close()
    return state


def _documents(files: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in files])


@pytest.mark.parametrize("near_dup", [False, True])
def test_ingest_in_byte_ranges_gives_the_documents_and_catalog_of_reading_whole(tmp_path, near_dup):
    corpus = _corpus(tmp_path / "corpus")
    cfg = CorpusSpec(paths=[str(corpus)], allowed_roots=[str(tmp_path)], text_unit="line", near_dup=near_dup,
                     batch_records=50, validation_fraction=0.1)  # fmt: skip
    ranged = cfg.model_copy(update={"range_bytes": 4096})
    assert all(len(map_jobs(s, ranged)) > 3 for s in resolve_sources(cfg.paths, cfg.allowed_roots))
    assert [len(map_jobs(s, cfg)) for s in resolve_sources(cfg.paths, cfg.allowed_roots)] == [1, 1]
    whole = ingest_corpus(cfg, tmp_path / "whole")
    cut = ingest_corpus(ranged, tmp_path / "ranged")
    assert cut.snapshot_id == whole.snapshot_id and cut.counts == whole.counts and cut.reasons == whole.reasons
    assert {"duplicate", "too_short", "undecodable:utf-8"} <= set(whole.reasons)
    if near_dup:
        assert whole.reasons["near_duplicate"] > 10
    assert _documents(cut.files).equals(_documents(whole.files))  # every column, in order
    assert _state(tmp_path / "ranged") == _state(tmp_path / "whole")
    assert len(cut.files) != len(whole.files)  # only the lake parts differ: cut per range as well as per batch
    assert not any((tmp_path / "ranged" / "lake" / "documents" / ".staging").iterdir())


def test_a_blank_file_in_ranges_has_one_empty_file_row_as_read_whole(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "blank.txt").write_bytes(b" \n\n\t\n" * 5000)
    (d / "good.txt").write_text("A document long enough to be kept by the default length filter, surely.\n")
    cfg = CorpusSpec(paths=[str(d)], allowed_roots=[str(tmp_path)], text_unit="line")
    blank = resolve_sources([str(d / "blank.txt")], [str(tmp_path)])[0]
    assert len(map_jobs(blank, cfg.model_copy(update={"range_bytes": 4096}))) > 3
    whole = ingest_corpus(cfg, tmp_path / "whole")
    cut = ingest_corpus(cfg.model_copy(update={"range_bytes": 4096}), tmp_path / "ranged")
    assert whole.reasons == cut.reasons == {"empty_file": 1}
    assert _state(tmp_path / "ranged") == _state(tmp_path / "whole")


def test_a_range_whose_count_was_off_is_renumbered_at_commit(tmp_path):
    """A whitespace-only line longer than max_record_bytes is a paragraph of its own (too_large) to the reader but
    blank to `count_records`: the ranges after it are numbered one short by their map jobs, and the commit fixes it."""
    from plm.corpus.ranges import count_records

    d = tmp_path / "corpus"
    d.mkdir()
    rng = random.Random(3)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))).encode() for _ in range(300)]
    paragraphs[5] = b" " * 2000
    (d / "p.txt").write_bytes(b"\n\n".join(paragraphs) + b"\n")
    cfg = CorpusSpec(paths=[str(d)], allowed_roots=[str(tmp_path)], text_unit="paragraph", max_record_bytes=1024)
    ranged = cfg.model_copy(update={"range_bytes": 4096})
    source = resolve_sources(cfg.paths, cfg.allowed_roots)[0]
    first = map_jobs(source, ranged)[0]
    assert count_records(first.path, "txt", ranged, first.byte_range) + 1 == len(
        list(read_records(first.path, "txt", ranged, first.byte_range)))
    whole = ingest_corpus(cfg, tmp_path / "whole")
    cut = ingest_corpus(ranged, tmp_path / "ranged")
    assert whole.reasons.get("too_large") == 1 and cut.counts == whole.counts
    assert _documents(cut.files).equals(_documents(whole.files))
    assert _state(tmp_path / "ranged") == _state(tmp_path / "whole")
