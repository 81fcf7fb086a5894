"""The near-duplicate index statements (sql/staging/*near_dup*, reports/rpt_near_dup_clusters) on tiny tables."""

import duckdb
import pyarrow as pa

from plm import sql

DDL = ["staging/ddl_near_dup_docs", "staging/ddl_near_dup_bands", "staging/ddl_near_duplicates"]


def catalog() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for _ in range(2):  # idempotent
        for name in DDL:
            sql.execute(con, name)
    return con


def insert(con, options, seqs, ids, sources, bands_per_doc=2, dups=()):
    sigs = pa.array([bytes([s]) * 8 for s in seqs], pa.binary(8))
    con.register("near_dup_docs_batch", pa.table({"seq": pa.array(seqs, pa.int64()), "doc_id": ids,
                                                  "source_sha256": sources, "signature": sigs}))
    con.register("near_dup_bands_batch", pa.table({
        "seq": pa.array([s for s in seqs for _ in range(bands_per_doc)], pa.int64()),
        "band": pa.array([b for _ in seqs for b in range(bands_per_doc)], pa.int16()),
        "hash": pa.array([1000 * s + b for s in seqs for b in range(bands_per_doc)], pa.uint64()),
    }))
    con.register("near_duplicates_batch", pa.table({
        "doc_id": pa.array([d[0] for d in dups], pa.string()),
        "representative_doc_id": pa.array([d[1] for d in dups], pa.string()),
        "similarity": pa.array([d[2] for d in dups], pa.float64()),
        "source_sha256": pa.array([d[3] for d in dups], pa.string()),
    }))
    for name in ("staging/ins_near_dup_docs", "staging/ins_near_dup_bands", "staging/ins_near_duplicates"):
        sql.execute(con, name, options=options)


def test_index_rows_round_trip_per_scope():
    con = catalog()
    assert sql.run(con, "staging/sel_near_dup_next_seq").to_pylist() == [{"next_seq": 0}]
    insert(con, "o1", [0, 1], ["a", "b"], ["s1", "s1"])
    insert(con, "o2", [2], ["c"], ["s2"])
    assert sql.run(con, "staging/sel_near_dup_next_seq").to_pylist() == [{"next_seq": 3}]
    rows = sql.run(con, "staging/sel_near_dup_index", options="o1").to_pylist()
    assert sorted((r["seq"], r["hash"]) for r in rows) == [(0, 0), (0, 1), (1, 1000), (1, 1001)]
    assert sql.run(con, "staging/sel_near_dup_index", options="o3").num_rows == 0


def test_signatures_of_candidates_skip_the_asking_source_and_other_scopes():
    con = catalog()
    insert(con, "o1", [0, 1, 2], ["a", "b", "c"], ["s1", "s2", "s2"])
    insert(con, "o2", [3], ["d"], ["s1"])
    con.register("near_dup_query", pa.table({"seq": pa.array([0, 1, 3, 7], pa.int64())}))
    got = sql.run(con, "staging/sel_near_dup_signatures", options="o1", source_sha256="s2").to_pylist()
    assert got == [{"seq": 0, "doc_id": "a", "signature": b"\x00" * 8}]
    got = sql.run(con, "staging/sel_near_dup_signatures", options="o1", source_sha256="").to_pylist()
    assert sorted(r["doc_id"] for r in got) == ["a", "b"]


def test_deletes_remove_one_source_in_one_scope():
    con = catalog()
    insert(con, "o1", [0, 1], ["a", "b"], ["s1", "s2"], dups=[("x", "a", 0.9, "s2")])
    insert(con, "o2", [2], ["c"], ["s2"], dups=[("y", "c", 0.85, "s2")])
    for name in ("staging/del_near_dup_bands", "staging/del_near_dup_docs", "staging/del_near_duplicates"):
        sql.execute(con, name, options="o1", sha256="s2")
    assert con.execute("SELECT doc_id FROM near_dup_docs ORDER BY seq").fetchall() == [("a",), ("c",)]
    assert con.execute("SELECT DISTINCT seq FROM near_dup_bands ORDER BY seq").fetchall() == [(0,), (2,)]
    assert con.execute("SELECT doc_id FROM near_duplicates").fetchall() == [("y",)]


def test_cluster_report():
    con = catalog()
    dups = [("x", "a", 0.9, "s2"), ("y", "a", 0.82, "s3"), ("z", "b", 1.0, "s3")]
    insert(con, "o1", [0, 1], ["a", "b"], ["s1", "s1"], dups=dups)
    insert(con, "o2", [2], ["a"], ["s9"], dups=[("w", "a", 0.95, "s9")])
    report = sql.run(con, "reports/rpt_near_dup_clusters", options="o1").to_pylist()
    assert report == [
        {"representative_doc_id": "a", "representative_source_sha256": "s1", "near_duplicates": 2,
         "min_similarity": 0.82, "max_similarity": 0.9},
        {"representative_doc_id": "b", "representative_source_sha256": "s1", "near_duplicates": 1,
         "min_similarity": 1.0, "max_similarity": 1.0},
    ]
