import json
import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from plm.config import CorpusSpec
from plm.corpus.ingest import (
    STAGING,
    catalog_lock,
    connect_catalog,
    ingest_corpus,
    lake_prefix,
    options_fingerprint,
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
    result = ingest_corpus(spec(mixed, encoding="utf-8"), home, progress=lambda what, done, total: seen.append((what, done, total)))
    c = result.counts
    assert c["rows_read"] == 1 + 1 + 1 + 4 + 2
    assert c["rows_read"] == c["rows_kept"] + c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"]
    assert (c["rows_kept"], c["rows_filtered"], c["rows_quarantined"], c["rows_duplicate"]) == (5, 1, 3, 0)
    assert c["documents"] == 5 and c["sentences"] >= 5 and c["chars"] > 100
    assert result.reasons == {"invalid_json": 1, "missing_field": 1, "too_short": 1, "undecodable:utf-8": 1}
    assert seen[-1] == ("ingest wiki.xml", 5, 5)
    assert {s["format"] for s in result.sources} == {"txt", "jsonl", "mediawiki"}
    for row in result.sources:
        assert row["rows_read"] == row["rows_kept"] + row["rows_duplicate"] + row["rows_filtered"] + row["rows_quarantined"]
    # only sources that kept something have a lake file, with the documented schema
    assert len(result.files) == 3 and all(f.is_file() for f in result.files)
    table = pq.read_table(result.files[0])
    assert table.schema.names == [
        "doc_id", "source_sha256", "position", "title", "text", "lang", "split", "n_chars", "sentences", "source_id", "metadata",
    ]
    con = connect_catalog(home, read_only=True)
    raw = con.execute("SELECT raw FROM quarantine WHERE reason = 'undecodable:utf-8'").fetchall()
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


def test_dedup_runs_within_the_snapshot_not_against_earlier_corpora(tmp_path):
    shared = "A sentence both corpora contain, long enough to be kept."
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    (a / "x.txt").write_text(shared)
    (a / "y.txt").write_text("Only the first corpus has this document in it.")
    (b / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in
                                          (shared, "Only the second corpus has this one, a different text.")))
    (c / "docs.jsonl").write_text(json.dumps({"text": shared}) + "\n")  # every text already seen in a/

    def texts(result):
        return sorted(pq.read_table(result.files, columns=["text"]).column("text").to_pylist())

    fresh_b = ingest_corpus(spec(b), tmp_path / "fresh_b")
    fresh_c = ingest_corpus(spec(c), tmp_path / "fresh_c")
    home = tmp_path / "home"
    ingest_corpus(spec(a), home)
    used_b = ingest_corpus(spec(b), home)
    used_c = ingest_corpus(spec(c), home)  # failed with "kept no document": its one text was in a/
    assert used_b.snapshot_id == fresh_b.snapshot_id and used_b.counts == fresh_b.counts
    assert texts(used_b) == texts(fresh_b) and len(texts(used_b)) == 2
    assert used_c.counts == fresh_c.counts and texts(used_c) == [shared]
    assert [f.read_bytes() for f in used_b.files] == [f.read_bytes() for f in fresh_b.files]
    con = connect_catalog(home, read_only=True)
    assert sorted(r[0] for r in con.execute("SELECT text FROM documents").fetchall()) == [shared]
    con.close()
    # within one snapshot, a text in two sources is kept once: the copy of the source whose hash sorts first
    both = ingest_corpus(spec(a, b), tmp_path / "both")
    assert both.counts["rows_duplicate"] == 1 and both.reasons == {"duplicate": 1}
    assert len(texts(both)) == 3 and both.counts["documents"] == 3
    again = ingest_corpus(spec(a, b), home)  # same snapshot in a used home: same documents, same files
    assert again.counts == both.counts and [f.name for f in again.files] == [f.name for f in both.files]
    assert [f.read_bytes() for f in again.files] == [f.read_bytes() for f in both.files]
    by_path = {Path(r["path"]).name: r for r in both.sources}
    assert sum(r["rows_duplicate"] for r in by_path.values()) == 1
    assert all(r["rows_read"] == r["rows_kept"] + r["rows_duplicate"] + r["rows_filtered"] + r["rows_quarantined"]
               for r in by_path.values())


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


