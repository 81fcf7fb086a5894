import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from plm import sql

DDL = ["staging/ddl_sources", "staging/ddl_quarantine", "staging/ddl_doc_hashes",
       "staging/ddl_snapshots", "staging/ddl_snapshot_files", "staging/ddl_pending_quarantine",
       "staging/ddl_pending_doc_hashes"]


def source_params(sha="s1", options="o1", **kw):
    row = dict(path="/x.txt", sha256=sha, bytes=10, format="txt", encoding="utf-8", status="ok", rows_read=3,
               rows_kept=1, rows_duplicate=0, rows_filtered=1, rows_quarantined=1, sentences=2, chars=40,
               reasons=json.dumps({"too_short": 1, "undecodable": 1}), lake_files=["s1-o1-00000.parquet", "s1-o1-00001.parquet"],
               snapshot_id="snap", options=options)
    row.update(kw)
    return row


def test_ddl_is_idempotent_and_source_rows_round_trip():
    con = duckdb.connect()
    for _ in range(2):
        for name in DDL:
            sql.execute(con, name)
    sql.execute(con, "staging/ins_source", **source_params())
    sql.execute(con, "staging/ins_source", **source_params(sha="s2", path="/y.txt"))
    sql.execute(con, "staging/ins_source", **source_params(sha="s1", options="o2"))
    rows = sql.run(con, "staging/sel_sources", options="o1", sha256s=["s1", "s2", "s9"]).to_pylist()
    assert [(r["sha256"], r["path"]) for r in rows] == [("s1", "/x.txt"), ("s2", "/y.txt")]
    report = sql.run(con, "reports/rpt_sources", options="o1", sha256s=["s1", "s2"]).to_pylist()
    assert report == [{"format": "txt", "sources": 2, "bytes": 20, "rows_read": 6, "rows_kept": 2, "rows_duplicate": 0,
                       "rows_filtered": 2, "rows_quarantined": 2, "sentences": 4, "chars": 80}]
    assert rows[0]["lake_files"] == ["s1-o1-00000.parquet", "s1-o1-00001.parquet"]
    sql.execute(con, "staging/del_source", sha256="s1", options="o1")
    assert con.execute("SELECT count(*) FROM sources").fetchone()[0] == 2


def test_a_catalog_from_before_parts_gains_lake_files():
    con = duckdb.connect()
    con.execute("CREATE TABLE sources (sha256 VARCHAR, options VARCHAR, lake_file VARCHAR)")
    con.execute("INSERT INTO sources VALUES ('old', 'o0', 'old-o0.parquet')")
    for _ in range(2):  # idempotent, like every DDL file
        sql.execute(con, "staging/alt_sources_lake_files")
    assert con.execute("SELECT lake_file, lake_files FROM sources").fetchall() == [("old-o0.parquet", None)]


def test_quarantine_and_hash_batches():
    con = duckdb.connect()
    for name in DDL:
        sql.execute(con, name)
    con.register("quarantine_batch", pa.table({"position": [4], "reason": ["undecodable"], "raw": [b"\xff\x00"]}))
    con.register("kept_batch", pa.table({"doc_id": ["d1", "d2"]}))
    sql.execute(con, "staging/ins_quarantine", sha256="s1", options="o1")
    sql.execute(con, "staging/ins_doc_hashes", sha256="s1", options="o1")
    assert con.execute("SELECT * FROM quarantine").fetchall() == [("s1", "o1", 4, "undecodable", b"\xff\x00")]
    assert con.execute("SELECT count(*) FROM doc_hashes WHERE options = 'o1'").fetchone()[0] == 2
    sql.execute(con, "staging/del_quarantine", sha256="s1", options="o1")
    sql.execute(con, "staging/del_doc_hashes", sha256="s1", options="o1")
    assert con.execute("SELECT (SELECT count(*) FROM quarantine) + (SELECT count(*) FROM doc_hashes)").fetchone()[0] == 0


