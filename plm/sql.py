"""SQL as data: one statement per file under `sql/`, run with DuckDB named parameters.

`run(con, "quality/flt_length", min_chars=20)` loads `sql/quality/flt_length.sql`, binds `$min_chars`
and returns a pyarrow Table. Values always travel as parameters, never by string formatting.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The text of `sql/<name>.sql` (cached); `name` is relative, without the suffix."""
    path = (SQL_DIR / f"{name}.sql").resolve()
    if SQL_DIR not in path.parents:
        raise ValueError(f"SQL name {name!r} escapes {SQL_DIR}")
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text(encoding="utf-8")


def _params(sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
    # DuckDB rejects named parameters that the statement does not use, and a parameter dict on a
    # statement without any; pass only what is referenced so callers can hand over one dict.
    used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
    return used or None


def execute(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyConnection:
    """Execute a DDL/DML statement file; returns the connection (for `fetchall()` if needed)."""
    sql = load(name)
    return con.execute(sql, _params(sql, params))


def run(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pa.Table:
    """Run a SELECT statement file and return its result as a pyarrow Table."""
    sql = load(name)
    return con.sql(sql, params=_params(sql, params)).to_arrow_table()