def test_a_small_corpus_gets_a_validation_document_per_language(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    en = [f"English document number {i} of a very small corpus." for i in range(12)]
    ko = [f"한국어 문서 {i}번은 아주 작은 말뭉치의 일부이다." for i in range(11)]
    (d / "en.txt").write_text("\n".join(en))
    (d / "ko.txt").write_text("\n".join(ko))
    cfg = spec(d, text_unit="line", validation_fraction=0.02)
    result = ingest_corpus(cfg, tmp_path / "home")
    rows = pq.read_table(result.files, columns=["doc_id", "lang", "split"]).to_pylist()
    by_hash = {r["doc_id"]: split_of(r["doc_id"], 0.02, 0.0) for r in rows}
    assert all(v == "train" for v in by_hash.values())  # the hash split alone: no validation document at all
    moved = sorted((r["lang"], r["doc_id"]) for r in rows if r["split"] == "validation")
    assert [lang for lang, _ in moved] == ["en", "ko"]
    assert all(doc == min(r["doc_id"] for r in rows if r["lang"] == lang) for lang, doc in moved)
    assert result.counts["documents"] == 23 and result.reasons == {}
    again = ingest_corpus(cfg, tmp_path / "home")  # reused: the same files, untouched
    assert [f.stat().st_mtime_ns for f in again.files] == [f.stat().st_mtime_ns for f in result.files]
    # fewer documents than corpus.min_validation_docs: the hash split is left alone
    (d / "ko.txt").write_text("\n".join(ko[:9]))
    small = ingest_corpus(cfg, tmp_path / "home")
    langs = {r["lang"] for r in pq.read_table(small.files, columns=["lang", "split"]).to_pylist() if r["split"] == "validation"}
    assert langs == {"en"}
    none = ingest_corpus(spec(d, text_unit="line", validation_fraction=0.02, min_validation_docs=0), tmp_path / "h0")
    assert {r["split"] for r in pq.read_table(none.files, columns=["split"]).to_pylist()} == {"train"}


def test_views_count_the_latest_snapshot(tmp_path, mixed):
    home = tmp_path / "home"
    result = ingest_corpus(spec(mixed, encoding="utf-8"), home)
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == result.counts["documents"]
    assert con.execute("SELECT count(*) FROM sentences").fetchone()[0] == result.counts["sentences"]
    assert con.execute("SELECT min(sent_idx) FROM sentences").fetchone()[0] == 0
    con.close()
    # other options re-process into new lake files; the views follow the newest snapshot, not both
    other = ingest_corpus(spec(mixed, encoding="utf-8", min_chars=5), home)
    assert other.snapshot_id != result.snapshot_id and set(other.files).isdisjoint(result.files)
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == other.counts["documents"] == 5
    con.close()


def test_the_catalog_views_work_from_any_directory_and_follow_a_moved_home(tmp_path, mixed, monkeypatch):
    import duckdb

    home = tmp_path / "home"
    result = ingest_corpus(spec(mixed, encoding="utf-8"), home)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the lake path in the view was relative to the current directory
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == result.counts["documents"]
    assert con.execute("SELECT count(*) FROM sentences").fetchone()[0] == result.counts["sentences"]
    con.close()
    # a moved home read through plm reads its own lake (read-only too), not the old path's
    moved = tmp_path / "moved"
    shutil.move(home, moved)
    con = connect_catalog(moved, read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == result.counts["documents"]
    con.close()
    # a plain reader of a quoted, unusual home path
    odd = tmp_path / "it's here"
    shutil.copytree(moved, odd)
    ingest_corpus(spec(mixed, encoding="utf-8"), odd)
    con = duckdb.connect(str(odd / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == result.counts["documents"]
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
        ingest_corpus(spec(d, encoding="utf-8", max_quarantined_fraction=0.25), tmp_path / "h2")


def test_resolve_sources(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_text("same content")
    (d / "sub" / "a.txt").write_text("same content")  # same bytes: a copy of the first path
    (d / "sub" / "c.jsonl").write_text('{"text": "x"}\n')
    sources = resolve_sources([str(d), str(d / "sub" / "*.jsonl")])
    assert [s.path.name for s in sources] == ["b.txt", "a.txt", "c.jsonl"]
    assert [s.format for s in sources] == ["txt", "txt", "jsonl"]
    assert [s.duplicate_of for s in sources] == [None, (d / "b.txt").resolve(), None]
    assert sources[0].bytes == 12 and len(sources[0].sha256) == 64
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_sources([str(d), str(tmp_path / "nowhere" / "*.txt")])


def test_a_byte_identical_copy_is_counted_not_lost(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(9):
        (d / f"f{i}.txt").write_text("\n".join(f"File {i} line {j} is a document of this corpus." for j in range(4 + i)))
    shutil.copy(d / "f3.txt", d / "g3.txt")  # 7 rows, byte for byte the same as f3.txt
    lines = 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12
    result = ingest_corpus(spec(d, text_unit="line"), tmp_path / "home")
    c = result.counts
    assert c["rows_read"] == lines + 7  # was `lines`: the copy vanished
    assert (c["rows_kept"], c["rows_duplicate"]) == (lines, 7)
    assert c["rows_read"] == c["rows_kept"] + c["rows_duplicate"] + c["rows_filtered"] + c["rows_quarantined"]
    assert result.reasons == {"duplicate_file": 7}
    assert len(result.sources) == 10
    copy = next(r for r in result.sources if r["path"].endswith("g3.txt"))
    assert (copy["status"], copy["duplicate_of"], copy["rows_read"], copy["lake_files"]) == (
        "duplicate_file", str((d / "f3.txt").resolve()), 7, [])
    alone = ingest_corpus(spec(d / "f3.txt", text_unit="line"), tmp_path / "other")
    assert alone.snapshot_id != ingest_corpus(spec(d / "f3.txt", d / "g3.txt", text_unit="line"),
                                              tmp_path / "other").snapshot_id  # the copy is part of the corpus


def test_walking_a_directory_skips_plm_homes_vcs_venvs_and_hidden_dirs(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    files = {
        "notes.txt": GOOD, "data/doc.txt": "A document of the corpus in a plain subdirectory of the repository.",
        ".git/objects/ab": "git object", ".venv/lib/site.txt": "venv file", "env/pyvenv.cfg": "home = /usr",
        "env/lib/x.txt": "virtual env file", "node_modules/pkg/readme.txt": "npm", "__pycache__/m.txt": "cache",
        ".plm/mlflow.db": "sqlite", ".hidden/secret.txt": "hidden", "other_home/catalog.lock": "",
        "other_home/artifacts/ingest/x/reasons.csv": "reason,kind,rows",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PLM_HOME", str(repo / "home"))
    kept = ["data/doc.txt", "notes.txt"]
    rel = lambda sources: sorted(str(s.path.relative_to(repo.resolve())) for s in sources)  # noqa: E731
    assert rel(resolve_sources(["."])) == kept
    assert rel(resolve_sources(["**/*.txt"])) == kept
    # the home itself, once it exists, is never walked into (it is not hidden here)
    first = ingest_corpus(spec("."), repo / "home")
    (repo / "home" / "stray.txt").write_text("A text file inside the home must not become a document.")
    again = ingest_corpus(spec("."), repo / "home")
    assert first.counts == again.counts and first.counts["rows_read"] == 2
    assert rel(resolve_sources([str(repo)])) == kept
    # a file named explicitly is taken as it is
    assert rel(resolve_sources([".venv/lib/site.txt"])) == [".venv/lib/site.txt"]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        resolve_sources([str(repo / "home")])


def test_allowed_roots_are_checked_before_hashing_and_on_reuse(tmp_path):
    outside = tmp_path / "outside"
    allowed = tmp_path / "allowed"
    outside.mkdir()
    allowed.mkdir()
    (outside / "secret.txt").write_text("A secret document that lies outside the allowed directory.")
    (allowed / "ok.txt").write_text(GOOD)
    home = tmp_path / "home"
    ingest_corpus(spec(outside / "secret.txt", allowed_roots=[str(outside)]), home)  # allowed there, once
    (allowed / "link.txt").symlink_to(outside / "secret.txt")
    cfg = spec(allowed, allowed_roots=[str(allowed)])
    with pytest.raises(PermissionError, match="corpus.paths: .*link.txt: resolves to .*secret.txt"):
        resolve_sources(cfg.paths, cfg.allowed_roots)
    with pytest.raises(PermissionError, match="outside corpus.allowed_roots"):
        ingest_corpus(cfg, home)  # was accepted as `reused`: the content was in the catalog already
    # sources resolved elsewhere are re-checked too
    sources = resolve_sources([str(outside)], [str(outside)])
    with pytest.raises(PermissionError, match="secret.txt"):
        ingest_corpus(cfg, home, sources=sources)


def test_named_samples_are_allowed_whatever_the_roots(tmp_path):
    pytest.importorskip("gensim")
    result = ingest_corpus(spec("sample:lee", allowed_roots=[str(tmp_path / "data")], text_unit="line"), tmp_path / "h")
    assert result.counts["documents"] > 100


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


def test_filters_symbols_repeated_lines_and_language(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    docs = [
        GOOD,
        "#### ---- **** //// ==== ++++ |||| ~~~~ <<<< >>>> ab",  # mostly symbols
        "same line again\nsame line again\nsame line again\nsame line again",  # 3 of 4 lines repeat
        "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    ]
    (d / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    result = ingest_corpus(spec(d), tmp_path / "h1")
    assert result.reasons == {"repeated_lines": 1, "too_many_symbols": 1}
    assert (result.counts["rows_kept"], result.counts["rows_filtered"]) == (2, 2)
    only_ko = ingest_corpus(spec(d, languages=["ko"]), tmp_path / "h2")
    assert only_ko.reasons == {"repeated_lines": 1, "too_many_symbols": 1, "wrong_language": 1}
    assert only_ko.counts["rows_kept"] == 1
    relaxed = ingest_corpus(spec(d, max_symbol_ratio=1.0, max_repeated_line_fraction=1.0, min_words=0,
                                 max_symbol_word_ratio=10.0), tmp_path / "h3")  # the Gopher rules would drop it too
    assert relaxed.counts["rows_kept"] == 4 and relaxed.reasons == {}


def test_a_file_of_one_repeated_byte_is_not_kept(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a5.txt").write_bytes(b"\xa5" * 20_000)  # was kept: a 10,000-character "English" document of U+2174
    (d / "good.txt").write_text(GOOD)
    result = ingest_corpus(spec(d), tmp_path / "h1")
    assert result.counts["documents"] == 1 and result.counts["rows_quarantined"] == 1
    assert result.reasons == {"undecodable:utf-8": 1}
    # decoded with a forced legacy codec, the filters drop it (CP949: one 10,000-letter "word")
    for codec, reason in (("cp949", "too_few_words"), ("latin-1", "too_many_symbols")):
        forced = ingest_corpus(spec(d, encoding=codec), tmp_path / f"h-{codec}")
        assert forced.reasons == {reason: 1} and forced.counts["documents"] == 1


def test_gopher_rules_are_spec_fields(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    docs = [GOOD, " ".join(f"w{i % 12}" for i in range(120)), "first paragraph here.\n\nsame paragraph again.\n\n"
            "same paragraph again.\n\nsame paragraph again."]
    (d / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    result = ingest_corpus(spec(d), tmp_path / "h1")
    assert result.reasons == {"repeated_paragraphs": 1, "top_ngram": 1}  # 2-grams are checked first
    assert result.counts["rows_filtered"] == 2
    off = ingest_corpus(spec(d, max_top_ngram_fraction={}, max_duplicate_ngram_fraction={},
                             max_repeated_paragraph_fraction=1.0), tmp_path / "h2")
    assert off.reasons == {} and off.counts["documents"] == 3
    with pytest.raises(ValueError, match="max_duplicate_ngram_fraction"):
        spec(d, max_duplicate_ngram_fraction={11: 0.1})


def test_streaming_in_batches_writes_parts_and_dedups_across_them(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    lines = [f"Line number {i % 150} is a separate document of the corpus." for i in range(400)]
    (d / "many.txt").write_text("\n".join(lines))
    whole = ingest_corpus(spec(d, text_unit="line"), tmp_path / "h1")
    parts = ingest_corpus(spec(d, text_unit="line", batch_records=64), tmp_path / "h2")
    assert len(whole.files) == 1 and len(parts.files) == 3  # 150 distinct lines all within the first 3 batches
    prefix = lake_prefix(resolve_sources([str(d)])[0], options_fingerprint(spec(d, text_unit="line")))
    assert [f.name for f in parts.files] == [f"{prefix}-{i:05d}.parquet" for i in range(3)]
    assert whole.counts == parts.counts and whole.counts["rows_duplicate"] == 250
    ids = lambda r: sorted(pq.read_table(r.files, columns=["doc_id"]).column("doc_id").to_pylist())  # noqa: E731
    assert ids(whole) == ids(parts) and len(set(ids(parts))) == 150
    assert not any((tmp_path / "h2" / "lake" / "documents" / STAGING).iterdir())
    con = connect_catalog(tmp_path / "h2", read_only=True)
    assert con.execute("SELECT len(lake_files), status FROM sources").fetchall() == [(3, "ok")]
    assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == 150
    con.close()


def test_incremental_only_new_files_are_processed(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text(GOOD)
    home = tmp_path / "home"
    first = ingest_corpus(spec(d), home)
    assert first.processed == [str((d / "a.txt").resolve())]
    (d / "b.txt").write_text("A second document, added after the first ingest ran.")
    second = ingest_corpus(spec(d), home)
    assert second.processed == [str((d / "b.txt").resolve())] and second.snapshot_id != first.snapshot_id
    assert second.counts["documents"] == 2
    again = ingest_corpus(spec(d), home)
    assert again.processed == [] and again.snapshot_id == second.snapshot_id and again.counts == second.counts
    con = connect_catalog(home, read_only=True)
    assert con.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 2
    assert sorted(r[0] for r in con.execute("SELECT DISTINCT snapshot_id FROM sources").fetchall()) == sorted(
        {first.snapshot_id, second.snapshot_id})
    con.close()


def test_leftovers_of_an_uncommitted_source_are_cleaned_and_redone(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text(GOOD)
    home = tmp_path / "home"
    clean = ingest_corpus(spec(d), tmp_path / "clean")
    # what a run killed between renaming its parts and committing leaves behind
    lake = home / "lake" / "documents"
    prefix = clean.files[0].name.rsplit("-", 1)[0]
    (lake / STAGING / prefix).mkdir(parents=True)
    (lake / STAGING / prefix / "part-00000.parquet").write_bytes(b"half written")
    (lake / f"{prefix}-00007.parquet").write_bytes(b"renamed, never committed")
    result = ingest_corpus(spec(d), home)
    assert [f.name for f in result.files] == [f.name for f in clean.files]
    assert sorted(p.name for p in lake.iterdir()) == [STAGING, clean.files[0].name]
    assert not any((lake / STAGING).iterdir())
    assert result.counts == clean.counts


def test_near_duplicates_are_dropped_counted_and_clustered(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    words = [f"word{i}" for i in range(200)]
    base = " ".join(words)
    near = " ".join(words[:100] + ["changed"] + words[101:])  # one word of 200 differs: Jaccard ~0.95
    other = " ".join(reversed(words))
    (d / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in (base, other, near)))
    home = tmp_path / "home"
    cfg = spec(d, near_dup=True)
    first = ingest_corpus(cfg, home)
    assert first.reasons == {"near_duplicate": 1}
    assert (first.counts["rows_kept"], first.counts["rows_duplicate"]) == (2, 1)
    # an earlier ingest counts too: a near copy in a new file is dropped against the lake
    (d / "b.jsonl").write_text(json.dumps({"text": " ".join(words[:-1] + ["last"])}) + "\n")
    second = ingest_corpus(cfg, home)
    assert second.processed == [str((d / "b.jsonl").resolve())]
    assert second.reasons == {"near_duplicate": 2} and second.counts["documents"] == 2
    con = connect_catalog(home, read_only=True)
    kept = {r[0] for r in con.execute("SELECT doc_id FROM documents").fetchall()}
    clusters = con.execute("SELECT doc_id, representative_doc_id, similarity FROM near_duplicates").fetchall()
    assert len(clusters) == 2 and all(rep in kept and doc not in kept and sim >= 0.8 for doc, rep, sim in clusters)
    con.close()
    # without near-dup the same corpus keeps all four
    assert ingest_corpus(spec(d), tmp_path / "plain").counts["documents"] == 4


def test_cli_ingest_paths_and_spec(tmp_path, mixed):
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from plm.cli import app

    home = tmp_path / "home"
    args = ["ingest", str(mixed / "good.txt"), str(mixed / "*.jsonl"), "--set", f"home={home}", "--set",
            "corpus.encoding=utf-8", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["stage"] == "ingest" and payload["counts"]["rows_read"] == 1 + 4
    assert payload["reasons"] == {"invalid_json": 1, "missing_field": 1}
    assert payload["reason_table"]["kind"] == ["quarantined", "quarantined"]
    assert "quarantined: invalid_json" in res.stdout
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(payload["run_id"])}
    assert {"reasons.csv", "sources.json", "ingest_reasons.json", "plots"} <= logged
    assert {a.path for a in client.list_artifacts(payload["run_id"], "plots")} == {
        "plots/doc_lengths.png", "plots/languages.png"}
    assert client.get_run(payload["run_id"]).data.metrics["reason.invalid_json"] == 1

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"home: {home}\ncorpus:\n  paths: ['{mixed / 'good.txt'}']\n")  # one MLflow store: faster
    res = CliRunner().invoke(app, ["ingest", str(spec_file), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["counts"]["documents"] == 1

    # nothing kept: a non-zero exit with the reason (the entry point prints it as one line)
    res = CliRunner().invoke(app, ["ingest", str(mixed / "short.txt"), "--set", f"home={home}"])
    assert res.exit_code != 0 and "kept no document" in str(res.exception)


def test_near_duplicate_reasons_do_not_depend_on_the_batch_boundaries(tmp_path):
    # base, its near copy, then an exact copy of the near copy: the copy is a `duplicate` of a document this source
    # already saw, whether it falls in the near copy's batch or a later one (INGEST_VERSION 4 said `near_duplicate`
    # when the batch ended between them: the counts depended on corpus.batch_records, which no fingerprint holds)
    d = tmp_path / "in"
    d.mkdir()
    words = [f"word{i}" for i in range(200)]
    base, near = " ".join(words), " ".join(words[:100] + ["changed"] + words[101:])
    (d / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in (base, near, near)))
    whole = ingest_corpus(spec(d, near_dup=True), tmp_path / "h1")
    split = ingest_corpus(spec(d, near_dup=True, batch_records=2), tmp_path / "h2")
    assert whole.reasons == split.reasons == {"near_duplicate": 1, "duplicate": 1}
    assert whole.counts == split.counts and whole.counts["rows_kept"] == 1
    ids = lambda r: pq.read_table(r.files, columns=["doc_id"]).column("doc_id").to_pylist()  # noqa: E731
    assert ids(whole) == ids(split)
    for home in (tmp_path / "h1", tmp_path / "h2"):
        con = connect_catalog(home, read_only=True)
        assert con.execute("SELECT count(*) FROM near_duplicates").fetchone()[0] == 1  # one cluster member, once
        con.close()


def test_a_finished_map_output_is_reused_and_a_damaged_one_redone(tmp_path):
    from plm.corpus.ingest import MAP_MANIFEST, map_source

    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text("\n".join(f"Line {i} is one document of the corpus for the map test." for i in range(50)))
    cfg = spec(d, text_unit="line", batch_records=10)
    clean = ingest_corpus(cfg, tmp_path / "clean")
    home = tmp_path / "home"
    lake = home / "lake" / "documents"
    source = resolve_sources(cfg.paths)[0]
    work = {"cfg": cfg, "optsfp": options_fingerprint(cfg), "lake": str(lake)}
    first = map_source(source, work)  # what a run killed after this source's map step (before its commit) leaves
    staged = lake / STAGING / lake_prefix(source, work["optsfp"])
    assert (staged / MAP_MANIFEST).is_file() and len(first["parts"]) == 5 and first["counts"]["rows_read"] == 50
    marker = (staged / MAP_MANIFEST).stat().st_mtime_ns
    assert map_source(source, work) == first and (staged / MAP_MANIFEST).stat().st_mtime_ns == marker  # reused
    (staged / "part-00003.parquet").write_bytes(b"damaged")  # its sha256 no longer matches: the source is redone
    assert map_source(source, work) == first and (staged / MAP_MANIFEST).stat().st_mtime_ns != marker
    map_source(source, work)
    result = ingest_corpus(cfg, home)
    assert result.counts == clean.counts and [f.name for f in result.files] == [f.name for f in clean.files]
    assert [f.read_bytes() for f in result.files] == [f.read_bytes() for f in clean.files]
    assert not any((lake / STAGING).iterdir())
