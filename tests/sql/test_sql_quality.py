import duckdb
import pyarrow as pa
import pytest

from plm import sql


@pytest.fixture()
def con():
    c = duckdb.connect()
    yield c
    c.close()


def docs(ids, n_chars=None):
    n = len(ids)
    return pa.table({
        "position": pa.array(range(n), pa.int64()),
        "doc_id": pa.array(ids, pa.string()),
        "n_chars": pa.array(n_chars or [50] * n, pa.int32()),
    })


def test_flt_length_returns_every_row_with_a_reason(con):
    con.register("docs", docs(["a", "b", "c", "d"], [5, 20, 100, 101]))
    out = sql.run(con, "quality/flt_length", min_chars=20, max_chars=100)
    assert out.num_rows == 4
    assert out.column("drop_reason").to_pylist() == ["too_short", None, None, "too_long"]
    assert out.column_names[:3] == ["position", "doc_id", "n_chars"]


def test_dedup_exact_within_batch_and_against_catalog(con):
    sql.execute(con, "staging/ddl_doc_hashes")
    con.execute("INSERT INTO doc_hashes VALUES ('x', 'other', 'opt1'), ('y', 'other', 'opt2'), ('z', 'self', 'opt1')")
    con.register("docs", docs(["a", "x", "a", "y", "z"]))
    out = sql.run(con, "quality/dedup_exact", options="opt1", source_sha256="self")
    # 'a' repeats (second one dropped); 'x' is held by another source under the same options;
    # 'y' only under other options and 'z' only by this very source (a re-processing): both kept
    assert out.column("drop_reason").to_pylist() == [None, "duplicate", "duplicate", None, None]
    assert out.column("position").to_pylist() == [0, 1, 2, 3, 4]


def test_parameters_are_bound_not_formatted(con):
    con.register("docs", docs(["a"], [10]))
    out = sql.run(con, "quality/flt_length", min_chars=5, max_chars=100, unused="ignored")
    assert out.column("drop_reason").to_pylist() == [None]
    with pytest.raises(ValueError, match="escapes"):
        sql.load("../pyproject")
    with pytest.raises(FileNotFoundError):
        sql.load("quality/no_such_file")