def test_pending_rows_move_on_commit_and_clear():
    con = duckdb.connect()
    for name in DDL:
        sql.execute(con, name)
    for sha, ids in [("s1", ["d1", "d2"]), ("s2", ["d3"])]:
        con.register("quarantine_batch", pa.table({"position": [7], "reason": ["invalid_json"], "raw": [b"{"]}))
        con.register("kept_batch", pa.table({"doc_id": ids}))
        sql.execute(con, "staging/ins_pending_quarantine", sha256=sha, options="o1")
        sql.execute(con, "staging/ins_pending_doc_hashes", sha256=sha, options="o1")
    sql.execute(con, "staging/mov_quarantine", sha256="s1", options="o1")
    sql.execute(con, "staging/mov_doc_hashes", sha256="s1", options="o1")
    assert con.execute("SELECT doc_id, source_sha256 FROM doc_hashes ORDER BY doc_id").fetchall() == [
        ("d1", "s1"), ("d2", "s1")]
    assert con.execute("SELECT source_sha256, position, reason, raw FROM quarantine").fetchall() == [
        ("s1", 7, "invalid_json", b"{")]
    sql.execute(con, "staging/clr_pending_quarantine")
    sql.execute(con, "staging/clr_pending_doc_hashes")
    assert con.execute(
        "SELECT (SELECT count(*) FROM pending_quarantine) + (SELECT count(*) FROM pending_doc_hashes)").fetchone() == (0,)


def test_views_follow_the_latest_snapshot(tmp_path):
    lake = tmp_path / "lake" / "documents"
    lake.mkdir(parents=True)
    for name, ids in [("old.parquet", ["a", "b"]), ("new.parquet", ["c"])]:
        columns = {"doc_id": ids, "split": ["train"] * len(ids), "lang": ["en"] * len(ids),
                   "n_chars": pa.array([30] * len(ids), pa.int32()), "sentences": [["One.", "Two."]] * len(ids)}
        if name == "new.parquet":  # a newer ingest version adds a column; the view reads both
            columns["source_id"] = ["id-c"]
        pq.write_table(pa.table(columns), lake / name)
    (lake / ".staging" / "x").mkdir(parents=True)  # an uncommitted part is never read
    pq.write_table(pa.table({"doc_id": ["staged"]}), lake / ".staging" / "x" / "part-00000.parquet")
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    for name in DDL:
        sql.execute(con, name)
    for snap, files in [("s-old", ["old.parquet"]), ("s-new", ["new.parquet"])]:
        con.register("snapshot_batch", pa.table({"file": files}))
        con.begin()  # one transaction per snapshot, as ingest does: current_timestamp orders them
        sql.execute(con, "staging/ins_snapshot", snapshot_id=snap, options="o", counts="{}")
        sql.execute(con, "staging/ins_snapshot_files", snapshot_id=snap)
        con.commit()
    lake_glob = str(lake / "*.parquet")
    con.execute(sql.run(con, "staging/gen_view_documents", lake_glob=lake_glob, temporary=False).column("ddl")[0].as_py())
    sql.execute(con, "staging/view_sentences")
    assert con.execute("SELECT doc_id FROM documents").fetchall() == [("c",)]
    assert con.execute("SELECT doc_id, sent_idx, text FROM sentences ORDER BY sent_idx").fetchall() == [
        ("c", 0, "One."), ("c", 1, "Two.")]
    report = sql.run(con, "reports/rpt_documents").to_pylist()
    assert report == [{"lang": "en", "split": "train", "documents": 1, "sentences": 2, "chars": 30}]
    sql.execute(con, "staging/del_snapshot", snapshot_id="s-new")
    sql.execute(con, "staging/del_snapshot_files", snapshot_id="s-new")
    assert sorted(con.execute("SELECT doc_id, source_id FROM documents").fetchall()) == [("a", None), ("b", None)]
